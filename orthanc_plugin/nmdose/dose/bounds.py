"""Bounds on a parse result before it reaches the database (issue 14 item 10).

A UID must be a DICOM UID (PS3.5 9.1: at most 64 characters, digits in dot-separated components; leading zeros,
which some vendors write, are tolerated): otherwise the parse is an error naming the file and the attribute.
Free text longer than ``TEXT_MAX`` characters is truncated with a warning (indexed text columns hold at most
~2,700 bytes a row).
"""

from __future__ import annotations

import re
from typing import Any

UID_MAX = 64
TEXT_MAX = 512
UID_SYNTAX = re.compile(r"[0-9]+(\.[0-9]+)*")

# (path in the result, attribute named in the error)
HEADER_UIDS = (
    ("sop_class_uid", "SOP Class UID (0008,0016)"),
    ("sop_instance_uid", "SOP Instance UID (0008,0018)"),
    ("study_instance_uid", "Study Instance UID (0020,000D)"),
    ("series_instance_uid", "Series Instance UID (0020,000E)"),
)
NOT_TEXT = frozenset({"file", "error", "warnings"})


def uid_problem(value: str) -> str | None:
    """Why ``value`` is not a DICOM UID, or None."""
    if len(value) > UID_MAX:
        return f"{len(value)} characters, more than {UID_MAX}"
    if not UID_SYNTAX.fullmatch(value):
        preview = value if len(value) <= 40 else value[:40] + "..."
        return f"{preview!r} is not digits in dot-separated components"
    return None


def bad_uid(result: dict[str, Any]) -> str | None:
    """The first invalid UID of a parse result as '<attribute>: <why>', or None."""
    found = [(attribute, result.get(key)) for key, attribute in HEADER_UIDS]
    for event in (result.get("ct") or {}).get("events") or []:
        found.append(("Irradiation Event UID (113769, DCM)", event.get("irradiation_event_uid")))
    for adm in result.get("radiopharmaceutical") or []:
        found.append(("Radiopharmaceutical Administration Event UID", adm.get("administration_event_uid")))
    for attribute, value in found:
        problem = uid_problem(value) if value is not None else None
        if problem:
            return f"{attribute}: not a valid UID: {problem}"
    return None


def has_long_text(value: Any) -> bool:
    """Whether :func:`truncate_text` would cut anything in ``value``: one scan, no copy (the usual answer is no)."""
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        node = pop()
        kind = type(node)
        if kind is dict:
            if not any(node.values()):  # every value empty or None (an unfilled dose check): nothing to cut
                continue
            for key, item in node.items():
                kind = type(item)
                if kind is str:
                    if len(item) > TEXT_MAX and key not in NOT_TEXT:
                        return True
                elif item is None or kind is float or kind is int or key in NOT_TEXT:
                    continue
                elif kind is dict or kind is list:
                    push(item)
                elif _has_long_text(item):
                    return True
        elif kind is list:
            for item in node:
                kind = type(item)
                if kind is dict or kind is list:
                    push(item)
                elif kind is str:
                    if len(item) > TEXT_MAX:
                        return True
                elif item is not None and kind is not float and kind is not int and _has_long_text(item):
                    return True
        elif _has_long_text(node):
            return True
    return False


def _has_long_text(value: Any) -> bool:
    """:func:`has_long_text` for any type (subclasses of str, dict and list count as they do in truncate_text)."""
    if isinstance(value, str):
        return len(value) > TEXT_MAX
    if isinstance(value, dict):
        return any(_has_long_text(item) for key, item in value.items() if key not in NOT_TEXT)
    if isinstance(value, list):
        return any(_has_long_text(item) for item in value)
    return False


def truncate_text(value: Any, warn, path: str = "") -> Any:
    """Every string of ``value`` cut to ``TEXT_MAX`` characters; ``warn(path, message)`` for each one cut."""
    if isinstance(value, str):
        if len(value) <= TEXT_MAX:
            return value
        warn(path, f"{len(value)} characters; truncated to {TEXT_MAX}")
        return value[:TEXT_MAX]
    if isinstance(value, dict):
        return {
            k: v if k in NOT_TEXT else truncate_text(v, warn, f"{path}.{k}".lstrip("."))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [truncate_text(v, warn, f"{path}[{i}]") for i, v in enumerate(value)]
    return value
