"""What is done to finished frames, whichever backend made them: loops."""

from __future__ import annotations

import numpy as np


def apply_loop(frames: np.ndarray, mode: str) -> np.ndarray:
    """Make the last frame flow into the first.

    pingpong: play forwards then backwards (2N-2 frames). crossfade: blend the last quarter
    into the first frames, so the cut from the last frame to the first is one ordinary step
    (N - N/4 frames). Fewer than 3 frames are returned as they are.
    """
    n = len(frames)
    if mode == "none" or n < 3:
        return frames
    if mode == "pingpong":
        return np.concatenate([frames, frames[-2:0:-1]])
    if mode == "crossfade":
        k = max(1, n // 4)
        out = frames[: n - k].astype(np.float32)
        tail = frames[n - k :].astype(np.float32)
        for i in range(k):
            weight = (i + 1) / (k + 1)  # of the opening frame; the tail fades out
            out[i] = (1 - weight) * tail[i] + weight * out[i]
        return out if frames.dtype != np.uint8 else out.round().astype(np.uint8)
    raise ValueError(f"loop: unknown mode {mode!r}")
