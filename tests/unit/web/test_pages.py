"""Web pages and API without a database: parameter validation, escaping, static files, CSV."""

import csv
import hashlib
import io
import json
from types import SimpleNamespace

import pytest

from nmdose.dose.codes import SSDE_METHODS
from nmdose.orthanc_ids import orthanc_study_id
from nmdose.web import pages, shell
from nmdose.web.export import to_csv
from nmdose.web.router import Request, Router
from nmdose.web.routes_pages import STATIC_DIR


@pytest.fixture
def router():
    r = Router()
    pages.register_routes(r, SimpleNamespace(cfg=None))  # no route below may reach the database
    return r


def get(router, path, **query):
    return router.dispatch(Request("GET", path, query={k: str(v) for k, v in query.items()}))


@pytest.mark.parametrize(
    ("path", "query", "message"),
    [
        ("/api/dose/ct-protocols", {"from": "2024-13-01"}, "parameter 'from' must be a date"),
        ("/api/dose/ct-protocols", {"from": "2024-02-01", "to": "2024-01-01"}, "'from' is after 'to'"),
        ("/api/dose/ct-protocols", {"group": "scanner"}, "parameter 'group' must be one of protocol"),
        ("/api/dose/ct-protocols", {"colour": "red"}, "unknown parameter 'colour'"),
        ("/api/dose/ct-events", {"limit": "0"}, "parameter 'limit' must be between 1 and 100000"),
        ("/api/dose/ct-events", {"limit": "ten"}, "parameter 'limit' must be an integer"),
        ("/api/dose/activity", {"weight_min": "nan"}, "parameter 'weight_min' must be a non-negative"),
        ("/api/dose/activity", {"sex": "X"}, "parameter 'sex' must be one of M, F, O"),
        ("/api/research/yearly", {"from_year": "20x4"}, "parameter 'from_year' must be an integer"),
        ("/api/research/yearly", {"format": "xml"}, "parameter 'format' must be one of json, csv, xlsx"),
        ("/api/dose/study/1.2.3", {"x": "1"}, "unknown parameter 'x'"),
        ("/api/dose/ct-protocols", {"protocol": "x" * 300}, "longer than 256"),
        ("/api/dose/ct-events", {"age_min": "60", "age_max": "40"}, "'age_min' must be below 'age_max'"),
        ("/api/dose/ct-events", {"age_min": "50", "age_max": "50"}, "'age_min' must be below 'age_max'"),
        ("/api/dose/activity", {"weight_min": "90", "weight_max": "60"}, "'weight_min' must be below"),
        ("/api/dose/activity", {"age_max": "200"}, "parameter 'age_max' must be at most 150"),
        ("/api/dose/activity", {"weight_max": "2000"}, "parameter 'weight_max' must be at most 1000"),
        ("/api/dose/activity", {"age_min": "-1"}, "parameter 'age_min' must be a non-negative"),
        ("/api/dose/outliers", {"weight_min": "abc"}, "parameter 'weight_min' must be a number"),
        ("/api/dose/outliers", {"reason": "high"}, "parameter 'reason' must be one of reference_level, p95"),
        ("/api/dose/outliers", {"limit": "0"}, "parameter 'limit' must be between 1 and 100000"),
        ("/api/dose/box", {}, "parameter 'measure' is required"),
        ("/api/dose/box", {"measure": "kvp"}, "parameter 'measure' must be one of ctdivol, dlp"),
        (
            "/api/dose/box",
            {"measure": "ctdivol", "group": "agent"},
            "must be one of protocol, description, standard_name for",
        ),
        (
            "/api/dose/box",
            {"measure": "activity", "group": "protocol"},
            "must be one of agent, description, standard_name for",
        ),
        ("/api/dose/effective-dose", {"sex": "x"}, "parameter 'sex' must be one of M, F, O"),
        ("/api/dose/dead-letter", {"state": "old"}, "parameter 'state' must be one of open, resolved, all"),
        ("/api/dose/dead-letter", {"protocol": "x"}, "unknown parameter 'protocol'"),
        ("/api/dose/reference-levels", {"format": "pdf"}, "must be one of json, csv, xlsx"),
        ("/ui/orthanc/study/" + "1" * 65, {}, "at most 64 characters, got 65"),
    ],
)
def test_bad_parameters_answer_400_with_a_message(router, path, query, message):
    resp = get(router, path, **query)
    assert resp.status == 400
    assert message in json.loads(resp.body)["error"]


