"""`python -m svd generate ...`: one video from the command line.

The SVDOutput JSON is the last line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing

from svd.errors import BackendError, InputError
from svd.models import MODELS
from svd.schema import SVDInput, parse_input


def _kind(annotation) -> type:
    """int, float or str: what a flag's text becomes before validation."""
    args = typing.get_args(annotation) or (annotation,)
    return next((t for t in (int, float) if t in args), str)


# Every SVDInput field as a flag: --image-url, --motion-bucket-id, ...
FIELDS = [
    (f"--{name.replace('_', '-')}", name, _kind(field.annotation), field.description)
    for name, field in SVDInput.model_fields.items()
    if name != "model"  # --model takes a registry name or, for the local backend, more
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m svd", description="Stable Video Diffusion.")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="make one video from an image")
    for flag, field, kind, about in FIELDS:
        gen.add_argument(flag, dest=field, type=_typed(field, kind), default=None, help=about)
    gen.add_argument("--json", dest="json_body", metavar="FILE|-", help="a fal request body")
    gen.add_argument("--backend", default="auto", choices=["auto", "local", "fal"])
    gen.add_argument("--model", help=f"a model ({', '.join(MODELS)}); for the local backend, "
                     "also a hub id or local folder (SVD_MODEL)")  # fmt: skip
    gen.add_argument("--out-dir", help="where videos are kept (SVD_OUTPUT_DIR)")
    return parser


def _typed(field: str, kind: type):
    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{field}: expected {kind.__name__}, got {text!r}"
            ) from None

    return convert


def request_body(args: argparse.Namespace) -> dict:
    """The fal request: the --json body, then each flag given on top of it."""
    body: dict = {}
    if args.json_body:
        text = sys.stdin.read() if args.json_body == "-" else open(args.json_body).read()
        try:
            body = json.loads(text)
        except ValueError as e:
            raise InputError("json", f"not valid JSON ({e})") from None
        if not isinstance(body, dict):
            raise InputError("json", "expected a JSON object")
    for _, field, _, _ in FIELDS:
        value = getattr(args, field)
        if value is not None:
            body[field] = value
    if args.model in MODELS:  # a name is the request's; a hub id or folder the backend's
        body["model"] = args.model
    return body


def run_generate(args: argparse.Namespace) -> int:
    inp = parse_input(request_body(args))
    import torch

    from svd.backends import get_backend
    from svd.outputs import OutputStore
    from svd.progress import ProgressPrinter
    from svd.run import run
    from svd.settings import settings

    torch.set_num_threads(settings().cpu_threads())

    options = {}
    if args.model and args.model not in MODELS:
        options["model"] = args.model
    backend = get_backend(args.backend, **options)
    with ProgressPrinter(sys.stderr) as progress:
        out = run(backend, inp, OutputStore(args.out_dir), progress)
    print(out.model_dump_json())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_generate(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BackendError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # json file unreadable, disk full...
        print(f"error: {e}", file=sys.stderr)
        return 1
