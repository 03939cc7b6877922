"""The research project pages in a real headless Chromium against the research Orthanc of the test stack (dev
mode: the caller may everything): the list links to the project; the project page uploads a ZIP with a broken file
through its form (the good file stored, the broken one listed), lists the study with its viewer, ZIP and dose
links, and, switched to Korean, shows no English label of its own."""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.request

import pytest

from nmdose.db import connect
from nmdose.web.routes_pages import STATIC_DIR
from tests.e2e.chromium import ARTIFACTS, errors, start, wait, webdriver_module
from tests.unit.test_projects import dicom_bytes, zip_of

pytestmark = pytest.mark.integration

webdriver_module()


def english_labels() -> dict[str, str]:
    js = (STATIC_DIR / "projects.js").read_text()
    en, ko = re.search(r"var I18N = \{\s*en: \{(.*?)\n    \},\s*ko: \{(.*?)\n    \}", js, re.S).groups()

    def pairs(block: str) -> dict[str, str]:
        # "key": "text" or "text " + "more" on the next lines: only the first part is needed here
        return dict(re.findall(r'"([\w.]+)":\s*"((?:[^"\\]|\\.)*)"', block))

    en_d, ko_d = pairs(en), pairs(ko)
    return {k: v for k, v in en_d.items() if ko_d.get(k) != v}  # "ZIP" is the same in both


@pytest.fixture
def project(stack):
    name = f"e2e-{time.time_ns() % 10**9}"
    url = stack.cfg.research_node.http_url.rstrip("/") + "/nmdose"
    req = urllib.request.Request(url + "/api/projects", data=json.dumps({"name": name}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req) as r:
        assert r.status == 201
    yield name, url
    with contextlib.closing(connect(stack.cfg)) as conn, conn, conn.cursor() as cur:
        cur.execute("DELETE FROM rpacs.project WHERE name = %s", (name,))


def test_the_project_pages_upload_list_link_and_speak_korean(project, tmp_path):
    name, url = project
    study = f"1.2.826.0.17.8.{time.time_ns()}"
    good = dicom_bytes(study, modality="PT", description="E2E project upload")
    archive = tmp_path / "upload.zip"
    archive.write_bytes(zip_of({"a.dcm": good, "broken.dcm": good[:200]}))
    browser = start()
    try:
        browser.get(url + "/ui/projects")
        link = wait(browser, f"return Array.from(document.querySelectorAll('#projects-table a'))"
                             f".find(a => a.textContent === '{name}')")  # fmt: skip
        link.click()
        wait(browser, "return document.body.getAttribute('data-page') === 'project' && "
                      "!document.getElementById('project-write').hidden")  # fmt: skip
        assert browser.current_url == f"{url}/ui/project/{name}"
        browser.find_element("css selector", "#project-upload input[type=file]").send_keys(str(archive))
        browser.find_element("css selector", "#project-upload button[type=submit]").click()
        result = wait(browser, "var t = document.getElementById('upload-result').textContent; "
                               "return /stored/.test(t) && t")  # fmt: skip
        assert result.startswith("2 files: 1 stored, 0 already stored, 1 bad; 1 studies")
        bad = [td.text for td in browser.find_elements("css selector", "#upload-bad tbody td")]
        assert bad[0] == "upload.zip: broken.dcm" and bad[1].startswith(
            ("cut short", "unreadable DICOM", "DICOM without")
        )
        wait(browser, "return document.getElementById('project-studies').getAttribute('data-rows') === '1'")
        cells = [td.text for td in browser.find_elements("css selector", "#project-studies tbody td")]
        assert cells[:6] == ["2024-01-02", "E2E project upload", "PT", "1", "1", "no"]
        assert cells[6] == study
        hrefs = [
            a.get_attribute("href") for a in browser.find_elements("css selector", "#project-studies tbody a")
        ]
        viewer = url + "/viewer/viewer?StudyInstanceUIDs=" + study
        assert hrefs == [
            viewer,
            f"{url}/api/projects/{name}/studies/{study}/archive",
        ]  # no dose record: no link
        with urllib.request.urlopen(hrefs[1]) as r:  # the ZIP link answers the study (dev mode)
            assert r.headers["Content-Type"] == "application/zip" and r.read(2) == b"PK"
        browser.save_screenshot(str(ARTIFACTS / "project-en.png"))

        browser.find_element("id", "lang-toggle").click()
        assert browser.find_element("css selector", "h1").text == f"연구 프로젝트: {name}"
        english = english_labels()
        shown = browser.execute_script(
            "return Array.from(document.querySelectorAll('main [data-i18n], nav [data-i18n=\"nav.projects\"]'))"
            ".map(e => [e.getAttribute('data-i18n'), e.textContent])"
        )
        mine = [(k, t) for k, t in shown if k in english or k.startswith("col.pj_")]
        assert len(mine) > 20
        terms = re.compile(r"DICOM|StudyInstanceUID|PACS")  # technical terms, the same in Korean
        left = [
            (k, t) for k, t in mine if t == english.get(k) or re.search(r"[A-Za-z]{4,}", terms.sub("", t))
        ]
        assert left == [], left  # every label of the page is Korean (UIDs and numbers are not labels)
        assert "파일 2개: 저장 1" in browser.find_element("id", "upload-result").text
        browser.save_screenshot(str(ARTIFACTS / "project-ko.png"))
        browser.find_element("id", "lang-toggle").click()
        # Remove (DELETE through the research Orthanc): the study leaves the project, its files stay
        browser.find_element("css selector", "#project-studies tbody button").click()
        wait(browser, "return document.getElementById('project-studies').getAttribute('data-rows') === '0'")
        with urllib.request.urlopen(f"{url}/api/projects/{name}") as r:
            assert json.loads(r.read())["count"] == 0
        assert errors(browser) == []
    finally:
        browser.execute_script("localStorage.removeItem('nmdose.lang')")
        browser.quit()
