"""Gradio handler shapes for the page: parameters named by the field table's keys, and
yields of {output name: value} dicts turned into lists in the outputs' order."""

from __future__ import annotations

import functools
import inspect

import gradio as gr

from svd.forwarded import limit_key
from svd.ui.fields import KEYS


def visitor(request: gr.Request | None) -> tuple[str, str]:
    """The browser session of a page request, and what the per-address limit counts for it
    (see svd.api.client_address)."""
    if request is None:
        return "", ""
    host = getattr(getattr(request, "client", None), "host", "") or ""
    return request.session_hash or "", limit_key(host) if host else ""


def by_key(fn, outputs: list[str]):
    """`fn(values, request)`, an async generator of {output name: value} dicts, as a Gradio
    handler whose parameters are the field table's keys (they name the `generate`
    endpoint's parameters) and whose yields are lists in `outputs` order. The picture is
    the one parameter a script must give: Gradio offers the others as optional, with their
    widgets' values (or None) as defaults."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter(k, kind, **({} if k == "image" else {"default": None}))
              for k in KEYS]  # fmt: skip
    params.append(inspect.Parameter("request", kind, default=None, annotation=gr.Request))

    async def handler(*args, **kwargs):
        n = len(KEYS)
        extra = [*args[n:], *kwargs.values()]  # Gradio places the request by its own rules
        request = next((a for a in extra if isinstance(a, gr.Request)), None)
        async for update in fn(dict(zip(KEYS, args[:n], strict=True)), request):
            yield [update.get(name, gr.update()) for name in outputs]

    handler.__signature__ = inspect.Signature(params)
    handler.__annotations__ = {"request": gr.Request}  # Gradio reads the type hints here
    return handler


def keyed(fn):
    """`fn(values, request)` as a Gradio handler whose parameters are the field table's keys."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter(k, kind) for k in KEYS]
    params.append(inspect.Parameter("request", kind, default=None, annotation=gr.Request))

    def handler(*args, **kwargs):
        n = len(KEYS)
        extra = [*args[n:], *kwargs.values()]
        request = next((a for a in extra if isinstance(a, gr.Request)), None)
        return fn(dict(zip(KEYS, args[:n], strict=True)), request)

    handler.__signature__ = inspect.Signature(params)
    handler.__annotations__ = {"request": gr.Request}
    return handler


def in_order(fn, outputs: list[str]):
    """`fn`, returning (or, as an async generator, yielding) {output name: value} dicts, as a
    handler answering lists in `outputs` order (Gradio reads `fn`'s own signature for what to
    inject)."""

    def ordered(update: dict) -> list:
        return [update.get(name, gr.update()) for name in outputs]

    if not inspect.isasyncgenfunction(fn):
        return functools.wraps(fn)(lambda *args, **kwargs: ordered(fn(*args, **kwargs)))

    @functools.wraps(fn)
    async def handler(*args, **kwargs):
        async for update in fn(*args, **kwargs):
            yield ordered(update)

    return handler
