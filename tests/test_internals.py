"""The diffusers internals svd/ leans on, each checked by name: when an upgrade moves one, the
failure says what moved and which file depends on it (diffusers is pinned below its next minor)."""

import ast
import importlib
import inspect
from pathlib import Path

import pytest
import torch
from diffusers import ModelMixin, StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel

from .conftest import make_picture

SVD = Path(__file__).resolve().parent.parent / "svd"
ENCODER_PARAMS = ["self", "image", "device", "num_videos_per_prompt", "do_classifier_free_guidance"]


def moved(what: str, where: str) -> str:
    return f"diffusers internal moved: {what} (used by {where})"


def params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


@pytest.fixture(scope="module")
def recorded():
    """Two identical runs of the caching tiny pipeline; how the UNet and its blocks were
    called in the first (args count, keyword names), and the pipeline's step-end callbacks."""
    from svd.backends.tiny import build_tiny_pipeline
    from svd.pipeline import SVDPipeline

    pipe = SVDPipeline.of(build_tiny_pipeline())
    unet = pipe.unet
    calls: dict = {}
    steps: list = []

    def record(name):
        def hook(module, args, kwargs, output):
            calls.setdefault(name, (len(args), kwargs, output))

        return hook

    named = {"unet": unet, "mid_block": unet.mid_block}
    named |= {f"down_blocks.{i}": b for i, b in enumerate(unet.down_blocks)}
    named |= {f"up_blocks.{i}": b for i, b in enumerate(unet.up_blocks)}
    handles = [m.register_forward_hook(record(n), with_kwargs=True) for n, m in named.items()]

    def on_step_end(pipeline, i, t, kwargs):
        steps.append((pipeline, i, sorted(kwargs)))
        return kwargs

    kw = {"height": 64, "width": 64, "num_frames": 2, "num_inference_steps": 1}
    try:
        for _ in range(2):
            pipe(make_picture(64, 64), generator=torch.Generator().manual_seed(0), **kw,
                 output_type="pt", callback_on_step_end=on_step_end)  # fmt: skip
    finally:
        for handle in handles:
            handle.remove()
    return pipe, calls, steps


def test_the_private_encoders_svd_pipeline_overrides_keep_their_parameters():
    for name in ("_encode_image", "_encode_vae_image"):
        fn = getattr(StableVideoDiffusionPipeline, name, None)
        assert fn is not None, moved(
            f"StableVideoDiffusionPipeline.{name} is gone", "svd/pipeline.py"
        )
        assert params(fn) == ENCODER_PARAMS, moved(
            f"StableVideoDiffusionPipeline.{name}{inspect.signature(fn)}", "svd/pipeline.py"
        )


def test_the_pipeline_encodes_through_the_overridden_encoders(recorded):
    pipe, _, _ = recorded
    assert pipe.hits["embedding"] == 1 and pipe.hits["latent"] == 1, moved(
        "StableVideoDiffusionPipeline.__call__ no longer calls _encode_image/_encode_vae_image",
        "svd/pipeline.py (the conditioning cache)",
    )


def test_step_end_callbacks_get_the_latents(recorded):
    pipe, _, steps = recorded
    names = params(StableVideoDiffusionPipeline.__call__)
    for name in ("callback_on_step_end", "callback_on_step_end_tensor_inputs"):
        assert name in names, moved(f"__call__ lost {name}", "svd/backends/local.py (motion mask)")
    assert steps and steps[0][0] is pipe and steps[0][1] == 0, moved(
        "callback_on_step_end(pipeline, step, timestep, kwargs)", "svd/backends/local.py"
    )
    assert "latents" in steps[0][2], moved(
        "the step-end callback's default tensor input 'latents'", "svd/backends/local.py"
    )


def test_the_progress_bar_settings_attribute():
    pipe = StableVideoDiffusionPipeline(None, None, None, None, None)
    pipe.set_progress_bar_config(disable=True)
    assert getattr(pipe, "_progress_bar_config", None) == {"disable": True}, moved(
        "DiffusionPipeline._progress_bar_config", "svd/pipeline.py (SVDPipeline.of)"
    )


def test_the_unet_is_called_with_the_keywords_depth_control_reads(recorded):
    forward = UNetSpatioTemporalConditionModel.forward
    want = ["self", "sample", "timestep", "encoder_hidden_states", "added_time_ids"]
    assert params(forward)[:5] == want, moved(
        f"UNetSpatioTemporalConditionModel.forward{inspect.signature(forward)}", "svd/control.py"
    )
    _, calls, _ = recorded
    n_args, kwargs, _ = calls["unet"]
    keywords = {"encoder_hidden_states", "added_time_ids"}
    assert n_args <= 2 and keywords <= set(kwargs), moved(
        f"the pipeline calls the UNet with {n_args} positional and {sorted(kwargs)}",
        "svd/control.py",
    )


