"""Every setting, read once from the environment (and the app's flags), never at import."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(*names: str):
    return AliasChoices(*names)


class Settings(BaseSettings):
    """The app's settings. Environment names are SVD_<FIELD> unless said otherwise."""

    model_config = SettingsConfigDict(env_prefix="SVD_", extra="ignore", populate_by_name=True)

    # What runs the videos
    backend: Literal["auto", "local", "fal"] = "auto"
    model: str | None = Field(None, description="hub id, local folder or 'tiny'")
    controlnet: str | None = Field(None, description="depth ControlNet: hub id or folder")
    depth_model: str | None = Field(None, description="depth estimator for driving videos")
    devices: str | None = Field(None, description="one worker per device: cuda:0,cuda:1")
    memory: Literal["normal", "low"] = "normal"
    fast: bool = False
    output_dir: Path = Path("outputs")

    # fal
    fal_endpoint: str = "fal-ai/svd"
    fal_timeout: float = Field(600.0, gt=0, description="seconds for a whole fal run")
    fal_poll_interval: float = Field(0.5, gt=0)
    fal_rest_url: str | None = None
    fal_cdn_url: str | None = None

    # The public surface
    api_key: str | None = Field(None, description="the key HTTP API callers must send")
    history: Literal["own", "all"] = "own"
    host: str = Field("127.0.0.1", validation_alias=_env("GRADIO_SERVER_NAME", "host"))
    port: int = Field(7860, validation_alias=_env("GRADIO_SERVER_PORT", "port"))
    root_path: str | None = Field(None, validation_alias=_env("GRADIO_ROOT_PATH", "root_path"))

    # Limits: every input is bounded before it costs memory
    max_download_mb: int = Field(50, gt=0)
    fetch_timeout: float = Field(30.0, gt=0)
    allow_private_urls: str = ""
    max_image_pixels: int = Field(40_000_000, gt=0)
    archive_max_entries: int = Field(1000, gt=0)
    archive_max_mb: int = Field(256, gt=0)
    max_video_frames: int = Field(3000, gt=0)
    max_body_mb: int = Field(64, gt=0)
    queue_size: int = Field(64, gt=0)
    max_outputs: int | None = Field(None, gt=0)

    @property
    def max_download_bytes(self) -> int:
        return self.max_download_mb * 1024 * 1024

    def device_list(self) -> list[str | None]:
        """SVD_DEVICES as a list; [None] (pick one) when unset."""
        names = [d.strip() for d in (self.devices or "").split(",") if d.strip()]
        return names or [None]


_current: Settings | None = None


def settings() -> Settings:
    """The settings in force: read from the environment on first use, or set by `configure`."""
    global _current
    if _current is None:
        _current = Settings()
    return _current


def configure(**values) -> Settings:
    """The environment's settings with `values` (the flags given) on top, used from now on."""
    global _current
    _current = Settings(**{k: v for k, v in values.items() if v is not None})
    return _current


def reload() -> Settings:
    """Read the environment again (for tests that change it)."""
    global _current
    _current = None
    return settings()
