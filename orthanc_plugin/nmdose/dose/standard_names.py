"""Standard names (issue 16 item 1): one name for the same examination however each scanner spells it.

A rule (``dose.standard_name_rule``, sql/015_standard_names.sql) maps a raw value of one field — study
description, requested procedure, CT acquisition protocol, radiopharmaceutical agent — to a standard name, for
every scanner or for one. Values are matched by their normalised form (:func:`normalise`: case, spacing,
punctuation, full-width characters and common Korean/English variants), so `CT Chest`, `ct  chest`,
`Chest-CT` and `흉부 CT` are one raw form.

The names given are stored on the rows (:func:`apply`): every existing row at once after a rule changes (one
``UPDATE ... FROM`` per table, set-based), and each study as it is ingested (dose/ingest.py). Precedence:

* a study's name comes from the first field in :data:`FIELDS` order that has a matching rule (study description,
  then requested procedure, then acquisition protocol — the first event by ordinal —, then agent);
* within one field a rule for the study's scanner wins over a rule for all scanners;
* a CT event's name is its acquisition protocol's, else its study's; an administration's is its agent's, else
  its study's.

Rules come and go as CSV or YAML too (:func:`parse_csv`, :func:`parse_yaml`, :func:`to_csv`, :func:`to_yaml`);
a file with any bad line imports nothing, and each error names its line and the problem.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import yaml

# The fields a rule may match, in the priority order of a study's name.
FIELDS = ("study_description", "requested_procedure", "acquisition_protocol", "agent")
MAX_RAW = 256
MAX_NAME = 128

# ----- the normaliser --------------------------------------------------------------------------------------

# Phrases replaced before the text is cut into words (lower case, after NFKC): spellings of contrast use.
PHRASES: tuple[tuple[str, str], ...] = (
    (r"\bw\s*/\s*o\b", " noncontrast "),
    (r"\bwithout\s+contrast\b", " noncontrast "),
    (r"\bnon[\s\-]*contrast\b", " noncontrast "),
    (r"\bnon[\s\-]*enhanced\b", " noncontrast "),
    (r"\bc\s*-(?=\s|$)", " noncontrast "),
    (r"\bc\s*\+", " contrast "),
    (r"\bw\s*/\s*c\b", " contrast "),
    (r"\bw\s*/", " "),
    (r"\bwith\s+contrast\b", " contrast "),
    (r"\bwhole[\s\-]*body\b", " wholebody "),
)
# Korean words, replaced inside Korean text (longest first: 비조영 before 조영), with their English word.
KOREAN: tuple[tuple[str, str], ...] = (
    ("조영증강", "contrast"),
    ("비조영", "noncontrast"),
    ("조영", "contrast"),
    ("흉부", "chest"),
    ("복부", "abdomen"),
    ("두부", "head"),
    ("머리", "head"),
    ("골반", "pelvis"),
    ("경부", "neck"),
    ("척추", "spine"),
    ("전신", "wholebody"),
    ("뇌", "brain"),
    ("씨티", "ct"),
    ("펫", "pet"),
    ("저선량", "lowdose"),
    ("뼈", "bone"),
    ("스캔", "scan"),
    ("갑상선", "thyroid"),
    ("심근", "myocardial"),
    ("관류", "perfusion"),
)
# Words with the same meaning: each one -> the word it is written as.
SYNONYMS: dict[str, str] = {
    "thorax": "chest",
    "thoracic": "chest",
    "lung": "chest",
    "abd": "abdomen",
    "abdominal": "abdomen",
    "pelvic": "pelvis",
    "skull": "head",
    "wo": "noncontrast",
    "nce": "noncontrast",
    "plain": "noncontrast",
    "pre": "noncontrast",
    "ce": "contrast",
    "cect": "contrast ct",
    "enhanced": "contrast",
    "enhance": "contrast",
    "with": "",
    "and": "",
    "wb": "wholebody",
    "ldct": "lowdose ct",
    "ld": "lowdose",
    "petct": "pet ct",
}
_HANGUL = r"\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f"
_KOREAN_RE = re.compile("|".join(k for k, _ in KOREAN))
_KOREAN_MAP = dict(KOREAN)
_PHRASE_RES = tuple((re.compile(p), r) for p, r in PHRASES)
# a word: a decimal number (1.0), or a run of one script (Hangul, or Latin letters and digits)
_WORD_RE = re.compile(rf"[0-9]+\.[0-9]+|[{_HANGUL}]+|[^\W_{_HANGUL}]+")


@lru_cache(maxsize=200_000)
def normalise(text: str | None) -> str:
    """The form raw values are matched by: NFKC (full-width to half-width), case-folded, contrast phrases and
    Korean words in English, synonyms merged, punctuation and spacing dropped, the words de-duplicated and
    sorted (`CT Chest`, `chest  ct`, `흉부 CT` and `CT-흉부` all give `chest ct`). '' when nothing is left."""
    if not text:
        return ""
    t = unicodedata.normalize("NFKC", text).casefold()
    for regex, replacement in _PHRASE_RES:
        t = regex.sub(replacement, t)
    t = _KOREAN_RE.sub(lambda m: f" {_KOREAN_MAP[m.group(0)]} ", t)
    words: set[str] = set()
    for word in _WORD_RE.findall(t):
        for w in SYNONYMS.get(word, word).split():
            words.add(w)
    return " ".join(sorted(words))


# ----- rules as data -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One mapping: `raw_value` of `field` (matched by its normalised form) -> `standard_name`, for `scanner_id`
    (None: every scanner). `line`: where it came from in an imported file (0: not from a file)."""

    field: str
    raw_value: str
    standard_name: str
    scanner_id: int | None = None
    line: int = 0

    @property
    def normalised(self) -> str:
        return normalise(self.raw_value)

    @property
    def key(self) -> tuple[str, str, int | None]:
        return self.field, self.normalised, self.scanner_id


