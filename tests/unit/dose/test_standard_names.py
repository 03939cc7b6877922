"""Standard names without a database: the normaliser's table of variants, the rules' checks, CSV and YAML
import (every bad line named, nothing half-read) and export read back."""

from __future__ import annotations

import pytest

from nmdose.dose import standard_names as sn


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("CT Chest", "chest ct"),
        ("chest   CT", "chest ct"),
        ("Chest-CT", "chest ct"),
        ("ＣＴ　Ｃｈｅｓｔ", "chest ct"),  # full-width letters and space
        ("흉부 CT", "chest ct"),
        ("흉부CT", "chest ct"),  # no space between the scripts
        ("CT-흉부", "chest ct"),
        ("Thorax 1.0 B31f", "1.0 b31f chest"),  # synonyms; a decimal stays one word
        ("CHEST ROUTINE", "chest routine"),
        ("Abdomen CT", "abdomen ct"),
        ("CT 복부", "abdomen ct"),
        ("ABD CT", "abdomen ct"),
        ("두부 CT", "ct head"),
        ("머리CT", "ct head"),
        ("Head CT", "ct head"),
        ("골반 CT", "ct pelvis"),
        ("Pelvic CT", "ct pelvis"),
        ("CT Chest C+", "chest contrast ct"),
        ("CT chest w/ contrast", "chest contrast ct"),
        ("흉부 조영 CT", "chest contrast ct"),
        ("CT Chest w/o", "chest ct noncontrast"),
        ("CT chest non-contrast", "chest ct noncontrast"),
        ("흉부 비조영 CT", "chest ct noncontrast"),  # 비조영 is not 조영
        ("PET-CT Whole Body", "ct pet wholebody"),
        ("전신 PET/CT", "ct pet wholebody"),
        ("PET CT WB", "ct pet wholebody"),
        ("---", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_the_normaliser_merges_case_spacing_punctuation_width_and_korean_english_variants(raw, normalised):
    assert sn.normalise(raw) == normalised


def test_different_examinations_stay_apart():
    forms = {sn.normalise(t) for t in ("CT Chest", "CT Abdomen", "CT Head", "CT Chest C+", "CT Chest w/o")}
    assert len(forms) == 5


def test_a_rule_is_checked_and_every_problem_named():
    rule, problems = sn.check_rule("study_description", "  CT Chest ", "CT Chest", "")
    assert problems == [] and rule == sn.Rule("study_description", "CT Chest", "CT Chest", None)
    assert rule.normalised == "chest ct" and rule.key == ("study_description", "chest ct", None)
    assert sn.check_rule("agent", "FDG", "FDG PET", "3")[0].scanner_id == 3
    _, problems = sn.check_rule("protocol", "", "", "x")
    assert problems == [
        "field must be one of study_description, requested_procedure, acquisition_protocol, agent, got 'protocol'",
        "raw_value is empty",
        "standard_name is empty",
        "scanner_id must be a positive integer or empty (all scanners), got 'x'",
    ]
    assert sn.check_rule("agent", "***", "x")[1] == ["raw_value '***' has no letter or digit to match"]
    assert "longer than 128" in sn.check_rule("agent", "a", "n" * 129)[1][0]
    assert "positive integer" in sn.check_rule("agent", "a", "n", 0)[1][0]
    assert "positive integer" in sn.check_rule("agent", "a", "n", True)[1][0]


def test_csv_import_reads_the_header_in_any_order_and_a_bom():
    text = "\ufeffstandard_name,field,raw_value\nCT Chest,study_description,CT Chest\n\nCT Chest,study_description,흉부 CT\n"
    rules = sn.parse_csv(text)
    assert [(r.raw_value, r.line) for r in rules] == [("CT Chest", 2)]  # 흉부 CT is the same raw form
    text = "field,raw_value,scanner_id,standard_name\nagent,FDG,2,FDG PET\nagent,FDG,,FDG PET\n"
    assert [r.scanner_id for r in sn.parse_csv(text)] == [2, None]  # two scopes, two rules


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        ("", ["line 1: the file is empty (expected the header field,raw_value,scanner_id,standard_name)"]),
        ("field,raw_value\n", ["line 1: the header lacks column 'standard_name' (expected field,raw_value,scanner_id,standard_name)"]),
        ("field,raw_value,standard_name,colour\n", ["line 1: the header has unknown column 'colour' (expected field,raw_value,scanner_id,standard_name)"]),
        (
            "field,raw_value,standard_name\nagent,FDG\nfoo,x,y\nagent,FDG,FDG PET\nagent,fdg,Other\n",
            [
                "line 2: 2 values, the header has 3",
                "line 3: field must be one of study_description, requested_procedure, acquisition_protocol, agent, got 'foo'",
                "line 5: agent 'fdg' is 'Other' here but 'FDG PET' on line 4 (the same normalised form 'fdg')",
            ],
        ),
    ],
)  # fmt: skip
def test_csv_import_refuses_a_file_with_any_bad_line_naming_each(text, errors):
    with pytest.raises(sn.RuleError) as exc:
        sn.parse_csv(text)
    assert exc.value.errors == errors


