"""The `standard_name` dose filter's declaration and SQL (docs/standard_names.md "Filtering by standard name"): every
route that takes the dose filters declares it, the OpenAPI document describes each filter as it matches (no text
filter says "exact" any more), and dose_where compares the row's own name on events and administrations, the
study's or any of its events' or administrations' on studies, with the value bound (any case)."""

from __future__ import annotations

import pytest

from nmdose.web.openapi import describe
from nmdose.web.params import DOSE_FILTERS, ParamError, parse_params
from nmdose.web.sql_common import ADMINISTRATIONS, EVENTS, STUDIES, dose_where
from tests.support import load, make_config_dir


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    from nmdose.plugin import Plugin

    return describe(Plugin(load(make_config_dir(tmp_path_factory.mktemp("snf")))).router.table)


def test_every_route_with_the_dose_filters_declares_standard_name_described_as_it_matches(doc):
    with_filters = 0
    for path, ops in doc["paths"].items():
        for op in ops.values():
            names = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "query"}
            if not set(DOSE_FILTERS) <= set(names):
                continue
            with_filters += 1
            assert "exact, any case" in names["standard_name"]["description"], path
            for key in ("manufacturer", "model", "station", "modality", "description", "protocol"):
                text = names[key]["description"]
                assert "part of the text, any case" in text and "(exact)" not in text, (path, key)
    # the dose statistics and exports, the report routes, the outliers and their acknowledgement, the scanners
    assert with_filters >= 15


def test_parse_keeps_the_name_and_refuses_what_no_text_filter_takes():
    assert parse_params({"standard_name": "CT chest"}, DOSE_FILTERS) == {"standard_name": "CT chest"}
    assert parse_params({"standard_name": ""}, DOSE_FILTERS) == {}
    for bad in ("x" * 257, "CT\x00chest"):
        with pytest.raises(ParamError, match="standard_name"):
            parse_params({"standard_name": bad}, DOSE_FILTERS)


def test_events_and_administrations_compare_their_own_name_studies_also_their_events_and_administrations():
    name = "CT chest'); DROP TABLE dose.study; --"
    for records, table in ((EVENTS, "e"), (ADMINISTRATIONS, "a")):
        w = dose_where({"standard_name": name}, records)
        text = repr(w.sql())
        assert w.params == [name, name]  # the rules' names equal to it in any case, and the name as typed
        assert f"Identifier('{table}')" in text and "standard_name = ANY" in text
        assert "ct_event ne" not in text and "DROP" not in text
    w = dose_where({"standard_name": name}, STUDIES)
    text = repr(w.sql())
    assert w.params == [name] * 6
    assert "dose.study ns" in text and "dose.ct_event ne" in text and "dose.radiopharmaceutical na" in text
    assert "lower(nr.standard_name) = lower(%s)" in text and "DROP" not in text
    assert dose_where({}, STUDIES).params == []