def test_study_page_refuses_a_uid_that_is_not_a_dicom_uid_and_escapes_what_it_renders(router):
    bad = '<img src=x onerror="alert(1)">'
    resp = get(router, f"/ui/study/{bad}")
    assert resp.status == 400 and resp.content_type == "application/json"
    assert "must be a DICOM UID" in json.loads(resp.body)["error"]
    text = shell.page("study", uid=bad)  # escaped all the same
    assert "<img" not in text and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text


@pytest.mark.parametrize("path", ["/api/dose/study/{}", "/ui/study/{}", "/ui/orthanc/study/{}"])
@pytest.mark.parametrize("uid", ["*", "1.2.x", "1..2", ".1.2", "1.2.", "1" * 65])
def test_every_route_taking_a_uid_refuses_what_is_not_a_dicom_uid(router, path, uid):
    resp = get(router, path.format(uid))
    assert resp.status == 400 and "DICOM UID" in json.loads(resp.body)["error"]


def test_ui_and_index_redirect_to_the_index_page_with_relative_locations(router):
    """Orthanc hands /nmdose/ui/ over as /ui, like /nmdose/ui: both answer `index`, which from /nmdose/ui/ is the
    page and from /nmdose/ui is /nmdose/index, sent on to ui/index (issue 19: /ui -> ui/ looped to /ui/ui)."""
    resp = get(router, "/ui")
    assert resp.status == 302 and resp.headers["Location"] == "index"
    resp = get(router, "/index")
    assert resp.status == 302 and resp.headers["Location"] == "ui/index"
    index = get(router, "/ui/index").body.decode()
    assert 'href="research"' in index and 'href="dose"' in index and 'href="../ui/index"' in index


@pytest.mark.parametrize("page", ["/ui/index", "/ui/research", "/ui/dose", "/ui/study/1.2.3"])
def test_pages_are_html_loading_only_vendored_scripts(router, page):
    resp = get(router, page)
    text = resp.body.decode()
    assert resp.status == 200 and resp.content_type == "text/html; charset=utf-8"
    assert "static/chart.umd.min.js" in text and "static/nmdose.js" in text
    assert "http://" not in text and "https://" not in text  # no CDN: works offline
    assert 'id="lang-toggle"' in text


@pytest.mark.parametrize(
    ("name", "ctype"),
    [
        ("chart.umd.min.js", "text/javascript; charset=utf-8"),
        ("nmdose.js", "text/javascript; charset=utf-8"),
        ("nmdose.css", "text/css; charset=utf-8"),
        ("chart.js.LICENSE.md", "text/plain; charset=utf-8"),
    ],
)
def test_static_files_are_served_with_their_content_type(router, name, ctype):
    resp = get(router, f"/static/{name}")
    assert resp.status == 200 and resp.content_type == ctype
    assert resp.body == (STATIC_DIR / name).read_bytes()


@pytest.mark.parametrize("name", ["..%2Fpages.py", "pages.py", "missing.js", ".hidden.js", "__init__.py"])
def test_static_route_serves_nothing_else(router, name):
    assert get(router, f"/static/{name}").status == 404


def test_vendored_chartjs_is_the_npm_build_with_its_license():
    head = (STATIC_DIR / "chart.umd.min.js").read_text()[:200]
    assert "Chart.js v4" in head and "MIT" in head
    assert "MIT License" in (STATIC_DIR / "chart.js.LICENSE.md").read_text()


