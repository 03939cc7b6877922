"""Radiopharmaceutical and radionuclide names as people write them (issue 16 item 6).

DICOM writes the mass number between carets (CID 25 / CID 4021 / CID 18 code meanings: ``Fluorodeoxyglucose
F^18^``, ``Technetium Tc^99m^ medronate``, ``^99m^Technetium``); the pages show ``¹⁸F-FDG``, ``⁹⁹ᵐTc-MDP``,
``⁹⁹ᵐTc``. The notation is the one Korean nuclear medicine writes too, so one name serves both languages.

A pure function of the stored text (no database, no configuration): the SQL answers keep the raw value (they are
cached per data version, grouped and filtered by it) and the routes put the display name in on the way out
(:func:`display_rows`), the raw text beside it as ``agent_code_meaning`` / ``radionuclide_code_meaning``.

1. A known agent (the CID 25/4021 meanings of ``nmdose.dose.codes`` and the usual free text of image headers:
   "FDG", "Tc-99m MDP", "Ga-68 DOTATATE") gets its standard name, unless the text names another nuclide ("In-111
   DTPA" is not ⁹⁹ᵐTc-DTPA) or another form (aerosol, labelled white cells).
2. Anything else: the caret patterns become superscript mass numbers before the element's symbol
   (``Gallium Ga^68^ foo`` → ``⁶⁸Ga-foo``, ``^18^Fluorine`` → ``¹⁸F``), so an unknown agent still reads well.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from nmdose import agent_names

SUPERSCRIPT = str.maketrans("0123456789m", "⁰¹²³⁴⁵⁶⁷⁸⁹ᵐ")

# element name (as DICOM code meanings spell it) -> symbol, for the nuclides of CID 18 / CID 4020 in use
ELEMENTS: dict[str, str] = {
    "fluorine": "F", "carbon": "C", "nitrogen": "N", "oxygen": "O", "gallium": "Ga", "rubidium": "Rb",
    "copper": "Cu", "zirconium": "Zr", "iodine": "I", "technetium": "Tc", "indium": "In", "thallium": "Tl",
    "lutetium": "Lu", "yttrium": "Y", "radium": "Ra", "samarium": "Sm", "strontium": "Sr", "xenon": "Xe",
    "krypton": "Kr", "chromium": "Cr", "holmium": "Ho", "rhenium": "Re", "erbium": "Er", "actinium": "Ac",
    "scandium": "Sc", "terbium": "Tb", "cobalt": "Co", "selenium": "Se", "phosphorus": "P",
}  # fmt: skip
SYMBOLS = {s.lower(): s for s in ELEMENTS.values()}

# agent -> (its nuclide, the name people write); the keys are nmdose.dose.codes.RADIOPHARMACEUTICALS' (plus dpd,
# dotanoc), the names the usual ones of package inserts and guidelines (EANM/SNMMI)
AGENTS: dict[str, tuple[str, str]] = {
    "fdg": ("18F", "¹⁸F-FDG"),
    "naf": ("18F", "¹⁸F-NaF"),
    "fluorocholine": ("18F", "¹⁸F-fluorocholine"),
    "fdopa": ("18F", "¹⁸F-FDOPA"),
    "fet": ("18F", "¹⁸F-FET"),
    "florbetaben": ("18F", "¹⁸F-florbetaben"),
    "florbetapir": ("18F", "¹⁸F-florbetapir"),
    "flutemetamol": ("18F", "¹⁸F-flutemetamol"),
    "psma1007": ("18F", "¹⁸F-PSMA-1007"),
    "dcfpyl": ("18F", "¹⁸F-DCFPyL"),
    "psma11": ("68Ga", "⁶⁸Ga-PSMA-11"),
    "dotatate": ("68Ga", "⁶⁸Ga-DOTATATE"),
    "dotatoc": ("68Ga", "⁶⁸Ga-DOTATOC"),
    "dotanoc": ("68Ga", "⁶⁸Ga-DOTANOC"),
    "ammonia": ("13N", "¹³N-ammonia"),
    "rubidium": ("82Rb", "⁸²Rb-chloride"),
    "methionine": ("11C", "¹¹C-methionine"),
    "water": ("15O", "¹⁵O-water"),
    "mdp": ("99mTc", "⁹⁹ᵐTc-MDP"),
    "hdp": ("99mTc", "⁹⁹ᵐTc-HDP"),
    "dpd": ("99mTc", "⁹⁹ᵐTc-DPD"),
    "sestamibi": ("99mTc", "⁹⁹ᵐTc-sestamibi"),
    "tetrofosmin": ("99mTc", "⁹⁹ᵐTc-tetrofosmin"),
    "pertechnetate": ("99mTc", "⁹⁹ᵐTc-pertechnetate"),
    "dmsa": ("99mTc", "⁹⁹ᵐTc-DMSA"),
    "maa": ("99mTc", "⁹⁹ᵐTc-MAA"),
    "dtpa": ("99mTc", "⁹⁹ᵐTc-DTPA"),
    "mag3": ("99mTc", "⁹⁹ᵐTc-MAG3"),
    "hmpao": ("99mTc", "⁹⁹ᵐTc-HMPAO"),
    "ecd": ("99mTc", "⁹⁹ᵐTc-ECD"),
    "ioflupane": ("123I", "¹²³I-ioflupane"),
    "pentetreotide": ("111In", "¹¹¹In-pentetreotide"),
    "thallium": ("201Tl", "²⁰¹Tl-chloride"),
    "nai131": ("131I", "¹³¹I-NaI"),
    "psma617_lu177": ("177Lu", "¹⁷⁷Lu-PSMA-617"),
}
# A name that fits one substance of several nuclides: the nuclide of the text decides (else the first).
BY_NUCLIDE: dict[str, dict[str, str]] = {"mibg": {"123I": "¹²³I-MIBG", "131I": "¹³¹I-MIBG"}}

# Substance names (strict spellings: a name shown must not be a guess) and the forms with their own pharmacology:
# the one table of nmdose.agent_names, which the dose stage's coefficient matching reads loosely.
PATTERNS = agent_names.patterns(loose=False)
OTHER_FORM = agent_names.OTHER_FORM

_MASS = r"(\d{1,3}m?)"
_SYMBOL = "|".join(sorted(SYMBOLS.values(), key=len, reverse=True))
_NAME = "|".join(sorted(ELEMENTS, key=len, reverse=True))
# the nuclide a free text names: "F^18^", "^18^F", "Tc-99m", "99mTc", "Tc 99m", "Tc99m", "Iodine^123", "Iodine-131"
_NUCLIDE_IN_TEXT = re.compile(
    rf"(?<![A-Za-z])(?:(?P<s1>{_SYMBOL})[-\s^]?{_MASS.replace('(', '(?P<m1>', 1)}\^?"
    rf"|\^?{_MASS.replace('(', '(?P<m2>', 1)}\^?[-\s]?(?P<s2>{_SYMBOL})"
    rf"|(?P<n3>{_NAME})[-\s^]?{_MASS.replace('(', '(?P<m3>', 1)}\^?"
    rf"|\^{_MASS.replace('(', '(?P<m4>', 1)}\^(?P<n4>{_NAME}))(?![A-Za-z])",
    re.IGNORECASE,
)


def superscript(mass: str) -> str:
    """``99m`` → ``⁹⁹ᵐ``."""
    return mass.lower().translate(SUPERSCRIPT)


def _nuclide(text: str) -> str | None:
    """The nuclide a text names, as mass + symbol (``99mTc``), or None."""
    m = _NUCLIDE_IN_TEXT.search(text)
    if not m:
        return None
    mass = m["m1"] or m["m2"] or m["m3"] or m["m4"]
    symbol = m["s1"] or m["s2"]
    if symbol is None:
        symbol = ELEMENTS[(m["n3"] or m["n4"]).lower()]
    return mass.lower() + SYMBOLS[symbol.lower()]


_normalise = agent_names.normalise


def _known(text: str) -> str | None:
    """The standard name of a known agent named by `text`, or None (unknown, another nuclide, another form)."""
    norm = _normalise(text)
    if OTHER_FORM.search(norm):
        return None
    nuclide = _nuclide(text)
    for key, pattern in PATTERNS:
        if not pattern.search(norm):
            continue
        if key in BY_NUCLIDE:
            names = BY_NUCLIDE[key]
            if nuclide is None:
                return None  # MIBG without its iodine: say nothing rather than guess
            return names.get(nuclide)
        own, name = AGENTS[key]
        return name if nuclide in (None, own) else None
    return None


# "Gallium Ga^68^ rest" / "Technetium Tc^99m^rest": the element's name, its symbol with the mass, the rest
_NAME_SYMBOL_REST = re.compile(rf"^\s*(?:{_NAME})\s+({_SYMBOL})\s*\^{_MASS}\^\s*(.*)$", re.IGNORECASE)
# "rest Sym^NN^" (a meaning ending in the nuclide, "Sodium iodide I^131^")
_REST_SYMBOL = re.compile(rf"^(.*?)\s*(?<![A-Za-z])({_SYMBOL})\s*\^{_MASS}\^\s*$", re.IGNORECASE)
# "Name^NN^ rest" / "Name^NN rest" ("Iodine^123 3-Iodobenzylguanidine MIBG") and "^NN^Name rest"
_ELEMENT_MASS_REST = re.compile(rf"^\s*({_NAME})\s*\^{_MASS}\^?\s*(.*)$", re.IGNORECASE)
_MASS_ELEMENT_REST = re.compile(rf"^\s*\^{_MASS}\^\s*({_NAME}|{_SYMBOL})(?![A-Za-z])\s*(.*)$", re.IGNORECASE)
_CARETS = re.compile(r"\^(\d{1,3}m?)\^?")
# free text beginning with its nuclide: "Tc-99m DTPA aerosol", "In-111 DTPA", "99mTc foo"
_LEADING_NUCLIDE = re.compile(
    rf"^\s*(?:({_SYMBOL})[-\s]?{_MASS}|{_MASS}[-\s]?({_SYMBOL}))(?![A-Za-z0-9])[-\s]+(\S.*)$", re.IGNORECASE
)


def _generic(text: str) -> str:
    """The caret patterns as superscript mass numbers before the symbol: ``Gallium Ga^68^ foo`` → ``⁶⁸Ga-foo``."""
    m = _NAME_SYMBOL_REST.match(text)
    if m:
        symbol, mass, rest = SYMBOLS[m[1].lower()], m[2], m[3]
    elif m := _REST_SYMBOL.match(text):
        rest, symbol, mass = m[1], SYMBOLS[m[2].lower()], m[3]
    elif m := _ELEMENT_MASS_REST.match(text):
        symbol, mass, rest = ELEMENTS[m[1].lower()], m[2], m[3]
    elif m := _MASS_ELEMENT_REST.match(text):
        word = m[2].lower()
        symbol, mass, rest = ELEMENTS.get(word) or SYMBOLS[word], m[1], m[3]
    elif m := _LEADING_NUCLIDE.match(text):
        symbol, mass, rest = SYMBOLS[(m[1] or m[4]).lower()], m[2] or m[3], m[5]
    else:
        return _CARETS.sub(lambda c: superscript(c[1]), text)
    nuclide = superscript(mass) + symbol
    rest = _CARETS.sub(lambda c: superscript(c[1]), rest.strip())
    return f"{nuclide}-{rest}" if rest else nuclide


@lru_cache(maxsize=4096)
def agent_name(text: str | None) -> str | None:
    """The radiopharmaceutical as people write it: ``Fluorodeoxyglucose F^18^`` → ``¹⁸F-FDG``; an unknown one with
    its carets as superscripts; None and "" as they are."""
    if not text:
        return text
    if _NUCLIDE_IN_TEXT.fullmatch(text.strip()):  # the agent given as its nuclide alone ("Tc-99m")
        return nuclide_name(text)
    return _known(text) or _generic(text.strip())


@lru_cache(maxsize=1024)
def nuclide_name(text: str | None) -> str | None:
    """The radionuclide as people write it: ``^99m^Technetium`` → ``⁹⁹ᵐTc``, ``Tc-99m`` → ``⁹⁹ᵐTc``."""
    if not text:
        return text
    stripped = text.strip()
    nuclide = _nuclide(stripped)
    if nuclide is not None and _NUCLIDE_IN_TEXT.fullmatch(stripped):
        mass, symbol = re.match(r"(\d+m?)(.*)", nuclide).groups()
        return superscript(mass) + symbol
    return _generic(stripped)


# column -> (the display function, the column keeping the raw text)
DISPLAY_COLUMNS = {
    "agent": (agent_name, "agent_code_meaning"),
    "radionuclide": (nuclide_name, "radionuclide_code_meaning"),
}


def display_rows(rows: Iterable[dict[str, Any]], columns: Sequence[str] = ("agent",)) -> list[dict[str, Any]]:
    """Copies of `rows` with each of `columns` (keys of DISPLAY_COLUMNS) as people write it and the raw text in
    the column after it (``agent`` → ``agent``, ``agent_code_meaning``), in that order (the exports' columns)."""
    out = []
    for row in rows:
        new: dict[str, Any] = {}
        for key, value in row.items():
            if key in columns:
                name, raw_key = DISPLAY_COLUMNS[key]
                new[key] = name(value)
                new[raw_key] = value
            else:
                new[key] = value
        out.append(new)
    return out


def display_group(
    rows: Iterable[dict[str, Any]], kinds: frozenset[str] = frozenset({"administration"})
) -> list:
    """Outlier rows: the `group` of an administration is its agent; shown as people write it, the raw text in
    ``agent_code_meaning`` (None for the other kinds)."""
    out = []
    for row in rows:
        administration = row.get("kind") in kinds
        new = dict(row)
        new["group"] = agent_name(row.get("group")) if administration else row.get("group")
        new["agent_code_meaning"] = row.get("group") if administration else None
        out.append(new)
    return out


def agent_matches(display_or_raw: str, raw: str | None) -> bool:
    """Whether a filter value names the raw agent text: the raw text itself or its display name (case-insensitive)."""
    if raw is None:
        return False
    wanted = display_or_raw.strip().casefold()
    return wanted in (raw.strip().casefold(), (agent_name(raw) or "").casefold())