def test_the_unet_blocks_feature_reuse_and_depth_control_swap_and_hook(recorded):
    pipe, calls, _ = recorded
    unet = pipe.unet
    for name in ("conv_in", "time_embedding", "add_embedding", "down_blocks", "mid_block"):
        assert hasattr(unet, name), moved(f"the UNet's {name}", "svd/controlnet.py (from_unet)")
    for name in ("down_blocks", "up_blocks"):
        blocks = getattr(unet, name, None)
        assert isinstance(blocks, torch.nn.ModuleList), moved(f"the UNet's {name}", "svd/reuse.py")
    for i, block in enumerate(unet.down_blocks):
        for attr in ("resnets", "downsamplers"):
            assert hasattr(block, attr), moved(f"down block .{attr}", "svd/control.py, reuse.py")
        _, kwargs, out = calls[f"down_blocks.{i}"]
        skips = len(block.resnets) + (1 if block.downsamplers else 0)
        assert "hidden_states" in kwargs and len(out) == 2 and len(out[1]) == skips, moved(
            "down blocks take hidden_states= and return (hidden, one skip per resnet and "
            "downsampler)",
            "svd/reuse.py, svd/control.py",
        )
    assert "hidden_states" in calls["mid_block"][1], moved("mid_block(hidden_states=)", "reuse.py")
    for i, block in enumerate(unet.up_blocks):
        skips = calls[f"up_blocks.{i}"][1].get("res_hidden_states_tuple")
        assert skips is not None and len(skips) == len(block.resnets), moved(
            "up blocks get res_hidden_states_tuple=, one skip per resnet", "svd/control.py"
        )


def test_the_controlnet_reads_the_unet_config_by_its_names():
    from svd.controlnet import ControlNetSDV

    ours = set(params(ControlNetSDV.__init__)) - {"self", "conditioning_channels"}
    ours -= {"conditioning_embedding_out_channels"}
    theirs = set(params(UNetSpatioTemporalConditionModel.__init__))
    assert ours <= theirs, moved(
        f"UNetSpatioTemporalConditionModel config names {sorted(ours - theirs)}",
        "svd/controlnet.py (from_unet)",
    )


