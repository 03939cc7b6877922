"""The web layer's parts without a database: the page templates escape every value, the route tables describe
every route, the SQL modules put every value in a bound parameter, the dose page opens with DEFAULT_VIEWS."""

from __future__ import annotations

import html
import json
import re
from string import Template
from types import SimpleNamespace

import pytest
from psycopg2 import sql

from nmdose.web import pages, shell, sql_dose, sql_levels, sql_research, sql_scanners
from nmdose.web.dose_views import DEFAULT_VIEWS, opening_views, view_path
from nmdose.web.params import DOSE_FILTERS
from nmdose.web.router import Request, Router
from nmdose.web.routes_pages import STATIC_DIR
from nmdose.web.sql_common import like_pattern
from tests.support import load, make_config_dir

NASTY = '<x a="1">\'&%s{}$x'

# ----- templates ---------------------------------------------------------------------------------------------


def test_every_template_value_is_escaped():
    for path in sorted(shell.TEMPLATES_DIR.glob("*.html")):
        names = {m.group("named") or m.group("braced") for m in Template.pattern.finditer(path.read_text())}
        names.discard(None)
        text = shell.render(path.name, **dict.fromkeys(names, NASTY))
        assert "<x" not in text and html.escape(NASTY) in text or not names, path.name


def test_the_shell_escapes_its_title_data_and_login_settings_and_puts_rendered_html_in_as_it_is():
    body = shell.render("message.html", title=NASTY, text="t", back="")
    text = shell.shell("message", body, data={"v": NASTY}, oidc={"issuer": NASTY}, depth=2)
    assert "<x" not in text
    assert (
        html.escape(json.dumps({"v": NASTY})) in text and html.escape(json.dumps({"issuer": NASTY})) in text
    )
    assert "<h1>&lt;x a=&quot;1&quot;&gt;" in text  # the body's own escaping, not escaped twice
    assert text.endswith("</body></html>\n") and 'src="../../static/nmdose.js"' in text


def test_a_template_value_that_is_missing_is_an_error_not_an_empty_string():
    with pytest.raises(KeyError):
        shell.render("study.html")


def test_the_orthanc_explorer_script_is_the_template_file():
    assert shell.orthanc_explorer_js() == (shell.TEMPLATES_DIR / "orthanc-explorer.js").read_text()
    assert pages.orthanc_explorer_js is shell.orthanc_explorer_js  # entry.py imports it from web/pages.py


def test_the_pages_load_no_inline_script():
    for name in ("index", "research", "dose", "study"):
        text = shell.page(name, uid="1.2", data={"views": opening_views()})
        scripts = 3 + (name in shell.PAGE_SCRIPTS)  # auth, Chart.js, nmdose.js and the page's own
        tags = re.findall(r'<script src="[^"]+"></script>', text)
        assert len(re.findall(r"<script", text)) == scripts == len(tags)
        assert re.search(r"<[^>]*\son\w+=", text) is None  # no event handler attribute (onclick=…)


# ----- route tables ------------------------------------------------------------------------------------------


def test_every_route_has_a_summary_and_every_api_route_a_query_spec():
    # 79: 30, and standard names 11, scanners 5, alerts 7, the report 8 (patient size), projects 11, the viewer 4,
    # outlier acknowledgement 1, the research grid and accepting descriptions 2 (issues 16, 17, 19); 81: the
    # acknowledgement history, the proxy's check of a pseudoPACS request
    assert len(pages.ROUTES) == len({(r.method, r.pattern) for r in pages.ROUTES}) == 81
    for r in pages.ROUTES:
        assert r.summary and "\n" not in r.summary and len(r.summary) < 120, r.pattern
        assert r.permission, r.pattern
        assert all(isinstance(k, int) and k != 200 and v for k, v in r.answers.items()), r.pattern
        if r.pattern.startswith("/api/"):
            assert r.query is not None, f"{r.pattern}: an API route says which query it takes"
            # a study's ZIP download (web/routes_projects.py) is the one API answer that is not JSON
            assert r.content_type == (
                "application/zip" if r.pattern.endswith("/archive") else "application/json"
            ), r.pattern
        if (
            r.pattern.startswith("/ui/")
            and r.pattern != "/ui/orthanc/study/{uid}"
            or r.pattern in ("/ui", "/index")
        ):
            assert r.query is None, (
                f"{r.pattern}: a page ignores the query (the OIDC login returns with ?code=)"
            )
            assert r.content_type == "text/html; charset=utf-8"
        if r.pattern.startswith("/api/dose/") and r.query and "format" in r.query:
            assert r.export_permission == "dose:export", r.pattern


def test_the_router_gets_the_tables_rows():
    router = Router()
    pages.register_routes(router, SimpleNamespace(cfg=None))
    table = {(r.method, r.pattern): r for r in router.table}
    for spec in pages.ROUTES:
        route = table[(spec.method, spec.pattern)]
        assert (route.permission, route.export_permission, route.query, route.summary, dict(route.answers),
                route.content_type) == (spec.permission, spec.export_permission, spec.query, spec.summary,
                                        dict(spec.answers), spec.content_type)  # fmt: skip


