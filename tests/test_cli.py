import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock
from urllib.parse import urlparse

from svd.media import read_video

ROOT = Path(__file__).resolve().parent.parent


def svd_cli(*args, stdin=None, env=None, cwd=None):
    """`python -m svd ...` as a process of its own: for an environment of its own (a Hugging
    Face cache, offline) and the entry point itself."""
    return svd_cli_python("-m", "svd", *args, stdin=stdin, env=env, cwd=cwd)


def svd_cli_python(*args, stdin=None, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env={**os.environ, "SVD_MODEL": "tiny", "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=240,
    )


# Several command lines through the CLI's main, in one process: [exit code, stdout, stderr].
MANY = """import contextlib, io, json, sys
from svd.cli import main
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    print(json.dumps([code, out.getvalue(), err.getvalue()]), flush=True)
"""


def svd_cli_each(*commands: list[str], env=None) -> list[subprocess.CompletedProcess]:
    """Each of `commands` (`python -m svd` arguments) as the CLI runs it, all in one process
    of its own with `env` (one set of imports for all), each answer as svd_cli's."""
    r = svd_cli_python("-c", MANY, json.dumps(list(commands)), env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    answers = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("[")]
    assert len(answers) == len(commands), r.stderr[-2000:]
    return [subprocess.CompletedProcess(c, *a) for c, a in zip(commands, answers, strict=True)]


def cli_here(*args, stdin: str = ""):
    """The CLI's `main(argv)` in this process, on tiny, with `stdin` as its standard input:
    (exit code, stdout, stderr) as a process would give them."""
    import torch

    from svd.cli import main
    from svd.settings import configured

    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()  # main sets torch's threads from the settings
    with (
        configured(model="tiny", threads=threads),
        mock.patch("sys.stdin", io.StringIO(stdin)),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's own errors
            code = e.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_generate_prints_the_output_json_last(picture_path, tmp_path):
    r = cli_here(
        "generate", "--image-url", picture_path, "--steps", "2", "--num-frames", "4",
        "--seed", "11", "--out-dir", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["seed"] == 11 and out["image"]["content_type"] == "video/mp4"
    frames, fps = read_video(urlparse(out["image"]["url"]).path)
    assert frames.shape == (4, 128, 256, 3) and fps == 7
    assert "2/2" in r.stderr  # the progress bar
    assert (tmp_path / out["image"]["file_name"]).with_suffix(".json").exists()


def test_json_body_from_stdin_with_flags_on_top(picture_path, tmp_path):
    body = {"image_url": picture_path, "steps": 1, "seed": 3, "num_frames": 2, "extra": 1}
    r = cli_here(
        "generate", "--json", "-", "--seed", "4", "--out-dir", str(tmp_path),
        stdin=json.dumps(body),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["seed"] == 4


def test_bad_input_exits_non_zero_naming_the_field(picture_path, tmp_path):
    r = cli_here("generate", "--image-url", picture_path, "--motion-bucket-id", "300")
    assert r.returncode == 2
    assert "motion_bucket_id" in r.stderr and "255" in r.stderr
    r = cli_here("generate", "--json", "-", stdin="{not json")
    assert r.returncode == 2 and "json" in r.stderr
    missing = str(tmp_path / "missing.png")
    r = cli_here("generate", "--image-url", missing, "--out-dir", str(tmp_path))
    assert r.returncode == 2 and "image_url" in r.stderr and "no such file" in r.stderr
    r = cli_here("generate", "--steps", "many")
    assert r.returncode == 2 and "steps" in r.stderr
    assert not list(tmp_path.glob("*.mp4"))


def test_a_driving_video_on_tiny_works_offline(picture_path, tmp_path):
    """The depth model that goes with `tiny` is settled before the inputs are prepared, so
    a driving video never reaches for the real depth model's weights."""
    from .test_extras import driving_video

    r = svd_cli(
        "generate", "--image-url", picture_path, "--control-video-url", driving_video(tmp_path),
        "--steps", "1", "--width", "192", "--height", "128", "--out-dir", str(tmp_path),
        env={"HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(read_video(urlparse(out["image"]["url"]).path)[0]) == 5  # one frame per map
