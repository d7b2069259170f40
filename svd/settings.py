"""Every setting, read once from the environment (and the app's flags), never at import."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIXES = ("SVD_", "GRADIO_", "FORWARDED_ALLOW_IPS", "SPACE_ID")


def _env(*names: str):
    return AliasChoices(*names)


class Settings(BaseSettings):
    """The app's settings. Environment names are SVD_<FIELD> unless said otherwise."""

    model_config = SettingsConfigDict(env_prefix="SVD_", extra="ignore", populate_by_name=True)

    # What runs the videos
    backend: Literal["auto", "local", "fal"] = "auto"
    model: str | None = Field(
        None, description="the default model: a name (svd-xt, ...), hub id, folder or 'tiny'"
    )
    max_loaded_models: int | None = Field(
        None, gt=0, description="pipelines kept loaded; 1 on a GPU, 2 elsewhere by default"
    )
    controlnet: str | None = Field(None, description="depth ControlNet: hub id or folder")
    depth_model: str | None = Field(None, description="depth estimator for driving videos")
    devices: str | None = Field(None, description="one worker per device: cuda:0,cuda:1")
    ray_address: str | None = Field(
        None, description="render on a Ray cluster's replicas: its address, or 'auto'"
    )
    ray_replicas: int | None = Field(
        None, gt=0, description="renderer replicas on the cluster; one per GPU by default"
    )
    memory: Literal["normal", "low"] = "normal"
    fast: bool = False
    output_dir: Path = Path("outputs")
    threads: int | None = Field(
        None, gt=0, description="torch's CPU threads; by default the cores this process may use"
    )
    examples: Literal["start", "click"] = Field(
        "start", description="when the page's example videos are made: at start or first click"
    )

    # fal
    fal_endpoint: str = "fal-ai/svd"
    fal_timeout: float = Field(600.0, gt=0, description="seconds for a whole fal run")
    fal_poll_interval: float = Field(0.5, gt=0)
    fal_rest_url: str | None = None
    fal_cdn_url: str | None = None

    # The public surface
    api_key: str | None = Field(None, description="the key HTTP API callers must send")
    history: Literal["own", "all"] = Field(
        "own", description="own: each browser sees its runs; all: the whole output folder"
    )
    host: str = Field("127.0.0.1", validation_alias=_env("GRADIO_SERVER_NAME", "SVD_HOST"))
    port: int = Field(7860, validation_alias=_env("GRADIO_SERVER_PORT", "SVD_PORT"))
    root_path: str | None = Field(None, validation_alias=_env("GRADIO_ROOT_PATH", "SVD_ROOT_PATH"))
    queue_port: int | None = Field(None, description="a second port serving fal's queue host")
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    forwarded_allow_ips: str = Field(
        "127.0.0.1,::1",
        validation_alias=_env("FORWARDED_ALLOW_IPS", "SVD_FORWARDED_ALLOW_IPS"),
        description="proxies whose X-Forwarded-Proto/-For/-Host are believed ('*': any)",
    )
    space_id: str | None = Field(
        None, validation_alias=_env("SPACE_ID"), description="set by Hugging Face Spaces"
    )
    webhook_attempts: int = Field(10, gt=0, description="tries to deliver one webhook")
    webhook_backoff: float = Field(5.0, gt=0, description="seconds before the first retry")

    # Limits: every input is bounded before it costs memory
    max_download_mb: int = Field(50, gt=0)
    fetch_timeout: float = Field(30.0, gt=0)
    allow_private_urls: str = ""
    max_image_pixels: int = Field(40_000_000, gt=0)
    archive_max_entries: int = Field(1000, gt=0)
    archive_max_mb: int = Field(256, gt=0)
    max_video_frames: int = Field(3000, gt=0)
    max_body_mb: int = Field(64, gt=0)
    max_bodies_mb: int = Field(256, gt=0, description="API bodies being read at once, in all")
    queue_size: int = Field(64, gt=0)
    max_work: float = Field(
        3000, gt=0, description="megapixels x frames x steps (x segments) one run may ask"
    )
    max_runs_per_session: int = Field(1, ge=0, description="page runs queued or running; 0: any")
    max_runs_per_address: int = Field(3, ge=0, description="per client address; 0: any")
    max_outputs: int | None = Field(None, gt=0)

    @property
    def max_download_bytes(self) -> int:
        return self.max_download_mb * 1024 * 1024

    def trusted_proxies(self) -> str:
        """FORWARDED_ALLOW_IPS; on a Space (SPACE_ID), where only the Space's own proxy can
        reach the app, any peer unless FORWARDED_ALLOW_IPS says otherwise."""
        if self.space_id and "forwarded_allow_ips" not in self.model_fields_set:
            return "*"
        return self.forwarded_allow_ips

    def cpu_threads(self) -> int:
        """SVD_THREADS, else the cores this process may run on (not the machine's count)."""
        return self.threads or len(os.sched_getaffinity(0))

    def device_list(self) -> list[str | None]:
        """SVD_DEVICES as a list; [None] (pick one) when unset."""
        names = [d.strip() for d in (self.devices or "").split(",") if d.strip()]
        return names or [None]


_flags: dict = {}
_made: tuple[tuple, Settings] | None = None


def _environment() -> tuple:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(PREFIXES)))


def settings() -> Settings:
    """The settings in force: the flags given to `configure`, over the environment. The
    environment is parsed on first use, and again only if it changed (tests change it)."""
    global _made
    seen = _environment()
    if _made is None or _made[0] != seen:
        _made = (seen, Settings(**_flags))
    return _made[1]


def configure(**flags) -> Settings:
    """Use `flags` (those given on the command line) over the environment from now on."""
    global _flags, _made
    _flags, _made = {k: v for k, v in flags.items() if v is not None}, None
    return settings()


@contextlib.contextmanager
def configured(**flags):
    """`flags` over those in force and the environment for the block's length, then what
    was before (an app built in-process, a test)."""
    global _flags, _made
    before = _flags
    try:
        yield configure(**{**before, **flags})
    finally:
        _flags, _made = before, None


def reload() -> Settings:
    """Parse the environment again now."""
    global _made
    _made = None
    return settings()