class RuleError(ValueError):
    """Rules that cannot be imported: `errors` lists each problem with its line ("line 3: ...")."""

    def __init__(self, errors: Sequence[str]):
        super().__init__("; ".join(errors))
        self.errors = list(errors)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def check_rule(
    field: Any, raw_value: Any, standard_name: Any, scanner_id: Any = None, line: int = 0
) -> tuple[Rule | None, list[str]]:
    """A Rule from untrusted values, or None and the problems (without a line prefix)."""
    problems = []
    field, raw, name = _text(field), _text(raw_value), _text(standard_name)
    if field not in FIELDS:
        problems.append(f"field must be one of {', '.join(FIELDS)}, got {field!r:.60}")
    if not raw:
        problems.append("raw_value is empty")
    elif len(raw) > MAX_RAW:
        problems.append(f"raw_value is longer than {MAX_RAW} characters")
    elif not normalise(raw):
        problems.append(f"raw_value {raw!r:.60} has no letter or digit to match")
    if not name:
        problems.append("standard_name is empty")
    elif len(name) > MAX_NAME:
        problems.append(f"standard_name is longer than {MAX_NAME} characters")
    if any("\x00" in v for v in (raw, name)):
        problems.append("a value contains a NUL character")
    scanner: int | None = None
    if scanner_id is not None and _text(scanner_id) != "":
        text = _text(scanner_id)
        if isinstance(scanner_id, bool) or not re.fullmatch(r"[0-9]{1,9}", text) or int(text) < 1:
            problems.append(
                f"scanner_id must be a positive integer or empty (all scanners), got {text!r:.30}"
            )
        else:
            scanner = int(text)
    if problems:
        return None, problems
    return Rule(field, raw, name, scanner, line), []


def check_items(items: Iterable[tuple[int, dict[str, Any]]], what: str = "line") -> list[Rule]:
    """Rules of (line, values) items; RuleError listing every problem ("line 3: ..."; `what` names the
    numbering), also two lines giving one raw form two different names."""
    rules: list[Rule] = []
    errors: list[str] = []
    seen: dict[tuple[str, str, int | None], Rule] = {}
    for line, values in items:
        rule, problems = check_rule(
            values.get("field"),
            values.get("raw_value"),
            values.get("standard_name"),
            values.get("scanner_id"),
            line,
        )
        errors += [f"{what} {line}: {p}" for p in problems]
        if rule is None:
            continue
        other = seen.get(rule.key)
        if other is not None:
            if other.standard_name != rule.standard_name:
                errors.append(
                    f"{what} {line}: {rule.field} {rule.raw_value!r} is {rule.standard_name!r} here but "
                    f"{other.standard_name!r} on {what} {other.line} (the same normalised form {rule.normalised!r})"
                )
            continue
        seen[rule.key] = rule
        rules.append(rule)
    if errors:
        raise RuleError(errors)
    return rules


