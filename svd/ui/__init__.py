"""The Gradio page: the field table (fields.py), the layout and its wiring (layout.py), what
the events do (handlers.py), and the page's parts: progress, examples, API snippets, the
header line."""

from svd.ui.layout import ASSETS, CSS, JS, THEME, build_app

__all__ = ["ASSETS", "CSS", "JS", "THEME", "build_app"]
