"""Reference levels (config/reference_levels.yaml through the typed config) and the XLSX writer, no database."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import openpyxl
import pytest
import yaml

from nmdose.errors import ConfigError
from nmdose.web import pages, sql_levels, xlsx
from nmdose.web.router import Request, Router
from tests.support import REPO, load, make_config_dir


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    return make_config_dir(tmp_path, free_ports=False)


def edit_levels(cfg_dir: Path, fn) -> None:
    path = cfg_dir / "reference_levels.yaml"
    data = yaml.safe_load(path.read_text())
    fn(data["levels"])
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def test_shipped_levels_load_with_source_year_and_status(cfg_dir):
    levels = load(cfg_dir).reference_levels.levels
    assert len(levels) >= 10
    assert {lv.modality for lv in levels} == {"CT", "NM", "PT"}
    for lv in levels:
        assert lv.source and 1990 <= lv.year <= 2100 and lv.value > 0
    by_name = {lv.name: lv for lv in levels}
    head = by_name["UK NDRL CT head (acute stroke): DLP"]
    assert (head.quantity, head.per, head.value, head.unit) == ("dlp_mgycm", "study", 790, "mGy·cm")
    assert by_name["UK NDRL CT chest (lung cancer): CTDIvol"].per == "event"
    fdg = by_name["ARSAC proposed NDRL FDG PET whole-body tumour imaging"]
    assert fdg.status == "proposed"  # a proposal is never shown as an official DRL


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda lv: lv[0].update(value=-5),
            r"levels\.0\.value: expected input should be greater than 0, got -5",
        ),
        (lambda lv: lv[0].update(value="high"), r"levels\.0\.value: expected input should be a valid number"),
        (
            lambda lv: lv[0].update(quantity="activity_mbq"),
            r"levels\.0\.quantity: expected ctdivol_mgy or dlp_mgycm for modality CT, got 'activity_mbq'",
        ),
        (
            lambda lv: lv[0].update(status="official-ish"),
            r"levels\.0\.status: expected input should be 'official'",
        ),
        (
            lambda lv: lv[0].update(modality="MR"),
            r"levels\.0\.modality: expected input should be 'CT', 'NM' or",
        ),
        (
            lambda lv: lv[0]["match"].update(protocols=["(head"]),
            r"levels\.0\.match\.protocols: expected valid regular",
        ),
        (lambda lv: lv[0].update(match={}), r"levels\.0\.match: expected at least one of protocols"),
        (lambda lv: lv[0].update(colour="red"), r"levels\.0\.colour: unknown key"),
        (
            lambda lv: lv[0].update(year=1890),
            r"levels\.0\.year: expected input should be greater than or equal",
        ),
        (
            lambda lv: lv[0].update(age_band={"min_years": 60, "max_years": 18}),
            r"levels\.0\.age_band: expected min_years below max_years",
        ),
        (lambda lv: lv[0].pop("source"), r"levels\.0\.source: missing \(required\)"),
        (lambda lv: lv[1].update(name=lv[0]["name"]), r"levels\.1\.name: expected a name no other level has"),
        (
            lambda lv: lv.append({**lv[-1], "name": "x", "per": "event"}),
            r"levels\.\d+\.per: expected administration for quantity activity_mbq_per_kg, got 'event'",
        ),
    ],
)
def test_a_wrong_value_in_reference_levels_names_file_key_and_expectation(cfg_dir, change, message):
    edit_levels(cfg_dir, change)
    with pytest.raises(ConfigError, match=r"reference_levels\.yaml: " + message):
        load(cfg_dir)


def test_without_the_file_there_are_no_levels(cfg_dir):
    (cfg_dir / "reference_levels.yaml").unlink()
    assert load(cfg_dir).reference_levels.levels == []


def test_reference_levels_route_lists_the_configured_levels_with_status_labels(cfg_dir):
    cfg = load(cfg_dir)
    router = Router()
    pages.register_routes(router, SimpleNamespace(cfg=cfg))  # this route needs no database
    resp = router.dispatch(Request("GET", "/api/dose/reference-levels"))
    assert resp.status == 200
    rows = json.loads(resp.body)["rows"]
    assert [r["name"] for r in rows] == [lv.name for lv in cfg.reference_levels.levels]
    chest = next(r for r in rows if r["name"] == "UK NDRL CT chest (lung cancer): CTDIvol")
    assert (chest["value"], chest["unit"], chest["status_label"], chest["year"]) == (
        8.5,
        "mGy",
        "official DRL",
        2022,
    )
    proposed = next(r for r in rows if r["status"] == "proposed")
    assert proposed["status_label"] == "proposed, not an adopted DRL"
    book = router.dispatch(Request("GET", "/api/dose/reference-levels", query={"format": "xlsx"}))
    assert book.status == 200 and book.content_type == xlsx.CONTENT_TYPE
    ws = openpyxl.load_workbook(io.BytesIO(book.body))["Data"]
    assert [c.value for c in ws[1]][:3] == ["name", "modality", "quantity"]
    assert [c.value for c in ws["A"][1:]] == [r["name"] for r in rows]


def test_levels_json_gives_sql_null_for_empty_pattern_lists(cfg_dir):
    levels = load(cfg_dir).reference_levels.levels
    data = json.loads(sql_levels.levels_json(levels))
    bone = next(d for d in data if d["name"].startswith("BfS DRW bone"))
    assert bone["protocols"] is None and bone["agents"] and bone["age_min"] == 18 and bone["age_max"] is None


# ----- XLSX --------------------------------------------------------------------------------------------------


def test_sheet_names_are_sanitised_short_and_unique():
    keys = [
        "Head [routine]: a/b\\c?d*e",
        "A" * 40,
        "A" * 40 + "x",  # same first 31 characters
        "summary",  # the summary sheet's name, other case
        "History",
        "'quoted'",
        "",
        None,
        "head [ROUTINE]: A/B\\C?D*E",  # differs only by case after sanitising
    ]
    names = xlsx.sheet_names(keys)
    assert list(names) == keys
    values = list(names.values())
    assert all(0 < len(n) <= 31 for n in values)
    assert not any(ch in n for n in values for ch in "[]:*?/\\")
    assert len({n.lower() for n in values}) == len(values)
    assert "summary" not in {n.lower() for n in values} and "history" not in {n.lower() for n in values}
    assert names["Head [routine]: a/b\\c?d*e"] == "Head _routine__ a_b_c_d_e"
    assert names["A" * 40] == "A" * 31 and names["A" * 40 + "x"] == "A" * 27 + " (2)"
    assert names["'quoted'"] == "quoted"
    assert names[""] == "(none)" and names[None] == "(none) (2)"


def test_workbook_has_a_summary_and_one_sheet_per_group_with_text_kept_as_text():
    rows = [
        {"protocol": "Head", "value": 1.5, "note": '=HYPERLINK("http://x")', "tags": ["a", "b"]},
        {"protocol": "Chest", "value": 2, "note": "ok\x07", "tags": []},
        {"protocol": "Head", "value": None, "note": "한글", "tags": ["c"]},
    ]
    body = xlsx.workbook(rows, title="t", parameters={"from": "2024-01-01"}, group_by="protocol",
                         summary=[{"protocol": "Head", "n": 2}], summary_title="per protocol")  # fmt: skip
    wb = openpyxl.load_workbook(io.BytesIO(body))
    assert wb.sheetnames == ["Summary", "Head", "Chest"]
    head = [[c.value for c in r] for r in wb["Head"].iter_rows()]
    assert head == [["protocol", "value", "note", "tags"], ["Head", 1.5, '=HYPERLINK("http://x")', "a; b"],
                    ["Head", None, "한글", "c"]]  # fmt: skip
    assert wb["Head"]["C2"].data_type == "s"  # a string, not a formula
    assert [[c.value for c in r] for r in wb["Chest"].iter_rows()][1] == ["Chest", 2, "ok", None]
    summary = [_trim([c.value for c in r]) for r in wb["Summary"].iter_rows()]
    assert ["parameter from", "2024-01-01"] in summary and ["rows", 3] in summary
    assert ["Head", "Head", 2] in summary and ["Chest", "Chest", 1] in summary
    assert summary[-2:] == [["protocol", "n"], ["Head", 2]]


def _trim(values: list) -> list:
    while values and values[-1] is None:
        values.pop()
    return values


def test_docs_list_every_new_dose_route():
    doc = (REPO / "docs" / "web.md").read_text()
    for route in ("/api/dose/reference-levels", "/api/dose/outliers", "/api/dose/box", "/api/dose/effective-dose",
                  "/api/dose/dead-letter", "/ui/orthanc/study/"):  # fmt: skip
        assert route in doc
