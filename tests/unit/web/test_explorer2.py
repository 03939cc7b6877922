"""The Orthanc Explorer 2 buttons point at routes the plugin really serves."""

from types import SimpleNamespace
from urllib.parse import urljoin, urlparse

from nmdose.web import pages
from nmdose.web.explorer2 import OE2_APP_ROOT, explorer2_settings
from nmdose.web.router import Router


def _get_routes() -> list:
    router = Router()
    pages.register_routes(router, SimpleNamespace(cfg=None))
    return [regex for method, regex, _handler, _perm in router.routes if method == "GET"]


def test_every_oe2_button_opens_an_nmdose_page():
    routes = _get_routes()
    buttons = explorer2_settings()["UiOptions"]["CustomButtons"]
    assert {b["Id"] for b in buttons["study"]} >= {"nmdose-study-dose", "nmdose-dose-page"}
    for button in buttons["study"]:
        assert button["HttpMethod"] == "GET" and button["Icon"].startswith("bi bi-")
        url = button["Url"].replace("{StudyInstanceUID}", "1.2.826.0.1.3680043.8.498.1")
        path = urlparse(urljoin("http://pacs.example" + OE2_APP_ROOT, url)).path
        assert path.startswith("/nmdose/ui/"), path
        local = path.removeprefix("/nmdose")
        assert any(r.match(local) for r in routes), f"{button['Id']}: no GET route for {local}"


def test_the_study_button_carries_the_study_uid():
    study = [b for b in explorer2_settings()["UiOptions"]["CustomButtons"]["study"] if "{" in b["Url"]]
    assert [b["Url"].count("{StudyInstanceUID}") for b in study] == [1]