def test_nmdose_js_never_writes_html_from_data():
    js = (STATIC_DIR / "nmdose.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js


def test_every_i18n_key_used_in_the_pages_and_script_has_english_and_korean():
    """A label missing from one language would show its key; every data-i18n key and every "col."/"status."
    key must be in both dictionaries of nmdose.js."""
    import re

    js = (STATIC_DIR / "nmdose.js").read_text()
    dictionaries = re.search(r"var I18N = \{\s*en: \{(.*?)\n    \},\s*ko: \{(.*?)\n    \}", js, re.S)
    en, ko = (set(re.findall(r'"([\w.]+)":', d)) for d in dictionaries.groups())
    html = "".join(shell.page(n, uid="1.2") for n in ("index", "research", "dose", "study"))
    used = set(re.findall(r'data-i18n(?:-title)?="([\w.]+)"', html))
    used |= set(re.findall(r'"((?:col|status|reason|kind|part|chart|unit)\.[\w]+)"', js))
    used |= {f"{p}.{v}" for p in ("status",) for v in ("official", "proposed", "example")}
    used |= {f"reason.{v}" for v in ("reference_level", "p95")}
    used |= {f"kind.{v}" for v in ("ct_event", "ct_study", "administration")}
    used |= {f"q.{v}" for v in ("ctdivol_mgy", "dlp_mgycm", "activity_mbq", "activity_mbq_per_kg")}
    used |= {f"per.{v}" for v in ("event", "study", "administration")}
    # coded values of the dose stage shown by label (issue 16 item 5): the rule that gave the activity, where the
    # injection time came from, the size an SSDE used (nmdose.dose.derived / pet_image_header / codes)
    used |= {f"rule.{p}_{v}" for p in ("pet_header", "nm_header")
             for v in ("start_datetime", "start_time", "no_start_time")}  # fmt: skip
    used |= {"rule.rrdsr_administered", "rule.rrdsr_net_pre_post", "warn.plausibility", "ssde.method"}
    used |= {f"startsrc.{v}" for v in ("rrdsr", "header_start_datetime", "header_start_time_AcquisitionDate",
                                       "header_start_time_StudyDate", "minus_1day")}  # fmt: skip
    used |= {f"size.{kind}" for _code, kind in SSDE_METHODS.values()}
    used |= {"size.lateral_dimension", "size.ap_dimension"}
    # issue 19: an official level named with its country, the filters' hints, the server-error prefix
    used |= {f"status.official_{c}" for c in ("uk", "de", "kr", "eu")}
    used |= {"empty", "empty.filtered", "error.server", "choices.n", "f.hint", "f.any"}
    assert used - en == set() and used - ko == set()
    assert len(en) > 100 and en == ko


def test_the_orthanc_lookup_page_for_a_missing_study_is_escaped_html():
    text = shell.message_page("Study not in the research PACS", "no <b>x</b>", uid="1.2<3", depth=3)
    assert "<b>" not in text and "no &lt;b&gt;x&lt;/b&gt;" in text
    assert 'href="../../study/1.2%3C3"' in text and 'href="../../../static/nmdose.js"' not in text
    assert 'src="../../../static/nmdose.js"' in text


def test_csv_has_header_and_rows_and_joins_lists():
    text = to_csv([{"a": 1, "b": ["CT", "PT"], "c": None}, {"a": 2.5, "b": "x,y", "c": "é"}])
    assert list(csv.reader(io.StringIO(text))) == [["a", "b", "c"], ["1", "CT\\PT", ""], ["2.5", "x,y", "é"]]


def test_csv_text_that_a_spreadsheet_would_run_as_a_formula_is_quoted_and_numbers_are_not():
    rows = [
        {"d": '=HYPERLINK("http://x","y")', "n": -3.5},
        {"d": "+1", "n": 0},
        {"d": "@SUM(A1)", "n": 1},
        {"d": "-", "n": 2},
        {"d": "\tx", "n": 3},
        {"d": "CT = chest", "n": 4},
    ]
    got = list(csv.reader(io.StringIO(to_csv(rows))))
    assert [r[0] for r in got[1:]] == ["'=HYPERLINK(\"http://x\",\"y\")", "'+1", "'@SUM(A1)", "'-", "'\tx",
                                       "CT = chest"]  # fmt: skip
    assert [r[1] for r in got[1:]] == ["-3.5", "0", "1", "2", "3", "4"]


def test_orthanc_study_id_is_the_sha1_of_patient_and_study_in_dashed_groups():
    sha = hashlib.sha1(b"P1|1.2.3").hexdigest()
    assert orthanc_study_id("P1", "1.2.3") == "-".join(sha[i : i + 8] for i in range(0, 40, 8))


def test_orthanc_explorer_js_adds_the_two_buttons():
    js = pages.orthanc_explorer_js()
    assert "nmdose/ui/" in js and "dose for this study" in js and "nmdose/ui/study/" in js


def test_the_dose_page_carries_the_outlier_rules_of_the_configuration():
    import html as html_module
    import re

    from nmdose.config import OutlierRules, ReferenceLevelsFile

    cfg = SimpleNamespace(
        reference_levels=ReferenceLevelsFile(outliers=OutlierRules(factor=3, p95_min_values=30))
    )
    r = Router()
    pages.register_routes(r, SimpleNamespace(cfg=cfg))
    text = get(r, "/ui/dose").body.decode()
    data = json.loads(html_module.unescape(re.search(r'data-page-data="([^"]*)"', text).group(1)))
    assert data["outliers"] == {"factor": 3.0, "p95_min_values": 30}
    assert OutlierRules() == OutlierRules(factor=2.0, p95_min_values=20)  # the defaults the issue asks for