CSV_COLUMNS = ("field", "raw_value", "scanner_id", "standard_name")
# A cell a spreadsheet would run as a formula gets a leading apostrophe on export (OWASP, CSV injection), which
# the import takes off again.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell_out(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _cell_in(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_START) else text


def parse_csv(text: str) -> list[Rule]:
    """Rules from CSV with the header `field,raw_value,scanner_id,standard_name` (any order; scanner_id may be
    left out or empty: every scanner). A BOM is allowed (Excel writes one). RuleError on any bad line."""
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise RuleError(
            ["line 1: the file is empty (expected the header " + ",".join(CSV_COLUMNS) + ")"]
        ) from None
    missing = [c for c in ("field", "raw_value", "standard_name") if c not in header]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if missing or unknown:
        what = f"lacks column {missing[0]!r}" if missing else f"has unknown column {unknown[0]!r}"
        raise RuleError([f"line 1: the header {what} (expected {','.join(CSV_COLUMNS)})"])
    items, errors = [], []
    for row in reader:
        line = reader.line_num
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            errors.append(f"line {line}: {len(row)} values, the header has {len(header)}")
            continue
        items.append((line, {h: _cell_in(v) for h, v in zip(header, row, strict=True)}))
    try:
        rules = check_items(items)
    except RuleError as exc:
        errors += exc.errors
    if errors:
        raise RuleError(sorted(errors, key=_line_of))
    return rules


def _line_of(error: str) -> int:
    m = re.match(r"line (\d+)", error)
    return int(m.group(1)) if m else 0


class _LineLoader(yaml.SafeLoader):
    """A safe YAML loader that notes each mapping's line as `__line__`."""

    def construct_mapping(self, node, deep=False):
        mapping = super().construct_mapping(node, deep=deep)
        mapping["__line__"] = node.start_mark.line + 1
        return mapping


YAML_KEYS = {"standard_name", "field", "scanner_id", "raw_values", "raw_value", "__line__"}


def parse_yaml(text: str) -> list[Rule]:
    """Rules from YAML: `standard_names:` (or the document itself) a list of entries
    `{standard_name, field, scanner_id (optional), raw_values: [...]}` (or one `raw_value`). RuleError on any bad
    entry, naming its line."""
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise RuleError([f"line {line}: not YAML ({getattr(exc, 'problem', None) or exc})"]) from None
    if isinstance(doc, dict) and "standard_names" in doc:
        doc = doc["standard_names"]
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise RuleError(["line 1: expected a list of entries (or `standard_names:` holding one)"])
    items: list[tuple[int, dict[str, Any]]] = []
    errors: list[str] = []
    for entry in doc:
        if not isinstance(entry, dict):
            errors.append(f"an entry is {type(entry).__name__}, not a mapping: {entry!r:.60}")
            continue
        line = entry.get("__line__", 0)
        unknown = sorted(set(entry) - YAML_KEYS)
        if unknown:
            errors.append(
                f"line {line}: unknown key {unknown[0]!r} (known: field, raw_values, scanner_id, standard_name)"
            )
            continue
        raws = entry.get("raw_values", [])
        if "raw_value" in entry:
            raws = [entry["raw_value"], *(raws or [])]
        if not isinstance(raws, list) or not raws:
            errors.append(f"line {line}: raw_values must be a non-empty list")
            continue
        for raw in raws:
            if isinstance(raw, (dict, list)):
                errors.append(f"line {line}: a raw value must be text, got {type(raw).__name__}")
                continue
            items.append((line, {**entry, "raw_value": raw}))
    try:
        rules = check_items(items)
    except RuleError as exc:
        errors += exc.errors
    if errors:
        raise RuleError(errors)
    return rules


