"""Where finished videos are kept: <id>.mp4 beside <id>.json with how it was made."""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from svd.errors import BackendError
from svd.fetch import file_path, shorten_data_uri
from svd.schema import File, SVDInput
from svd.settings import settings

log = logging.getLogger(__name__)
CONTENT_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".gif": "image/gif"}


def default_output_dir() -> Path:
    """`SVD_OUTPUT_DIR`, or ./outputs."""
    return Path(settings().output_dir)


class OutputStore:
    """A folder of finished videos and their records."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_output_dir()

    def new_id(self) -> str:
        """A fresh id that sorts by time: 20261125-130501-123456-<16 hex> (UTC)."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
        return f"{stamp}-{secrets.token_hex(8)}"  # unguessable: outputs are served by name

    def video_path(self, run_id: str, suffix: str = ".mp4") -> Path:
        """Where the video of `run_id` goes; the folder is made if missing."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f"{run_id}{suffix}"

    def save_image(self, run_id: str, name: str, image) -> Path:
        """Keep a PIL image used by the run as <id>.<name>.png."""
        path = self.video_path(run_id, f".{name}.png")
        image.save(path)
        return path

    def save_bytes(self, run_id: str, suffix: str, data: bytes) -> Path:
        """Keep a file the run made, as <id>.<suffix>."""
        path = self.video_path(run_id, f".{suffix}")
        path.write_bytes(data)
        return path

    def record(self, run_id: str, video: Path, inp: SVDInput, seed: int, **extra) -> File:
        """Write <id>.json for a finished `video` and return it as a fal File."""
        file = File(
            url=video.resolve().as_uri(),
            content_type=CONTENT_TYPES.get(video.suffix, "application/octet-stream"),
            file_name=video.name,
            file_size=video.stat().st_size,
        )
        data = {
            "id": run_id,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "input": _printable_input(inp),
            "seed": seed,
            "output": file.model_dump(),
            **extra,
        }
        path = self.root / f"{run_id}.json"
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
        return file

    @contextmanager
    def saving(self, run_id: str):
        """Around writing a run's files: on a full disk or an unwritable folder, remove what
        was written and raise a BackendError that says what, without server paths."""
        try:
            yield
        except OSError as e:
            self.discard(run_id)
            log.warning("could not save run %s in %s: %s", run_id, self.root, e)
            raise BackendError(f"could not save the video: {_why(e)}") from None

    def prune(self, keep: int | None) -> int:
        """Remove the oldest runs (video, record, kept inputs) beyond `keep` videos
        (SVD_MAX_OUTPUTS); returns how many went."""
        if not keep:
            return 0
        ids = sorted(p.name.split(".")[0] for p in self.root.glob("*.json"))
        for run_id in ids[: max(0, len(ids) - keep)]:
            self.discard(run_id)
        return max(0, len(ids) - keep)

    def discard(self, run_id: str) -> None:
        """Remove what a run that failed half-way left behind."""
        for path in self.root.glob(f"{run_id}*"):
            path.unlink(missing_ok=True)

    def load(self, run_id: str) -> dict:
        """The record of `run_id`."""
        return json.loads((self.root / f"{run_id}.json").read_text())

    def newest(self) -> Iterator[dict]:
        """Records newest first, each read only when asked for; unreadable ones skipped."""
        for path in sorted(self.root.glob("*.json"), reverse=True):
            try:
                yield json.loads(path.read_text())
            except (OSError, ValueError):
                continue


def _why(error: OSError) -> str:
    """An OS error in a few true words (ffmpeg's broken pipe means it could not write)."""
    if error.errno == errno.ENOSPC:
        return "the disk is full"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS) or isinstance(
        error, BrokenPipeError | PermissionError
    ):
        return "the output folder is read-only"
    return error.strerror or type(error).__name__


def _printable_input(inp: SVDInput) -> dict:
    """The input as sent, with long data: URIs shortened to their head and size."""
    data = inp.model_dump()
    return {k: shorten_data_uri(v) if isinstance(v, str) else v for k, v in data.items()}


def served(output: dict, files_url: str, video_key: str = "image") -> dict:
    """An SVDOutput dict with its file:// video URLs turned into `files_url` + the file's
    name (the /outputs/ route of the server that answers), its video under `video_key`
    (fal-ai/svd's `image`, fal-ai/fast-svd-lcm's `video`)."""

    def at(file: dict) -> dict:
        return {**file, "url": files_url.rstrip("/") + "/" + file_path(file["url"]).name}

    body = {video_key: at(output["image"])}
    body.update((k, v) for k, v in output.items() if k != "image")
    if output.get("videos"):
        body["videos"] = [at(file) for file in output["videos"]]
    return body