def test_a_page_ignores_the_query_the_oidc_login_returns_with():
    router = Router()
    pages.register_routes(router, SimpleNamespace(cfg=None))
    for path in ("/ui/index", "/ui/research", "/ui/dose", "/ui/study/1.2", "/ui/patients"):
        resp = router.dispatch(Request("GET", path, query={"code": "abc", "state": "xyz"}))
        assert resp.status == 200, path


# ----- the dose page's opening views -------------------------------------------------------------------------


def view_key(path: str, params: dict) -> str:
    """static/dose.js viewKey()."""
    return path + "?" + "&".join(f"{k}={params[k]}" for k in sorted(params))


def test_the_dose_page_carries_default_views_as_its_opening_requests():
    router = Router()
    pages.register_routes(router, SimpleNamespace(cfg=None))
    text = router.dispatch(Request("GET", "/ui/dose")).body.decode()
    data = json.loads(html.unescape(re.search(r'data-page-data="([^"]*)"', text).group(1)))
    assert data == {"views": opening_views()}
    assert [("/api/" + v["path"], v["params"]) for v in data["views"]] == [
        (view_path(route), f) for route, f in DEFAULT_VIEWS
    ]
    paths = {r.pattern for r in pages.ROUTES}
    assert {view_path(route) for route, _ in DEFAULT_VIEWS} <= paths


def test_every_opening_answer_fills_something_on_the_dose_page_and_nothing_else_is_expected():
    js = (STATIC_DIR / "dose.js").read_text()
    views = js[js.index("var DOSE_VIEWS = [") : js.index("var doseGeneration")]
    expected = {
        k for group in re.findall(r"answers: \[([^\]]*)\]", views) for k in re.findall(r'"([^"]+)"', group)
    }
    # the outlier list's opening request is named by the page data itself (its `limit` is the page size)
    assert "answers: [viewKey(outlierView.path, outlierView.params)]" in views
    expected |= {view_key(v["path"], v["params"]) for v in opening_views() if v["path"] == "dose/outliers"}
    assert expected == {view_key(v["path"], v["params"]) for v in opening_views()}


# ----- SQL: values are bound parameters ----------------------------------------------------------------------


def sql_text(query) -> str:
    """The text of a composed query without a connection (psycopg2 needs one to quote identifiers)."""
    if isinstance(query, str):
        return query
    if isinstance(query, sql.Composed):
        return "".join(sql_text(q) for q in query.seq)
    if isinstance(query, sql.SQL):
        return query.string
    if isinstance(query, sql.Identifier):
        return ".".join('"' + s.replace('"', '""') + '"' for s in query.strings)
    raise AssertionError(f"a query holds {type(query).__name__}: values go in parameters")


class FakeConnection:
    """Records every statement; each answers one row (enough for the functions to finish)."""

    def __init__(self):
        self.executed: list[tuple[str, list]] = []

    def cursor(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, query, params=None):
        self.executed.append((sql_text(query), list(params or ())))
        self.description = [SimpleNamespace(name="study_instance_uid"), SimpleNamespace(name="patient_id")]

    def fetchall(self):
        return [("1.2", "P1")]

    def fetchone(self):
        return ("P1",)

    def rollback(self):
        pass

    commit = rollback


def nasty_filters() -> dict:
    """A value for every dose filter; every text one is an SQL injection attempt."""
    import datetime as dt

    f = {k: f"{k} '); DROP TABLE dose.study; -- %s %(x)s {{}}" for k in DOSE_FILTERS}
    f.update({"from": dt.date(2020, 1, 1), "to": dt.date(2021, 1, 1), "sex": "F", "age_min": 1.5,
              "age_max": 80.0, "weight_min": 3.0, "weight_max": 200.0})  # fmt: skip
    return f


@pytest.fixture(scope="module")
def levels(tmp_path_factory):
    return list(
        load(make_config_dir(tmp_path_factory.mktemp("cfg"), free_ports=False)).reference_levels.levels
    )