def to_csv(rows: Iterable[dict[str, Any]]) -> str:
    """Rules (dicts with the CSV columns) as CSV, the format :func:`parse_csv` reads."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([_cell_out(r.get(c)) for c in CSV_COLUMNS])
    return out.getvalue()


def to_yaml(rows: Iterable[dict[str, Any]]) -> str:
    """Rules as YAML, one entry per standard name, field and scanner, the format :func:`parse_yaml` reads."""
    groups: dict[tuple[str, str, int | None], list[str]] = {}
    for r in rows:
        groups.setdefault((r["standard_name"], r["field"], r.get("scanner_id")), []).append(r["raw_value"])
    entries = []
    for (name, field, scanner), raws in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)
    ):
        entry: dict[str, Any] = {"standard_name": name, "field": field}
        if scanner is not None:
            entry["scanner_id"] = scanner
        entry["raw_values"] = raws
        entries.append(entry)
    return yaml.safe_dump({"standard_names": entries}, allow_unicode=True, sort_keys=False)


# ----- the database ------------------------------------------------------------------------------------------

RULE_COLUMNS = "id, field, raw_value, normalised, scanner_id, standard_name, created_by, created_at, updated_by, updated_at"


def list_rules(cur) -> list[dict[str, Any]]:
    cur.execute(
        f"""SELECT {RULE_COLUMNS} FROM dose.standard_name_rule
             ORDER BY standard_name, field, normalised, scanner_id NULLS FIRST"""
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


UPSERT = f"""INSERT INTO dose.standard_name_rule
                 (field, raw_value, normalised, scanner_id, standard_name, created_by, updated_by)
             VALUES (%s, %s, %s, %s, %s, %s, %s)
             ON CONFLICT (field, normalised, coalesce(scanner_id, -1)) DO UPDATE
                SET standard_name = EXCLUDED.standard_name, raw_value = EXCLUDED.raw_value,
                    updated_by = EXCLUDED.updated_by, updated_at = now()
              WHERE dose.standard_name_rule.standard_name IS DISTINCT FROM EXCLUDED.standard_name
             RETURNING {RULE_COLUMNS}, (xmax = 0) AS inserted"""


def upsert_rules(cur, rules: Sequence[Rule], by: str | None) -> dict[str, int]:
    """Store `rules` (one per field, normalised form and scope: a later one replaces the name); counts of
    rules inserted, updated (another name) and unchanged."""
    counts = {"inserted": 0, "updated": 0, "unchanged": 0}
    for r in rules:
        cur.execute(UPSERT, (r.field, r.raw_value, r.normalised, r.scanner_id, r.standard_name, by, by))
        row = cur.fetchone()
        if row is None:
            counts["unchanged"] += 1
        else:
            counts["inserted" if row[-1] else "updated"] += 1
    return counts


def changed_keys(rules: Sequence[Rule]) -> set[tuple[str, str]]:
    """The (field, normalised form) pairs of `rules`: what :func:`apply_changed` renames after storing them."""
    return {(r.field, r.normalised) for r in rules}


def create_rule(cur, rule: Rule, by: str | None) -> dict[str, Any] | None:
    """Insert one rule; None when a rule for the same field, normalised form and scope exists already."""
    cur.execute(
        f"""INSERT INTO dose.standard_name_rule
                (field, raw_value, normalised, scanner_id, standard_name, created_by, updated_by)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (field, normalised, coalesce(scanner_id, -1)) DO NOTHING
            RETURNING {RULE_COLUMNS}""",
        (rule.field, rule.raw_value, rule.normalised, rule.scanner_id, rule.standard_name, by, by),
    )
    return _one(cur)


def update_rule(cur, rule_id: int, rule: Rule, by: str | None) -> dict[str, Any] | None:
    """Replace rule `rule_id`; None when it does not exist. psycopg2.errors.UniqueViolation when another rule
    has the new field, normalised form and scope."""
    cur.execute(
        f"""UPDATE dose.standard_name_rule
               SET field = %s, raw_value = %s, normalised = %s, scanner_id = %s, standard_name = %s,
                   updated_by = %s, updated_at = now()
             WHERE id = %s RETURNING {RULE_COLUMNS}""",
        (rule.field, rule.raw_value, rule.normalised, rule.scanner_id, rule.standard_name, by, rule_id),
    )
    return _one(cur)


def delete_rule(cur, rule_id: int) -> dict[str, Any] | None:
    cur.execute(f"DELETE FROM dose.standard_name_rule WHERE id = %s RETURNING {RULE_COLUMNS}", (rule_id,))
    return _one(cur)


def _one(cur) -> dict[str, Any] | None:
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cur.description], row, strict=True))


# The raw values of each field, with the study rows they come from: (field, table alias, join to `t`, column,
# ordinal of the value within its study or 0).
SOURCES = {
    "study_description": ("dose.study", "s", "s.study_description", "0"),
    "requested_procedure": ("dose.series_protocol", "p", "p.requested_procedure", "0"),
    "acquisition_protocol": ("dose.ct_event", "e", "e.acquisition_protocol", "e.ordinal"),
    "agent": ("dose.radiopharmaceutical", "a", "a.agent", "a.ordinal"),
}
DISTINCT_VALUES = " UNION ALL ".join(
    f"(SELECT '{field}', {column} FROM {table} {alias} WHERE {column} IS NOT NULL {{scope}} GROUP BY 2)"
    for field, (table, alias, column, _ordinal) in SOURCES.items()
)

# `x`: the raw values that have a rule (field, raw, normalised form), bound as three arrays; `rr`: the rules
# each raw value matches; `t`: the studies to name (all, or those given).
APPLY_HEAD = """WITH x AS (SELECT * FROM unnest(%(fields)s::text[], %(raws)s::text[], %(norms)s::text[])
                            AS x(field, raw, norm)),
     rr AS MATERIALIZED (SELECT x.field, x.raw, r.id, r.scanner_id, r.standard_name
                           FROM x JOIN dose.standard_name_rule r ON r.field = x.field AND r.normalised = x.norm),
     t AS MATERIALIZED (SELECT study_instance_uid, scanner_id, standard_name FROM dose.study s {where})"""
_CANDIDATE = """SELECT t.study_instance_uid, rr.standard_name, rr.id, {rank} AS field_rank,
              rr.scanner_id IS NULL AS general, {ordinal} AS ordinal
         FROM t JOIN {table} {alias} USING (study_instance_uid)
         JOIN rr ON rr.field = '{field}' AND rr.raw = {column}
        WHERE rr.scanner_id IS NULL OR rr.scanner_id = t.scanner_id"""
CANDIDATES = "\n  UNION ALL ".join(
    _CANDIDATE.format(rank=rank, field=field, table=table, alias=alias, column=column, ordinal=ordinal)
    for rank, (field, (table, alias, column, ordinal)) in enumerate(SOURCES.items(), start=1)
)
APPLY_STUDIES = (
    APPLY_HEAD
    + f""",
     cand AS ({CANDIDATES}),
     best AS (SELECT DISTINCT ON (study_instance_uid) study_instance_uid, standard_name FROM cand
               ORDER BY study_instance_uid, field_rank, general, ordinal, id)
