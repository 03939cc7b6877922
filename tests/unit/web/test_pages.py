"""Web pages and API without a database: parameter validation, escaping, static files, CSV."""

import csv
import hashlib
import io
import json
import re
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
        ("research.js", "text/javascript; charset=utf-8"),
        ("dose.js", "text/javascript; charset=utf-8"),
        ("study.js", "text/javascript; charset=utf-8"),
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


# The shared shell's script and the three pages' own scripts (shell.PAGE_SCRIPTS) that were part of it.
PAGE_JS = {"research": "research.js", "dose": "dose.js", "study": "study.js"}


@pytest.mark.parametrize("name", ["nmdose.js", *PAGE_JS.values()])
def test_the_scripts_never_write_html_from_data(name):
    js = (STATIC_DIR / name).read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js


@pytest.mark.parametrize("page", PAGE_JS)
def test_the_research_dose_and_study_pages_load_their_own_script_after_the_shared_one(router, page):
    text = get(router, "/ui/study/1.2.3" if page == "study" else f"/ui/{page}").body.decode()
    up = "../../" if page == "study" else "../"
    assert re.findall(r"<script[^>]*>", text)[-2:] == [
        f'<script src="{up}static/nmdose.js">',
        f'<script src="{up}static/{PAGE_JS[page]}">',
    ]
    assert re.search(r"<[^>]*\son\w+=", text) is None  # no inline handler (CSP: our script files only)
    js = (STATIC_DIR / PAGE_JS[page]).read_text()
    assert f'n.register("{page}", I18N, ' in js


def i18n(name: str) -> tuple[set[str], set[str], str]:
    """The keys of the English and Korean dictionaries of static/`name` (`var I18N = {en: {...}, ko: {...}}`) and
    its code without them."""
    js = (STATIC_DIR / name).read_text()
    found = re.search(r"var I18N = \{\s*en: \{(.*?)\n    \},\s*ko: \{(.*?)\n    \}\n  \};", js, re.S)
    en, ko = (set(re.findall(r'(?:^|[{,])\s*"((?:[^"\\]|\\.)+)":', d, re.M)) for d in found.groups())
    return en, ko, js[: found.start()] + js[found.end() :]


def keys_in_code(code: str, prefixes: set[str]) -> set[str]:
    """The label keys a script names as literals ("col.protocol"; not "prog.run.", a prefix it completes)."""
    return {
        k for k in re.findall(r'"([a-z_]+\.[\w.]+)"', code) if k.split(".")[0] in prefixes and k[-1] != "."
    }


def test_the_shared_dictionaries_hold_the_shell_s_labels_in_english_and_korean():
    en, ko, code = i18n("nmdose.js")
    assert en == ko and {"lang.toggle", "nav.dose", "empty", "error.server", "chart.level"} <= en
    html = shell.page("index") + shell.message_page("t", "x", uid="1.2")
    used = set(re.findall(r'data-i18n(?:-title)?="([\w.]+)"', html))
    used |= keys_in_code(code, {"col", "chart", "error"})
    assert {"nav.home", "index.title", "msg.dose_record"} <= used and used <= en


# Coded values of the dose stage shown by label on the study page (issue 16 item 5): the rule that gave the
# activity, where the injection time came from, the size an SSDE used (nmdose.dose.derived / pet_image_header /
# codes).
STUDY_CODES = (
    {
        f"rule.{p}_{v}"
        for p in ("pet_header", "nm_header")
        for v in ("start_datetime", "start_time", "no_start_time")
    }
    | {
        "rule.rrdsr_administered",
        "rule.rrdsr_net_pre_post",
        "startsrc.rrdsr",
        "startsrc.header_start_datetime",
    }
    | {f"startsrc.header_start_time_{d}" for d in ("AcquisitionDate", "StudyDate")}
    | {"startsrc.minus_1day", "size.lateral_dimension", "size.ap_dimension"}
    | {f"size.{kind}" for _code, kind in SSDE_METHODS.values()}
)

# Keys a page makes from a value (prefix + the API's code): the values each can take.
DYNAMIC = {
    "research": {f"prog.run.{v}" for v in ("running", "done", "failed", "interrupted")}
    | {f"prog.state.{v}" for v in ("done", "pending", "moving", "verifying", "partial", "failed")}
    | {f"state.{v}" for v in ("retrieved", "pending", "failed", "not_target")},
    "dose": {f"status.{v}" for v in ("official", "proposed", "example")}
    | {f"status.official_{c}" for c in ("uk", "de", "kr", "eu")}  # issue 19: an official level's country
    | {f"reason.{v}" for v in ("reference_level", "p95")}
    | {f"kind.{v}" for v in ("ct_event", "ct_study", "administration")}
    | {f"q.{v}" for v in ("ctdivol_mgy", "dlp_mgycm", "activity_mbq", "activity_mbq_per_kg")}
    | {f"per.{v}" for v in ("event", "study", "administration")},
    "study": STUDY_CODES | {"warn.plausibility", "ssde.method", "sex.M", "sex.F", "sex.O"},
}


@pytest.mark.parametrize("page", PAGE_JS)
def test_every_i18n_key_of_a_page_has_english_and_korean(page):
    """A label missing from one language would show its key: every data-i18n key of the page, every key its
    script names and every coded value it shows by label is in both languages, in the page's own dictionaries
    (static/<page>.js) or the shared ones (nmdose.js); each label is in one place only."""
    en, ko, code = i18n(PAGE_JS[page])
    shared_en, shared_ko, _ = i18n("nmdose.js")
    assert en == ko and len(en) > 50
    assert en.isdisjoint(shared_en)
    html = shell.page(page, uid="1.2")
    used = set(re.findall(r'data-i18n(?:-title)?="([\w.]+)"', html[html.index("<main>") :]))
    prefixes = {k.split(".")[0] for k in en | shared_en}
    used |= keys_in_code(code, prefixes) | DYNAMIC[page]
    if page == "study":  # its table of the study's fields
        fields = re.search(r"var keys = \[(.*?)\];", code, re.S).group(1)
        used |= {f"field.{k}" for k in re.findall(r'"(\w+)"', fields)}
    assert len(used) > 50
    assert used - (en | shared_en) == set() and used - (ko | shared_ko) == set()


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
