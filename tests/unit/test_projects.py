"""Research projects without a database: the name rule, the CSV of accession numbers or UIDs, access from token
roles and groups, the checks of an upload's files, the page shells and their labels in both languages."""

from __future__ import annotations

import io
import re
import zipfile
from types import SimpleNamespace

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from nmdose.auth import User
from nmdose.projects import upload
from nmdose.projects.access import Access, access_of, principals, token_access
from nmdose.projects.names import ProjectError, check_name, parse_id_csv
from nmdose.web import pages
from nmdose.web.router import Request, Router
from nmdose.web.routes_pages import STATIC_DIR


@pytest.mark.parametrize("name", ["ab", "lung-2025", "pet_ct", "0x", "a" * 63])
def test_good_project_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["a", "A-b", "-ab", "_ab", "a b", "a:b", "a/b", "a" * 64, "", "한글", None, 3]
)
def test_bad_project_names_are_refused_with_the_rule(name):
    with pytest.raises(ProjectError) as exc:
        check_name(name)
    assert exc.value.status == 400 and "lower-case letters" in exc.value.message


def test_csv_with_a_uid_header_reads_that_column():
    got = parse_id_csv("PatientAge;StudyInstanceUID\n45;1.2.3.4\n50;1.2.3.5\n50;1.2.3.5\n51;x.y\n")
    assert got.header == "StudyInstanceUID"
    assert got.uids == ["1.2.3.4", "1.2.3.5"] and got.accessions == []
    assert got.bad == ["line 5: 'x.y' is not a StudyInstanceUID"]


def test_csv_with_an_accession_header_takes_digits_as_accession_numbers():
    got = parse_id_csv("\ufeffAccession Number,other\n12345,a\n\nA-77,b\n12345,c\n")
    assert got.header == "Accession Number"
    assert got.accessions == ["12345", "A-77"] and got.uids == []


def test_csv_without_a_header_tells_uids_from_accession_numbers():
    got = parse_id_csv("1.2.840.1\nACC001\n1.2.840.2\t\n" + "X" * 17 + "\n")
    assert got.header is None
    assert got.uids == ["1.2.840.1", "1.2.840.2"] and got.accessions == ["ACC001"]
    assert got.bad == ["line 4: '" + "X" * 17 + "' is not an accession number (at most 16 characters)"]


def test_csv_with_an_unknown_header_skips_it():
    got = parse_id_csv("my study list\n1.2.3\n")
    assert got.header == "my study list" and got.uids == ["1.2.3"]
    assert parse_id_csv("") .uids == []  # fmt: skip


def user(*, roles=(), groups=(), permissions=(), name="lee"):
    return User(
        name, (), frozenset(permissions), "sub-" + name, realm_roles=tuple(roles), groups=tuple(groups)
    )


def test_project_access_from_realm_roles_and_groups():
    u = user(roles=["project:lung:read", "project:pet:write", "project:Bad:read", "nmdose-physicist"],
             groups=["/projects/heart", "/projects/brain/write", "/other/x", "projects/kid"])  # fmt: skip
    assert token_access(u) == {
        "lung": "read",
        "pet": "write",
        "heart": "read",
        "brain": "write",
        "kid": "read",
    }
    a = access_of(u)
    assert a.can("lung") and not a.can("lung", "write") and a.can("pet", "write") and a.can("brain", "write")
    assert not a.can("other") and not a.admin
    with pytest.raises(ProjectError) as exc:
        a.check("other")
    assert exc.value.status == 403 and "lee" in exc.value.message
    with pytest.raises(ProjectError):
        a.check("heart", "write")


def test_explicit_members_add_to_the_token_and_write_wins():
    a = access_of(user(roles=["project:lung:write"]), [("lung", "read"), ("gut", "read"), ("gut", "write")])
    assert a.projects == {"lung": "write", "gut": "write"}
    assert principals(user(groups=["projects/x"])) == (["lee", "sub-lee"], ["/projects/x"])


def test_admins_and_local_use_see_every_project():
    assert access_of(user(permissions=["project:admin"])).admin
    assert access_of(None).admin
    assert Access("x", admin=True).can("anything", "write")


