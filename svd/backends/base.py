"""What every backend does the same way (the `Backend` protocol is svd/contract.py's)."""

from __future__ import annotations


class BackendBase:
    """The defaults of a renderer on this machine; a backend overrides what differs."""

    takes_urls = False
    remote = False
    takes_key = False
    terms: str | None = None
    depth_model: str | None = None

    def warm_up(self) -> None:
        pass

    def close(self) -> None:
        pass
