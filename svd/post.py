"""What is done to finished frames, whichever backend made them: in-between frames, loops."""

from __future__ import annotations

import cv2
import numpy as np

from svd.media import as_uint8_frames


def _flow(a: np.ndarray, b: np.ndarray, dis) -> np.ndarray:
    gray = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (a, b)]
    return dis.calc(gray[0], gray[1], None)


def _warp(frame: np.ndarray, flow: np.ndarray, t: float) -> np.ndarray:
    """`frame` sampled at p - t * flow(p): moved a fraction t along the flow."""
    h, w = flow.shape[:2]
    x, y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(
        frame, x - t * flow[..., 0], y - t * flow[..., 1], cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip


def interpolate(frames: np.ndarray, between: int) -> np.ndarray:
    """Add `between` frames between each pair, by optical flow (OpenCV's DIS, both ways):
    each new frame is the earlier frame moved forwards and the later one moved back,
    blended by their distance in time. uint8 (N, H, W, 3) in and out."""
    if between <= 0 or len(frames) < 2:
        return frames
    frames = np.asarray(frames)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    out = [frames[0]]
    for a, b in zip(frames[:-1], frames[1:], strict=True):
        forward, backward = _flow(a, b, dis), _flow(b, a, dis)
        for i in range(1, between + 1):
            t = i / (between + 1)
            mid = (1 - t) * _warp(a, forward, t).astype(np.float32)
            mid += t * _warp(b, backward, 1 - t).astype(np.float32)
            out.append(np.clip(mid.round(), 0, 255).astype(np.uint8))
        out.append(b)
    return np.stack(out)


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


def finish(frames: np.ndarray, fps: int, between: int, loop: str) -> tuple[np.ndarray, int]:
    """In-between frames, then the loop; the fps grows with the frames so the duration stays."""
    frames = interpolate(as_uint8_frames(frames), between)
    return apply_loop(frames, loop), fps * (between + 1)
