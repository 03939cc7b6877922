"""How headers and code meanings spell the radiopharmaceuticals: one table for the two uses (issue 16 item 6).

The dose stage matches an agent to pick its ICRP coefficient (`nmdose.dose.derived.agent_from_text`), the pages
show an agent's standard name (`nmdose.web.names`). Both read the spellings below, with one difference on purpose:

- **strict** (the pages): a spelling that names the substance itself (``fluorocholine``, ``sodium fluoride``,
  ``rubidium chloride``); a name shown to a physicist must not be a guess.
- **loose** (the coefficient): also the short forms headers carry, where any reading gives the same coefficient or
  the one a physicist would pick (a bare ``choline``, ``fluoride``, ``iodide``, ``rubidium``, ``octreotide``, a
  bare ``psma``); a study gets a coefficient rather than none.

Patterns apply to the normalised text (:func:`normalise`: NFKC, lower case, every run of non-alphanumerics one
space). Order matters: the first key that matches wins (PSMA-1007 before PSMA-11 before a bare PSMA, DOTATATE
before octreotide). A leaf module: no I/O, imports nothing of nmdose.
"""

from __future__ import annotations

import re
import unicodedata

# (agent key, strict spellings, spellings the loose matching adds); strict None: a loose-only key
SPELLINGS: tuple[tuple[str, str | None, str | None], ...] = (
    ("psma1007", r"\bpsma ?1007\b", None),
    ("psma11", r"\bpsma ?11\b|\bgozetotide\b|\bhbed\b", None),
    ("dcfpyl", r"\bdcfpyl\b|\bpiflufolastat\b|\bpylarify\b", None),
    ("psma617_lu177", r"\bpsma ?617\b|\bvipivotide\b|\bn acetylaspartylglutamate\b", None),
    ("psma", None, r"\bpsma\b"),
    ("dotatate", r"\bdota ?tate\b|\boxodotreotide\b|\bnetspot\b", None),
    ("dotatoc", r"\bdota ?toc\b|\bedotreotide\b", None),
    ("dotanoc", r"\bdota ?noc\b", None),
    ("pentetreotide", r"\bpentetreotide\b|\boctreoscan\b", r"\boctreotide\b"),
    ("fdg", r"\bfdg\b|\bfluoro ?deoxy ?glucose\b|\bfludeoxyglucose\b", None),
    ("fdopa", r"\bf ?dopa\b|\bfluoro ?l? ?dopa\b", r"\bdopa\b"),
    ("fet", r"\bfet\b|\bfluoro ?ethyl ?l? ?tyrosine?\b|\bfluorethyltyrosine?\b", None),
    ("fluorocholine", r"\bfluorocholine\b|\bfluoro ?methyl ?choline\b|\bfch\b", r"\bcholine\b"),
    ("florbetapir", r"\bflorbetapir\b|\bamyvid\b", None),
    ("flutemetamol", r"\bflutemetamol\b|\bvizamyl\b", None),
    ("florbetaben", r"\bflorbetaben\b|\bneuraceq\b", None),
    ("naf", r"\bnaf\b|\bsodium fluoride\b", r"\bna ?18 ?f\b|\bfluoride\b"),
    ("methionine", r"\bmethionine\b", None),
    ("ammonia", r"\bammonia\b|\bnh3\b", None),
    ("rubidium", r"\brubidium chloride\b", r"\brubidium\b|\brb ?82\b|\b82 ?rb\b"),
    ("water", r"\bwater\b|\bh2o\b", None),
    ("mdp", r"\bmdp\b|\bmedronate\b|\bmethylene ?diphosphonate\b", None),
    ("hdp", r"\bhdp\b|\bhmdp\b|\boxidronate\b|\bhydroxy ?methylene ?diphosphonate\b", None),
    ("dpd", r"\bdpd\b|\bteceos\b", None),
    ("sestamibi", r"\bsestamibi\b|\bmibi\b|\bcardiolite\b", None),
    ("tetrofosmin", r"\btetrofosmin\b|\bmyoview\b", None),
    ("maa", r"\bmaa\b|\bmacro ?aggregated albumin\b|\baggregated albumin\b", None),
    ("pertechnetate", r"\bpertechnetate\b|\btco4\b", None),
    ("mag3", r"\bmag ?3\b|\bmertiatide\b|\bmercaptoacetyl ?triglycine\b", None),
    ("dtpa", r"\bdtpa\b|\bpentetate\b", None),
    ("dmsa", r"\bdmsa\b|\bsuccimer\b", None),
    ("hmpao", r"\bhm ?pao\b|\bexametazime\b|\bceretec\b", None),
    ("ecd", r"\becd\b|\bbicisate\b|\bneurolite\b", None),
    ("ioflupane", r"\bioflupane\b|\bfp ?cit\b|\bdatscan\b", None),
    ("mibg", r"\bmibg\b|\biobenguane\b|\biodobenzylguanidine\b|\bmeta ?iodo ?benzyl ?guanidine\b", None),
    (
        "thallium",
        r"\bthallous chloride\b|\bthallium chloride\b",
        r"\bthallium\b|\bthallous\b|\btl 201\b|\b201 ?tl\b",
    ),
    ("nai131", r"\bsodium iodide\b|\bnai\b", r"\biodide\b"),
)

# Forms with their own pharmacology (and ICRP model) that a substance name above would otherwise be taken for.
OTHER_FORM = re.compile(
    r"\b(aerosol|technegas|inhal\w*|wbc|leu[ck]o\w*|granulocyt\w*|white (blood )?cells?)\b"
)


def patterns(*, loose: bool) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """(key, compiled pattern) in matching order: the strict spellings, or with `loose` also the added ones."""
    out = []
    for key, strict, extra in SPELLINGS:
        parts = [p for p in (strict, extra if loose else None) if p]
        if parts:
            out.append((key, re.compile("|".join(parts))))
    return tuple(out)


def normalise(text: str) -> str:
    """Agent text for name matching: NFKC, lower case, every run of non-alphanumerics one space."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", folded).split())
