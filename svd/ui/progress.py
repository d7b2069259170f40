"""The page's one progress display: queue place, stage and step, beside the buttons.

It is HTML in an `aria-live` region, so screen readers hear the stage change, and it is
drawn by the run's own handler (no Gradio overlay on every output).
"""

from __future__ import annotations

import html

from svd.backends import Preview, Step, describe
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
    """The display for a job that is waiting or running."""
    if job.status == "IN_QUEUE":
        ahead = "next in the queue" if position == 0 else f"{position} ahead in the queue"
        return panel(f"Waiting: {ahead}", kind="waiting")
    step = last_step(job)
    words = stage(job)
    if step is not None and words in ("denoising", "starting"):
        words = "denoising"
    return panel(words.capitalize(), (step.index, step.total) if step else None)


def stopped(job: Job) -> str:
    step = last_step(job)
    if step is None:
        return "Stopped before the first step."
    return f"Stopped after step {step.index} of {step.total}."
