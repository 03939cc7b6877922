"""Query parameters of the `/nmdose/` routes: each one a :class:`Param` that parses a string and describes itself
as a JSON schema, so one declaration serves validation (the router runs :func:`parse_params` before the handler)
and the OpenAPI description (web/openapi.py).

Nothing here knows HTTP: bad parameters raise :class:`ParamError` (the router turns it into a 400 answer).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_LIMIT = 100_000


class ParamError(ValueError):
    """A query parameter is missing, unknown or malformed; the message names it and what was expected."""


@dataclass(frozen=True)
class Param:
    """One query parameter: `parse(name, text)` returns the value or raises ParamError; `schema` is its JSON
    schema (OpenAPI 3.1); `required`: absent or empty is an error."""

    parse: Callable[[str, str], Any]
    schema: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    required: bool = False

    def but(self, *, description: str | None = None, required: bool | None = None) -> Param:
        """The same parameter with another description or required flag."""
        return Param(
            self.parse,
            self.schema,
            self.description if description is None else description,
            self.required if required is None else required,
        )


def _date(name: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ParamError(f"parameter '{name}' must be a date YYYY-MM-DD, got {value!r}") from None


def _text(name: str, value: str) -> str:
    if len(value) > 256:
        raise ParamError(f"parameter '{name}' is longer than 256 characters")
    if (
        "\x00" in value
    ):  # no DICOM or PostgreSQL text holds one (psycopg2 refuses it: was a 500, found by fuzzing)
        raise ParamError(f"parameter '{name}' contains a NUL character")
    return value


def _flag(name: str, value: str) -> bool:
    v = value.lower()
    if v in ("1", "true", "yes"):
        return True
    if v in ("0", "false", "no"):
        return False
    raise ParamError(f"parameter '{name}' must be 1/true/yes or 0/false/no, got {value!r}")


DATE = Param(_date, {"type": "string", "format": "date"}, "a date YYYY-MM-DD")
TEXT = Param(_text, {"type": "string", "maxLength": 256})
FLAG = Param(_flag, {"type": "string", "enum": ["1", "true", "yes", "0", "false", "no"]})


def Int(lo: int, hi: int, description: str = "") -> Param:  # noqa: N802 (a parameter type)
    def parse(name: str, value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise ParamError(f"parameter '{name}' must be an integer, got {value!r}") from None
        if not lo <= n <= hi:
            raise ParamError(f"parameter '{name}' must be between {lo} and {hi}, got {n}")
        return n

    return Param(parse, {"type": "integer", "minimum": lo, "maximum": hi}, description)


def Number(hi: float, description: str = "") -> Param:  # noqa: N802
    """A non-negative finite number up to `hi` (ages in years, weights in kg)."""

    def parse(name: str, value: str) -> float:
        try:
            x = float(value)
        except ValueError:
            raise ParamError(f"parameter '{name}' must be a number, got {value!r}") from None
        if x != x or x in (float("inf"), float("-inf")) or x < 0:
            raise ParamError(f"parameter '{name}' must be a non-negative number, got {value!r}")
        if x > hi:
            raise ParamError(f"parameter '{name}' must be at most {hi:g}, got {value!r}")
        return x

    return Param(parse, {"type": "number", "minimum": 0, "maximum": hi}, description)


def Choice(*allowed: str, description: str = "") -> Param:  # noqa: N802
    def parse(name: str, value: str) -> str:
        if value not in allowed:
            raise ParamError(f"parameter '{name}' must be one of {', '.join(allowed)}, got {value!r}")
        return value

    return Param(parse, {"type": "string", "enum": list(allowed)}, description)


def parse_params(query: Mapping[str, str], spec: Mapping[str, Param]) -> dict[str, Any]:
    """Validate `query` against `spec` (name -> Param); unknown names are an error, empty values are unset."""
    query = {k: v for k, v in query.items() if k != ""}  # a bare "?" or "&&" in the URL
    unknown = sorted(set(query) - set(spec))
    if unknown:
        known = ", ".join(sorted(spec)) or "none"
        raise ParamError(f"unknown parameter '{unknown[0]}' (known: {known})")
    out = {name: p.parse(name, query[name]) for name, p in spec.items() if query.get(name, "") != ""}
    missing = [name for name, p in spec.items() if p.required and name not in out]
    if missing:
        raise ParamError(f"parameter '{missing[0]}' is required")
    if "from" in out and "to" in out and out["from"] > out["to"]:
        raise ParamError("parameter 'from' is after 'to'")
    for lo, hi in (("age_min", "age_max"), ("weight_min", "weight_max")):
        if lo in out and hi in out and out[lo] >= out[hi]:
            raise ParamError(f"parameter '{lo}' must be below '{hi}' (min inclusive, max exclusive)")
    return out


FORMAT = {
    "format": Choice("json", "csv", "xlsx", description="answer as JSON (default), CSV or XLSX (an export)")
}
YEARS = {"from_year": Int(1900, 2200, "first year"), "to_year": Int(1900, 2200, "last year")}
DOSE_FILTERS: dict[str, Param] = {
    "from": DATE.but(description="first study date (inclusive)"),
    "to": DATE.but(description="last study date (inclusive)"),
    "manufacturer": TEXT.but(description="equipment manufacturer (part of the text, any case)"),
    "model": TEXT.but(description="equipment model (part of the text, any case)"),
    "station": TEXT.but(description="station name (part of the text, any case)"),
    "modality": TEXT.but(description="modality of any series of the study (part of the text, any case)"),
    "description": TEXT.but(description="study description (part of the text, any case)"),
    "protocol": TEXT.but(
        description="acquisition protocol: the CT event's, else of any event of the study (part of the text, any case)"
    ),
    "agent": TEXT.but(
        description="radiopharmaceutical: the stored text, its display name or part of either, any case"
    ),
    "scanner": TEXT.but(description="scanner: its id or display name (exact, any case), and those merged in"),
    "standard_name": TEXT.but(
        description="standard name (docs/standard_names.md; exact, any case): a CT event's or administration's "
        "own, a study's own or that of any of its CT events or administrations"
    ),
    "sex": Choice("M", "F", "O", description="patient sex"),
    "age_min": Number(150, "patient age in years, inclusive"),
    "age_max": Number(150, "patient age in years, exclusive"),
    "weight_min": Number(1000, "patient weight in kg, inclusive"),
    "weight_max": Number(1000, "patient weight in kg, exclusive"),
}


def limit(default: int, hi: int = MAX_LIMIT) -> dict[str, Param]:
    """A `limit` parameter: at most `hi` rows, `default` when absent."""
    return {"limit": Int(1, hi, f"at most this many rows (default {default})")}