def internal_imports() -> list[tuple[str, str, str]]:
    """(file, module, name) for every `from diffusers.<sub> import name` under svd/."""
    found = []
    for path in sorted(SVD.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("diffusers."):
                rel = str(path.relative_to(SVD.parent))
                found += [(rel, node.module, alias.name) for alias in node.names]
    return found


def test_the_internal_module_paths_svd_imports_from():
    imports = internal_imports()
    assert any(f == "svd/controlnet.py" for f, _, _ in imports)  # the scan finds them
    for file, module, name in imports:
        try:
            found = hasattr(importlib.import_module(module), name)
        except ImportError:
            found = False
        assert found, moved(f"from {module} import {name}", file)


def test_compile_repeated_blocks_finds_the_unet_blocks():
    from svd.backends.tiny import build_tiny_pipeline
    from svd.controlnet import ControlNetSDV
    from svd.fast import REPEATED_BLOCKS, compile_unet

    assert hasattr(ModelMixin, "compile_repeated_blocks"), moved(
        "ModelMixin.compile_repeated_blocks", "svd/fast.py"
    )
    named = UNetSpatioTemporalConditionModel._repeated_blocks
    assert not named or list(named) == list(REPEATED_BLOCKS), moved(
        f"the SVD UNet now names its repeated blocks {named}", "svd/fast.py (REPEATED_BLOCKS)"
    )
    unet = build_tiny_pipeline().unet
    kinds = {type(m).__name__ for m in unet.modules()}
    assert set(REPEATED_BLOCKS) <= kinds, moved(
        f"block classes {set(REPEATED_BLOCKS) - kinds}", "svd/fast.py, svd/controlnet.py"
    )
    assert compile_unet(unet, backend="eager") == 12  # wrapped only; nothing runs here
    assert ControlNetSDV._repeated_blocks == REPEATED_BLOCKS


def test_the_spaces_packages_start_up_hook():
    """svd/zerogpu.start calls spaces.zero.startup itself: the package runs it from
    gr.Blocks.launch, which the app never calls (it mounts Gradio on its own server)."""
    import spaces.zero

    source = Path(spaces.zero.__file__).read_text()
    assert "def startup():" in source and "gradio.one_launch(startup)" in source, (
        "spaces internal moved: spaces.zero.startup (used by svd/zerogpu.py)"
    )
    wrappers = (Path(spaces.zero.__file__).parent / "wrappers.py").read_text()
    assert "except GeneratorExit:\n                        worker.stop_event.set()" in wrappers, (
        "spaces internal moved: closing a GPU generator stops the worker (svd/zerogpu.py)"
    )


def test_gradios_per_session_message_queue():
    """svd/ui/handlers.py (Handlers.unread) reads how many updates Gradio holds for a
    session that no stream has taken, to end the runs of a visitor who never listened."""
    import gradio as gr

    with gr.Blocks() as page:
        gr.Button()
    page.queue()
    pending = page._queue.pending_messages_per_session
    assert hasattr(pending, "get"), "gradio internal moved: Queue.pending_messages_per_session"
    source = inspect.getsource(type(page._queue).send_message)
    assert "pending_messages_per_session[event.session_hash]" in source and "put_nowait" in source


def test_gradios_active_events_say_whether_a_visitor_listens():
    """svd/ui/handlers.py (Handlers.listening) reads Queue.active_jobs, lists of Events with
    `session_hash` and `alive`: a closed stream makes its events dead (clean_events), and
    Gradio stops asking a dead event's generator for more, so the queue ends its run."""
    import gradio as gr
    from gradio.queueing import Event

    with gr.Blocks() as page:
        gr.Button()
    page.queue()
    assert isinstance(page._queue.active_jobs, list), "gradio internal moved: Queue.active_jobs"
    made = inspect.getsource(Event.__init__)
    assert "self.session_hash" in made and "self.alive = True" in made, (
        "gradio internal moved: Event.session_hash / Event.alive"
    )
    cleaning = inspect.getsource(type(page._queue).clean_events)
    assert "job.alive = False" in cleaning, "gradio internal moved: clean_events marks dead"
    process = inspect.getsource(type(page._queue).process_events)
    assert "awake_events = [event for event in awake_events if event.alive]" in process


def test_the_gradio_and_fal_client_internals_the_app_leans_on():
    """Each library internal svd/ relies on, by name, with the file that relies on it."""
    import fal_client.client
    import gradio.processing_utils
    import gradio.utils

    check = inspect.getsource(gradio.processing_utils._check_allowed)
    assert "blocks.has_launched" in check, (
        "gradio internal moved: Blocks.has_launched gates the upload check (svd/server.py)"
    )
    for name in ("REST_URL", "CDN_URL"):  # read at call time, so setting them moves uploads
        assert isinstance(getattr(fal_client.client, name, None), str), (
            f"fal_client internal moved: fal_client.client.{name} (svd/backends/fal.py)"
        )
        assert f"{{{name}}}" in inspect.getsource(fal_client.client) or f"{name} +" in (
            inspect.getsource(fal_client.client)
        ), f"fal_client no longer reads {name} when it sends (svd/backends/fal.py)"

    def handler(*args):
        return args

    handler.__signature__ = inspect.Signature(
        [inspect.Parameter("image", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    )
    assert [p[0] for p in gradio.utils.get_function_params(handler)] == ["image"], (
        "gradio no longer names a handler's parameters by its __signature__ (svd/ui/adapters.py)"
    )


def test_the_private_names_of_diffusers_torch_and_fal_client_the_app_reads(monkeypatch):
    """The other private names svd/ reads (uvicorn's trusted-hosts object is no longer one:
    svd/forwarded.py reads forwarded headers itself, and uvicorn's proxy_headers is off)."""
    import fal_client.auth
    import torch._dynamo
    from diffusers import DiffusionPipeline

    from svd.backends.tiny import build_tiny_pipeline

    device = getattr(DiffusionPipeline, "_execution_device", None)
    assert isinstance(device, property), moved(
        "DiffusionPipeline._execution_device",
        "svd/mask.py, svd/pipeline.py, svd/backends/local.py (where the conditioning goes)",
    )
    assert build_tiny_pipeline()._execution_device == torch.device("cpu"), moved(
        "DiffusionPipeline._execution_device names the device the pipeline runs on",
        "svd/mask.py, svd/pipeline.py, svd/backends/local.py",
    )
    for name in ("recompile_limit", "accumulated_recompile_limit"):
        assert isinstance(getattr(torch._dynamo.config, name, None), int), (
            f"torch internal moved: torch._dynamo.config.{name} (svd/fast.py)"
        )
    monkeypatch.setenv("FAL_KEY", "pinned-key")
    found = fal_client.auth.fetch_auth_credentials()
    assert (found.token, found.scheme) == ("pinned-key", "Key"), (
        "fal_client internal moved: fal_client.auth.fetch_auth_credentials() and its "
        ".token and .scheme (svd/backends/fal.py, fal_credentials and FalBackend._client)"
    )


def test_gradios_queue_loop_sleeps():
    """svd/server.py (build) sets Queue.sleep_when_free and progress_update_sleep_when_free:
    the pauses of the queue's loops when there is no work, read on each turn."""
    import gradio as gr

    with gr.Blocks() as page:
        gr.Button()
    page.queue()
    queue = page._queue
    for name in ("sleep_when_free", "progress_update_sleep_when_free"):
        assert isinstance(getattr(queue, name, None), float), f"gradio internal moved: {name}"
        loops = inspect.getsource(type(queue).start_processing) + inspect.getsource(
            type(queue).start_progress_updates
        )
        assert f"asyncio.sleep(self.{name})" in loops, f"gradio internal moved: {name}"