def calls(levels):
    f = nasty_filters()
    yield "ct_protocols protocol", lambda c: sql_dose.ct_protocols(c, f, "protocol")
    yield "ct_protocols description", lambda c: sql_dose.ct_protocols(c, f, "description")
    yield "ct_monthly", lambda c: sql_dose.ct_monthly(c, f)
    yield "ct_events", lambda c: sql_dose.ct_events(c, f, 10)
    yield "activity agent", lambda c: sql_dose.activity(c, f, "agent")
    yield "activity description", lambda c: sql_dose.activity(c, f, "description")
    yield "activity_points", lambda c: sql_dose.activity_points(c, f, 10)
    yield "effective_dose", lambda c: sql_dose.effective_dose(c, f)
    for measure, (kind, _, _) in sql_dose.BOX_MEASURES.items():
        for group in sql_dose.BOX_GROUPS[kind]:
            yield f"box {measure} {group}", lambda c, m=measure, g=group: sql_dose.box(c, f, levels, m, g)
    yield "outliers", lambda c: sql_levels.outliers(c, f, levels, 10)
    yield "outliers p95", lambda c: sql_levels.outliers(c, {**f, "reason": "p95 ' %s"}, levels, 10)
    yield "outlier_index", lambda c: sql_levels.outlier_index(c, f, levels, 10)
    for field in sql_dose.CHOICE_FIELDS:
        yield f"choices {field}", lambda c, fd=field: sql_dose.choices(c, f, fd)
    yield "dose_study", lambda c: sql_dose.dose_study(c, "1.2'3")
    yield "dead_letters", lambda c: sql_dose.dead_letters(c, "open", 10)
    yield "research_yearly", lambda c: sql_research.research_yearly(c, {"from_year": 2020, "to_year": 2024})
    yield "research_failed", lambda c: sql_research.research_failed(c, 10)
    for measure in sql_scanners.MEASURES:
        yield f"scanners side_by_side {measure}", lambda c, m=measure: sql_scanners.side_by_side(c, f, m)


def test_the_sql_modules_put_every_value_in_a_bound_parameter(levels):
    f = nasty_filters()
    for name, call in calls(levels):
        conn = FakeConnection()
        call(conn)
        statements = [(q, p) for q, p in conn.executed if not q.startswith("SET LOCAL")]
        assert statements, name
        for query, params in statements:
            for value in f.values():
                if isinstance(value, str) and len(value) > 1:
                    assert value not in query, f"{name}: {value!r} is in the SQL text"
            assert "DROP" not in query and "1.2'3" not in query and "p95 '" not in query, name
            # one bound parameter per %s (%% is a literal percent sign)
            assert len(re.findall(r"%s", query.replace("%%", ""))) == len(params), name
    conn = FakeConnection()
    sql_dose.ct_events(conn, f, 10)
    (query, params) = conn.executed[-1]
    text = ("manufacturer", "model", "station", "description", "modality", "protocol")
    assert params == [
        like_pattern(f[k]) if k in text else f[k]
        for k in (
            "from",
            "to",
            "sex",
            "age_min",
            "age_max",
            "weight_min",
            "weight_max",
            "manufacturer",
            "model",
            "station",
            "description",
            "modality",
            "protocol",
        )
    ] + [[f["agent"]], f["scanner"], f["scanner"], f["standard_name"], f["standard_name"], 10]  # fmt: skip
    # (agent: one array; scanner: id or name; standard name: the rules' names in any case, and as typed)


def test_a_text_filter_is_a_pattern_of_part_of_the_text_with_its_wildcards_literal():
    assert like_pattern("Chest") == "%Chest%"
    assert like_pattern("5%_a\\b") == "%5\\%\\_a\\\\b%"


def test_only_the_fixed_match_ctes_exist():
    with pytest.raises(ValueError, match="no such matched attribute"):
        sql_levels.match_ctes(protocol="SELECT 1", region2="SELECT 2")


def test_the_patients_page_is_a_shell_with_its_own_script_and_both_languages():
    """Issue 16 item 4: the shared shell with the page's own script after nmdose.js, no inline script, DOM text
    only, every label of the page in English and Korean (its dictionaries, merged by nmdose.register)."""
    router = Router()
    pages.register_routes(router, SimpleNamespace(cfg=None))
    resp = router.dispatch(Request("GET", "/ui/patients"))
    text = resp.body.decode()
    assert resp.status == 200 and resp.content_type == "text/html; charset=utf-8"
    assert re.findall(r"<script[^>]*>", text) == [
        '<script src="../static/nmdose-auth.js">', '<script src="../static/chart.umd.min.js">',
        '<script src="../static/nmdose.js">', '<script src="../static/patients.js">',
    ]  # fmt: skip
    assert 'id="lang-toggle"' in text and 'data-page="patients"' in text
    assert re.search(r"<[^>]*\son\w+=", text) is None
    js = (STATIC_DIR / "patients.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js
    assert 'n.register("patients", I18N, run)' in js
    en, ko = (
        set(re.findall(r'"([\w.]+)":', block))
        for block in re.search(r"en: \{(.*?)\n    \},\s*ko: \{(.*?)\n    \}", js, re.S).groups()
    )
    body = text[text.index("<main>") :]
    used = set(re.findall(r'data-i18n="([\w.]+)"', body))
    used |= {
        "col.pt_" + c for c in re.findall(r'"(\w+)"', "".join(re.findall(r"_COLUMNS = \[(.*?)\];", js, re.S)))
    }
    code = js[: js.index("var I18N")] + js[js.index("var PATIENT_COLUMNS") :]
    used |= set(re.findall(r'"(pt\.[\w.]+)"', code))  # the labels the script sets
    assert used and used <= en and used <= ko and en == ko
    shell_page = router.dispatch(Request("GET", "/ui/dose")).body.decode()
    assert 'href="../ui/patients"' in shell_page  # the nav link of every page
