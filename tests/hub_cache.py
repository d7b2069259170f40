"""A Hugging Face cache laid out as the hub lays out the real model repos, holding the tiny
random weights: `models--<org>--<name>/{blobs,refs/main,snapshots/<commit>/...}`, each
file a symlink to its blob, diffusers folders with full and `fp16` variants. With HF_HOME
pointing at it and HF_HUB_OFFLINE=1, the app's real loading code loads from it."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

COMMIT = "9e43909513c6714f1bc78bcb44d96e733cd242aa"  # a made-up commit, as refs/main names


def add_diffusers_repo(home: Path, repo: str, frames: int, seed: int = 0) -> Path:
    """Put the tiny SVD (weights drawn from `seed`), saved as diffusers saves a pipeline
    (both precisions), in the cache under `repo`; its UNet says it makes `frames` frames.
    The snapshot folder is returned."""
    import torch

    from svd.backends.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline(seed)
    pipe.unet.register_to_config(num_frames=frames)
    with tempfile.TemporaryDirectory() as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        pipe.to(dtype=torch.float16).save_pretrained(tmp, safe_serialization=True, variant="fp16")
        return add_files(home, repo, Path(tmp))


def add_unet_file(home: Path, repo: str, file: str, seed: int) -> Path:
    """A repo holding one file at its root: a tiny UNet's state dict (diffusers' key names,
    fp16), as AnimateLCM-SVD-xt publishes its distilled UNet."""
    import torch
    from safetensors.torch import save_file

    from svd.backends.tiny import build_tiny_pipeline

    unet = build_tiny_pipeline(seed).unet.to(dtype=torch.float16)
    with tempfile.TemporaryDirectory() as tmp:
        save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, Path(tmp) / file)
        return add_files(home, repo, Path(tmp))


def add_every_model(home: Path) -> None:
    """Every hub model of the registry, each with weights of its own."""
    from svd.models import MODELS

    for seed, spec in enumerate(m for m in MODELS.values() if m.repo):
        if spec.unet_file:
            add_unet_file(home, spec.repo, spec.unet_file, seed)
        else:
            add_diffusers_repo(home, spec.repo, spec.frames, seed)


def add_files(home: Path, repo: str, source: Path) -> Path:
    """Every file under `source` into the cached repo: a blob named by its hash, and a
    symlink to it in the snapshot, as huggingface_hub writes them."""
    folder = home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / COMMIT
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(COMMIT)
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot
