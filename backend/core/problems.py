"""RFC 9457 problem details: every error the API returns is ``application/problem+json``
with a ``detail`` sentence a person understands and, for bad input, ``errors``: one
``{field, message}`` per offending field (the field as a dotted path)."""

from __future__ import annotations

from typing import Any

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:curvscope:problem:"

TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
    507: "Insufficient storage",
}


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem+json document."""

    def __init__(self, status: int, detail: str, *, kind: str | None = None,
                 title: str | None = None, errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind or _slug(TITLES.get(status, "error"))
        self.title = title or TITLES.get(status, "Error")
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": TYPE_BASE + self.kind, "title": self.title,
                                "status": self.status, "detail": self.detail}
        if instance:
            body["instance"] = instance
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


def _slug(text: str) -> str:
    return "-".join(text.lower().split())


def field_path(loc: tuple | list) -> str:
    """('body', 'training', 'epochs') → 'training.epochs'; list indices as [i]."""
    parts: list[str] = []
    for item in loc:
        if item in ("body",) and not parts:
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(body)"


def pydantic_errors(errors: list[dict[str, Any]], prefix: tuple = ()) -> list[dict[str, str]]:
    """pydantic's error list as ``{field, message}`` items with readable messages."""
    out = []
    for item in errors:
        # union members add their type names to the location; they only confuse people
        loc = [p for p in item.get("loc", ()) if not (isinstance(p, str) and (
            p.startswith(("function-", "constrained-")) or p in ("int", "str", "float",
                                                                  "bool", "list", "dict")))]
        message = item.get("msg", "invalid value")
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if item.get("type") == "extra_forbidden":
            message = "unknown field (check the spelling; GET /api/v1/schema lists the fields)"
        got = item.get("input")
        if item.get("type") not in ("missing", "extra_forbidden") and not isinstance(
                got, dict | list) and got is not None:
            message += f" (got {got!r})"
        out.append({"field": field_path((*prefix, *loc)), "message": message})
    return out


def sentence(intro: str, errors: list[dict[str, str]]) -> str:
    """'The study spec is invalid: training.epochs: … ; model.hidden: ….'"""
    shown = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return f"{intro}: {shown}{more}."