def dicom_bytes(study_uid: str, *, modality: str = "CT", description: str = "PET-CT WB") -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, study_uid + ".1"
    ds.PatientID, ds.PatientName = "PROJTEST", "Test^Project"
    ds.StudyDate, ds.StudyDescription, ds.Modality = "20240102", description, modality
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_an_uploaded_file_is_checked():
    good = dicom_bytes("1.2.826.0.1.77")
    got = upload.check("a.dcm", good)
    assert got.reason == "" and got.study_uid == "1.2.826.0.1.77" and got.modality == "CT"
    assert got.study_date.isoformat() == "2024-01-02" and got.description == "PET-CT WB"
    assert "no DICM prefix" in upload.check("b.txt", b"hello").reason
    assert upload.check("cut.dcm", good[:-7]).reason.startswith(("cut short", "unreadable DICOM"))


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_the_files_of_an_upload():
    body = zip_of({"p/1.dcm": b"x", "__MACOSX/._1.dcm": b"y", "p/DICOMDIR": b"z", "p/2.dcm": b"w"})
    assert [(n, d, e) for n, d, e in upload.files(body, "application/zip")] == [
        ("p/1.dcm", b"x", ""),
        ("p/2.dcm", b"w", ""),
    ]
    assert list(upload.files(b"abc", "application/dicom", "one.dcm")) == [("one.dcm", b"abc", "")]
    for body, ctype, status in [(b"", "application/zip", 400), (b"not a zip", "application/zip", 400),
                                (b"x", "application/json", 415)]:  # fmt: skip
        with pytest.raises(ProjectError) as exc:
            list(upload.files(body, ctype))
        assert exc.value.status == status


def test_a_zip_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(upload, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(ProjectError) as exc:
        list(upload.files(zip_of({"big.dcm": b"\0" * 5000}), "application/zip"))
    assert exc.value.status == 413


def test_project_routes_refuse_malformed_names_and_bodies_before_the_database():
    r = Router()
    pages.register_routes(r, SimpleNamespace(cfg=None))
    assert r.dispatch(Request("GET", "/api/projects/Bad Name")).status == 400
    assert r.dispatch(Request("GET", "/ui/project/a:b")).status == 400
    post = {"Content-Type": "application/json"}
    resp = r.dispatch(Request("POST", "/api/projects", headers=post, body=b'{"name": "x y"}'))
    assert resp.status == 400 and b"does not match" in resp.body
    resp = r.dispatch(
        Request("POST", "/api/projects/lung/upload", headers={"Content-Type": "text/plain"}, body=b"x")
    )
    assert resp.status == 415
    resp = r.dispatch(
        Request("POST", "/api/projects/lung/studies", headers={"Content-Type": "application/zip"}, body=b"PK")
    )
    assert resp.status == 400 and b"not valid JSON" in resp.body  # a file type on a JSON route
    page = r.dispatch(Request("GET", "/ui/project/lung-2025"))
    assert page.status == 200 and b'data-page="project"' in page.body and b"static/projects.js" in page.body
    assert b"lung-2025" in page.body and b"../../static/nmdose.js" in page.body


def test_the_projects_script_has_every_label_in_english_and_korean_and_writes_no_html():
    js = (STATIC_DIR / "projects.js").read_text()
    dictionaries = re.search(r"var I18N = \{\s*en: \{(.*?)\n    \},\s*ko: \{(.*?)\n    \}", js, re.S)
    en, ko = (set(re.findall(r'"([\w.]+)":', d)) for d in dictionaries.groups())
    assert en == ko and len(en) > 40
    templates = "".join(
        (STATIC_DIR.parent / "templates" / n).read_text() for n in ("projects.html", "project.html")
    )
    used = set(re.findall(r'data-i18n="([\w.]+)"', templates)) | set(
        re.findall(r'"((?:pj|col\.pj_)[\w.]*)"', js)
    )
    used = (used - {"pj.access.", "pj.job."}) | {"nav.projects", "pj.access.read", "pj.access.write"}
    used |= {f"pj.job.{state}" for state in ("pending", "running", "done", "failed")}  # jobs.queue states
    assert used - en == set()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js