UPDATE dose.study s SET standard_name = n.standard_name
  FROM (SELECT t.study_instance_uid, best.standard_name FROM t LEFT JOIN best USING (study_instance_uid)) n
 WHERE s.study_instance_uid = n.study_instance_uid AND s.standard_name IS DISTINCT FROM n.standard_name"""
)
# events and administrations: their own field's rule (the scanner's first), else their study's name (as just set)
APPLY_ROWS = (
    APPLY_HEAD
    + """,
     own AS (SELECT DISTINCT ON (r.study_instance_uid, r.{key}) r.study_instance_uid, r.{key}, rr.standard_name
               FROM t JOIN {table} r USING (study_instance_uid)
               JOIN rr ON rr.field = '{field}' AND rr.raw = r.{column}
              WHERE rr.scanner_id IS NULL OR rr.scanner_id = t.scanner_id
              ORDER BY r.study_instance_uid, r.{key}, rr.scanner_id IS NULL, rr.id)
UPDATE {table} r SET standard_name = n.standard_name
  FROM (SELECT r.study_instance_uid, r.{key}, coalesce(own.standard_name, t.standard_name) AS standard_name
          FROM t JOIN {table} r USING (study_instance_uid) LEFT JOIN own USING (study_instance_uid, {key})) n
 WHERE r.study_instance_uid = n.study_instance_uid AND r.{key} = n.{key}
   AND r.standard_name IS DISTINCT FROM n.standard_name"""
)
ROW_TABLES = (
    ("ct_events", "dose.ct_event", "event_key", "acquisition_protocol", "acquisition_protocol"),
    ("administrations", "dose.radiopharmaceutical", "administration_key", "agent", "agent"),
)


def _matched_values(cur, uids: Sequence[str] | None) -> dict[str, list[str]]:
    """The distinct raw values (of the studies `uids`, or all) whose normalised form has a rule, as the three
    arrays APPLY_HEAD binds."""
    cur.execute("SELECT DISTINCT field, normalised FROM dose.standard_name_rule")
    wanted = set(cur.fetchall())
    out: dict[str, list[str]] = {"fields": [], "raws": [], "norms": []}
    if not wanted:
        return out
    scope = "" if uids is None else "AND study_instance_uid = ANY(%(uids)s)"
    cur.execute(DISTINCT_VALUES.format(scope=scope), {"uids": list(uids or [])})
    for field, raw in cur.fetchall():
        norm = normalise(raw)
        if (field, norm) in wanted:
            out["fields"].append(field)
            out["raws"].append(raw)
            out["norms"].append(norm)
    return out


# The studies holding one of the given raw values (bound per field as `r_<field>`), found through the indexes.
# (One semi-join of their union: an OR of `IN (subquery)` made PostgreSQL probe a subquery too big for its hash
# table once per study.)
RAW_SCOPE = {
    "study_description": "SELECT study_instance_uid FROM dose.study WHERE study_description = ANY(%(r_study_description)s)",
    "requested_procedure": """SELECT study_instance_uid FROM dose.series_protocol
                               WHERE requested_procedure = ANY(%(r_requested_procedure)s)""",
    "acquisition_protocol": """SELECT study_instance_uid FROM dose.ct_event
                                WHERE acquisition_protocol = ANY(%(r_acquisition_protocol)s)""",
    "agent": "SELECT study_instance_uid FROM dose.radiopharmaceutical WHERE agent = ANY(%(r_agent)s)",
}
NOTHING = {"studies": 0, "ct_events": 0, "administrations": 0}


def apply(
    cur, uids: Sequence[str] | None = None, *, raws: dict[str, list[str]] | None = None
) -> dict[str, int]:
    """Set the standard names of the studies `uids`, or of those holding one of the `raws` ({field: raw values}),
    or (neither) of every study, and of their CT events and administrations, from the rules, in three
    set-based statements; rows whose name is right are not written (running it again changes nothing).
    Returns the number of rows changed per table."""
    if (uids is not None and not uids) or (raws is not None and not any(raws.values())):
        return dict(NOTHING)
    params: dict[str, Any] = {**_matched_values(cur, uids), "uids": list(uids or [])}
    if raws is not None:
        given = {f: v for f, v in raws.items() if v}
        where = "WHERE s.study_instance_uid IN (" + " UNION ".join(RAW_SCOPE[f] for f in given) + ")"
        params.update({f"r_{f}": v for f, v in given.items()})
    else:
        where = "" if uids is None else "WHERE s.study_instance_uid = ANY(%(uids)s)"
    counts = {}
    bulk = uids is None or len(uids) > 2_000
    if bulk:
        # PostgreSQL cannot estimate the rows of the bound arrays' matches and chose nested loops over every
        # study per rule (measured: 3.5 s for 20,000 studies); many studies: hash joins
        cur.execute("SET LOCAL enable_nestloop = off")
    cur.execute(APPLY_STUDIES.format(where=where), params)
    counts["studies"] = cur.rowcount
    for name, table, key, field, column in ROW_TABLES:
        statement = APPLY_ROWS.replace("{where}", where).format(
            table=table, key=key, field=field, column=column
        )
        cur.execute(statement, params)
        counts[name] = cur.rowcount
    if bulk:  # (after an error the transaction is rolled back, and the setting with it)
        cur.execute("RESET enable_nestloop")
    return counts


RAW_VALUES = {
    "study_description": "SELECT DISTINCT study_description FROM dose.study WHERE study_description IS NOT NULL",
    "requested_procedure": """SELECT DISTINCT requested_procedure FROM dose.series_protocol
                               WHERE requested_procedure IS NOT NULL""",
    "acquisition_protocol": """SELECT DISTINCT acquisition_protocol FROM dose.ct_event
                                WHERE acquisition_protocol IS NOT NULL""",
    "agent": "SELECT DISTINCT agent FROM dose.radiopharmaceutical WHERE agent IS NOT NULL",
}
STUDIES_WITH = {
    "study_description": "SELECT study_instance_uid FROM dose.study WHERE study_description = ANY(%s)",
    "requested_procedure": "SELECT study_instance_uid FROM dose.series_protocol WHERE requested_procedure = ANY(%s)",
    "acquisition_protocol": "SELECT study_instance_uid FROM dose.ct_event WHERE acquisition_protocol = ANY(%s)",
    "agent": "SELECT study_instance_uid FROM dose.radiopharmaceutical WHERE agent = ANY(%s)",
}


def changed_raws(cur, keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """The stored raw values, per field, whose normalised form is one of these (field, normalised form) pairs:
    what a change of their rules can rename."""
    wanted: dict[str, set[str]] = {}
    for field, norm in keys:
        wanted.setdefault(field, set()).add(norm)
    out: dict[str, list[str]] = {}
    for field, norms in wanted.items():
        cur.execute(RAW_VALUES[field])
        out[field] = [r[0] for r in cur.fetchall() if normalise(r[0]) in norms]
    return out


def affected_studies(cur, keys: Iterable[tuple[str, str]]) -> list[str]:
    """The studies a change of the rules for these (field, normalised form) pairs can rename: those holding a
    raw value of the field with that normalised form (found through the fields' indexes)."""
    uids: set[str] = set()
    for field, raws in changed_raws(cur, keys).items():
        if raws:
            cur.execute(STUDIES_WITH[field], (raws,))
            uids.update(r[0] for r in cur.fetchall())
    return sorted(uids)


def apply_changed(cur, keys: Iterable[tuple[str, str]]) -> dict[str, int]:
    """After rules of these (field, normalised form) pairs were added, changed or deleted: rename the studies
    holding their raw values (selected in the statements themselves), not every study."""
    return apply(cur, raws=changed_raws(cur, keys))


def apply_to_study(cur, study_uid: str) -> None:
    """The ingest hook (dose/ingest.py): name one freshly written study, its events and administrations. No
    rule: nothing to do (the rows were just inserted without a name)."""
    cur.execute("SELECT EXISTS (SELECT 1 FROM dose.standard_name_rule)")
    if cur.fetchone()[0]:
        apply(cur, [study_uid])


# ----- suggestions -----------------------------------------------------------------------------------------

# Per field: each raw value with the scanner it came from and how many studies carry it.
RAW_COUNTS = {
    "study_description": """SELECT s.study_description, s.scanner_id, count(*) FROM dose.study s
                             WHERE s.study_description IS NOT NULL GROUP BY 1, 2""",
    "requested_procedure": """SELECT p.requested_procedure, s.scanner_id, count(DISTINCT s.study_instance_uid)
                                FROM dose.series_protocol p JOIN dose.study s USING (study_instance_uid)
                               WHERE p.requested_procedure IS NOT NULL GROUP BY 1, 2""",
    "acquisition_protocol": """SELECT e.acquisition_protocol, s.scanner_id, count(DISTINCT s.study_instance_uid)
                                 FROM dose.ct_event e JOIN dose.study s USING (study_instance_uid)
                                WHERE e.acquisition_protocol IS NOT NULL GROUP BY 1, 2""",
    "agent": """SELECT a.agent, s.scanner_id, count(DISTINCT s.study_instance_uid)
                  FROM dose.radiopharmaceutical a JOIN dose.study s USING (study_instance_uid)
                 WHERE a.agent IS NOT NULL GROUP BY 1, 2""",
}


def suggestions(cur, fields: Sequence[str] = FIELDS, limit: int = 500) -> list[dict[str, Any]]:
    """The raw values no rule maps yet, grouped by field and normalised form, most studies first: per group the
    raw values (each with its studies), the studies in all, the scanners they come from. A value mapped for
    one scanner only is still suggested for the others."""
    cur.execute("SELECT field, normalised, scanner_id FROM dose.standard_name_rule")
    mapped = set(cur.fetchall())
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for field in fields:
        cur.execute(RAW_COUNTS[field])
        for raw, scanner, n in cur.fetchall():
            norm = normalise(raw)
            if not norm or (field, norm, None) in mapped or (field, norm, scanner) in mapped:
                continue
            g = groups.setdefault(
                (field, norm),
                {"field": field, "normalised": norm, "studies": 0, "raw": {}, "scanners": set()},
            )
            g["studies"] += n
            g["raw"][raw] = g["raw"].get(raw, 0) + n
            if scanner is not None:
                g["scanners"].add(scanner)
    out = []
    for g in sorted(groups.values(), key=lambda g: (-g["studies"], g["field"], g["normalised"]))[:limit]:
        raws = sorted(g["raw"].items(), key=lambda kv: (-kv[1], kv[0]))
        out.append(
            {
                "field": g["field"],
                "normalised": g["normalised"],
                "studies": g["studies"],
                "raw_values": [{"raw_value": r, "studies": n} for r, n in raws],
                "scanner_ids": sorted(g["scanners"]),
            }
        )
    return out
