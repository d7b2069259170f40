"""Errors that reach the user: each names the field it is about."""

from __future__ import annotations

from pydantic import ValidationError


class InputError(ValueError):
    """Bad input. `field` is the request field at fault; `message` says why."""

    def __init__(self, field: str, message: str, details: list[dict] | None = None):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.details = details or [{"loc": [field], "msg": message, "type": "value_error"}]

    @classmethod
    def from_validation(cls, error: ValidationError) -> InputError:
        """The first problem of a pydantic error, worded for a person."""
        details = error.errors(include_url=False, include_context=False)
        for detail, full in zip(details, error.errors(include_url=False), strict=True):
            rule = (full.get("ctx") or {}).get("error")
            if isinstance(rule, RuleError):  # a rule across fields names its own field
                detail.update(loc=(rule.field,), msg=str(rule))
                detail.pop("input", None)
        first = details[0]
        field = ".".join(str(p) for p in first["loc"]) or "input"
        message = first["msg"]
        if first["type"] != "missing" and "input" in first:
            message += f" (got {short(first['input'])})"
        return cls(field, message, details)

    def fal_detail(self, where: str = "body") -> list[dict]:
        """The problems as fal and FastAPI word a 422: [{loc: [where, field], msg, type}];
        `where` is the part of the request: body, query, header."""
        return [
            {"loc": [where, *d["loc"]], "msg": d["msg"], "type": d.get("type", "value_error")}
            for d in self.details
        ]


class RuleError(ValueError):
    """A rule across fields, broken; raised in the schema's validators, naming `field`."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class BackendError(RuntimeError):
    """A generation failed for a reason other than bad input."""


def short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
