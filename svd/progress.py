"""Progress events shown as a terminal progress bar."""

from __future__ import annotations

from typing import TextIO

from tqdm import tqdm

from svd.events import Event, Preview, Step, Tick, describe


class ProgressPrinter:
    """An `on_event` handler that draws a bar of steps and prints stages and logs."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.bar: tqdm | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Step):
            if self.bar is None:
                self.bar = tqdm(total=event.total, file=self.stream, unit="step", leave=True)
            self.bar.update(event.index - self.bar.n)
        elif not isinstance(event, (Preview, Tick)):  # nothing to print
            self._write(describe(event))

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def __enter__(self) -> ProgressPrinter:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
