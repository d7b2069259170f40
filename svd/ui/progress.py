"""The page's one progress display: queue place, stage and step, beside the buttons.

It is HTML in an `aria-live` region, so screen readers hear the stage change, and it is
drawn by the run's own handler (no Gradio overlay on every output).
"""

from __future__ import annotations

import html
import time

from svd.events import Preview, Step, describe
from svd.jobs import Job

IDLE = '<div class="run-progress idle" role="status" aria-live="polite"></div>'


def panel(text: str, step: tuple[int, int] | None = None, kind: str = "running") -> str:
    """The display: a line (and a bar when steps are known)."""
    bar = ""
    if step is not None:
        done, total = step
        bar = (f'<progress max="{total}" value="{done}" aria-label="steps done"></progress>'
               f'<span class="count">step {done} of {total}</span>')  # fmt: skip
    return (f'<div class="run-progress {kind}" role="status" aria-live="polite">'
            f'<span class="line">{html.escape(text)}</span>{bar}</div>')  # fmt: skip


def last_step(job: Job) -> Step | None:
    return next((e for e in reversed(job.events) if isinstance(e, Step)), None)


def last_preview(job: Job) -> Preview | None:
    return next((e for e in reversed(job.events) if isinstance(e, Preview)), None)


def stage(job: Job) -> str:
    """The run's current stage, in words."""
    last = next((e for e in reversed(job.events) if not isinstance(e, (Step, Preview))), None)
    return describe(last) if last is not None else "starting"


def of(job: Job, position: int) -> str:
    """The display for a job that is waiting, running or stopping."""
    if job.cancel.is_set():
        return panel("Stopping...", kind="stopped")
    if job.status == "IN_QUEUE":
        ahead = "next in the queue" if position == 0 else f"{position} ahead in the queue"
        return panel(f"Waiting: {ahead}", kind="waiting")
    step = last_step(job)
    words = stage(job)
    if step is not None and words in ("denoising", "starting"):
        words = "denoising"
    return panel(f"{words.capitalize()} · {timing(job, step)}",
                 (step.index, step.total) if step else None)  # fmt: skip


def timing(job: Job, step: Step | None, now: float | None = None) -> str:
    """How long the run has taken, and how long its steps still need at their pace so far
    (whole seconds, so the display changes at most once a second)."""
    now = now or time.time()
    text = f"{now - (job.started or now):.0f} s"
    if step is None or job.first_step is None or step.index <= job.first_step[1]:
        return text
    began, first = job.first_step
    left = (now - began) / (step.index - first) * (step.total - step.index)
    return f"{text}, about {left:.0f} s of steps left" if step.index < step.total else text


def stopped(job: Job) -> str:
    step = last_step(job)
    if step is None:
        return "Stopped before the first step."
    return f"Stopped after step {step.index} of {step.total}."