def test_yaml_import_reads_entries_with_several_raw_values_and_names_bad_lines():
    text = """standard_names:
  - standard_name: CT Chest
    field: study_description
    raw_values: [CT Chest, CHEST ROUTINE]
  - standard_name: FDG PET
    field: agent
    scanner_id: 4
    raw_value: Fluorodeoxyglucose
"""
    rules = sn.parse_yaml(text)
    assert [(r.field, r.raw_value, r.scanner_id, r.line) for r in rules] == [
        ("study_description", "CT Chest", None, 2),
        ("study_description", "CHEST ROUTINE", None, 2),
        ("agent", "Fluorodeoxyglucose", 4, 5),
    ]
    bad = """- standard_name: X
  field: study_description
  raw_values: []
- standard_name: Y
  field: agent
  colour: red
  raw_values: [a]
- standard_name: ''
  field: agent
  raw_values: [b]
"""
    with pytest.raises(sn.RuleError) as exc:
        sn.parse_yaml(bad)
    assert exc.value.errors == [
        "line 1: raw_values must be a non-empty list",
        "line 4: unknown key 'colour' (known: field, raw_values, scanner_id, standard_name)",
        "line 8: standard_name is empty",
    ]
    with pytest.raises(sn.RuleError) as exc:
        sn.parse_yaml("standard_names:\n  - field: [unclosed\n")
    assert exc.value.errors[0].startswith("line 3: not YAML")
    with pytest.raises(sn.RuleError, match="expected a list"):
        sn.parse_yaml("just text")
    assert sn.parse_yaml("") == []


def test_export_is_read_back_by_import():
    rows = [
        {"field": "study_description", "raw_value": "CT Chest", "scanner_id": None, "standard_name": "CT Chest"},
        {"field": "study_description", "raw_value": "흉부 조영 CT", "scanner_id": None, "standard_name": "CT Chest C+"},
        {"field": "agent", "raw_value": "=cmd|' /C calc'!A0", "scanner_id": 7, "standard_name": "odd"},
    ]  # fmt: skip
    want = [(r["field"], r["raw_value"], r["scanner_id"], r["standard_name"]) for r in rows]
    assert "agent,'=cmd" in sn.to_csv(rows)  # a spreadsheet shows it as text
    for text, parse in ((sn.to_csv(rows), sn.parse_csv), (sn.to_yaml(rows), sn.parse_yaml)):
        got = [(r.field, r.raw_value, r.scanner_id, r.standard_name) for r in parse(text)]
        assert sorted(got, key=str) == sorted(want, key=str)


def test_a_reference_level_may_match_standard_names_alone():
    import json

    from nmdose.config import ReferenceLevel
    from nmdose.web import sql_levels

    level = ReferenceLevel(
        name="chest", modality="CT", match={"standard_names": ["^CT chest$"]}, quantity="dlp_mgycm",
        value=400, source="local audit 2024", year=2024, status="proposed",
    )  # fmt: skip
    assert json.loads(sql_levels.levels_json([level]))[0]["standard_names"] == ["^CT chest$"]
    assert sql_levels.reference_level_rows([level])[0]["standard_names"] == ["^CT chest$"]
    with pytest.raises(ValueError, match="standard_names"):
        ReferenceLevel(
            name="x", modality="CT", match={}, quantity="dlp_mgycm", value=1, source="abc", year=2024,
            status="example",
        )  # fmt: skip
