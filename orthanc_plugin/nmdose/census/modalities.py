"""Expected modalities per StudyDescription, and the correction of studies that do not carry them.

Only image modalities count: a PET-CT with or without its dose report (SR) is the same exam. The expected set of
a description is the one most of its studies carry, unless a `modality_rules` entry of retrieve_options.yaml
(first regex that matches, case-insensitive) says otherwise. Corrections live in the database only; the source
PACS is never touched.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nmdose.config import ModalityRule
from nmdose.sop_classes import NON_IMAGE_MODALITIES

# Modalities of non-image objects: they do not define what kind of exam a study is (the one set, shared with the
# forwarding rules: nmdose.sop_classes).
NON_IMAGE = NON_IMAGE_MODALITIES


def split_modalities(value: str | None) -> list[str]:
    """ModalitiesInStudy as a sorted list of codes (empty and duplicate values dropped)."""
    return sorted({m.strip() for m in (value or "").split("\\") if m.strip()})


def image_modalities(modalities: Iterable[str]) -> tuple[str, ...]:
    """The image modalities of a set, sorted."""
    return tuple(sorted({m for m in modalities if m and m not in NON_IMAGE}))


def fmt(modalities: Iterable[str]) -> str:
    """Modalities as DICOM writes them (CT\\PT)."""
    return "\\".join(modalities) or "(none)"


def rule_for(description: str, rules: Sequence[ModalityRule]) -> ModalityRule | None:
    """The first rule whose pattern matches the description (re.search, case-insensitive)."""
    for rule in rules:
        if re.search(rule.pattern, description, re.IGNORECASE):
            return rule
    return None


@dataclass(frozen=True)
class Expectation:
    """What the studies of one description should carry, and where that comes from."""

    description: str
    expected: tuple[str, ...]  # image modalities
    full: tuple[str, ...]  # the most common complete set among studies with the expected image modalities
    source: str  # "rule <pattern>" or "majority"
    studies: int
    agreeing: int
    tie: bool = False

    def why(self) -> str:
        if self.source == "majority":
            tie = ", tie broken alphabetically" if self.tie else ""
            return f"majority: {self.agreeing} of {self.studies} studies carry {fmt(self.expected)}{tie}"
        return f"{self.source} expects {fmt(self.expected)}"


def expectations(
    studies: Iterable[tuple[str, Sequence[str]]], rules: Sequence[ModalityRule] = ()
) -> dict[str, Expectation]:
    """Per description, the expected modalities from (description, modalities found) of every study."""
    by_description: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for description, found in studies:
        by_description[description].append(tuple(sorted(set(found))))
    result: dict[str, Expectation] = {}
    for description, sets in by_description.items():
        cores = Counter(image_modalities(s) for s in sets)
        rule = rule_for(description, rules)
        tie = False
        if rule is not None:
            expected = image_modalities(rule.modalities)
            source = f"rule {rule.pattern!r}"
        else:
            top = max(cores.values())
            best = sorted(c for c, n in cores.items() if n == top)
            expected, tie = best[0], len(best) > 1
            source = "majority"
        fulls = Counter(s for s in sets if image_modalities(s) == expected)
        full = sorted(fulls.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] if fulls else expected
        result[description] = Expectation(
            description, expected, full, source, len(sets), cores.get(expected, 0), tie
        )
    return result


def correction(found: Sequence[str], exp: Expectation) -> tuple[list[str] | None, str | None]:
    """(corrected set, reason), or (None, None) when the study carries the expected image modalities."""
    core = image_modalities(found)
    if core == exp.expected:
        return None, None
    if exp.full and image_modalities(exp.full) == exp.expected:
        corrected = sorted(exp.full)
    else:
        corrected = sorted(set(exp.expected) | {m for m in found if m in NON_IMAGE})
    reason = (
        f"ModalitiesInStudy {fmt(sorted(found))} lacks or adds image modalities for "
        f"{exp.description!r} ({exp.why()})"
    )
    return corrected, reason


# `correction`'s reason, read back for the research page (which words it for a technologist, in two languages).
_REASON = re.compile(
    r"ModalitiesInStudy (?P<found>\S+) lacks or adds image modalities for .* \("
    r"(?:majority: (?P<agreeing>\d+) of (?P<studies>\d+) studies carry (?P<expected>\S+?)(?P<tie>, tie broken "
    r"alphabetically)?|rule (?P<rule>.*) expects (?P<rule_expected>\S+))\)",
    re.DOTALL,
)


def explain_reason(reason: str | None) -> dict[str, object] | None:
    """A stored `correction_reason` as a code and its values: `majority` (found, expected, agreeing, studies,
    tie), `rule` (found, expected, rule: the pattern as written in modality_rules) or `other` (text: the reason
    as stored, e.g. one written by an older version). Modality sets are lists (`[]`: none)."""
    if reason is None:
        return None
    m = _REASON.fullmatch(reason)
    if m is None:
        return {"code": "other", "text": reason}

    def mods(text: str) -> list[str]:
        return [] if text == fmt([]) else text.split("\\")

    if m["rule"] is not None:
        rule = m["rule"]
        if len(rule) >= 2 and rule[0] == rule[-1] and rule[0] in "'\"":
            rule = rule[1:-1]
        return {"code": "rule", "found": mods(m["found"]), "expected": mods(m["rule_expected"]), "rule": rule}
    return {
        "code": "majority",
        "found": mods(m["found"]),
        "expected": mods(m["expected"]),
        "agreeing": int(m["agreeing"]),
        "studies": int(m["studies"]),
        "tie": m["tie"] is not None,
    }
