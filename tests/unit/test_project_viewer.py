"""The viewer for research-project members (docs/projects.md): the gate admits a member's DICOMweb reads of the
studies of their projects, named in the path or the query, and nothing else; the access check caches per user and
study and fails closed."""

from __future__ import annotations

import pytest

from nmdose.auth import User
from nmdose.projects.viewer_access import ProjectStudyAccess
from nmdose.web import dicomweb
from tests.unit.web.test_viewer import FakeAuth, keycloak_gate

MEMBER = User("member", ("technologist",), frozenset({"dose:read"}), realm_roles=("project:trial:read",))


def member_gate(allowed_studies: set[str]):
    gate = keycloak_gate()
    gate.auth = FakeAuth({**gate.auth.users, "member": MEMBER})
    asked = []

    def access(user, uids):
        asked.append((user.username, tuple(uids)))
        return all(u in allowed_studies for u in uids)

    gate.study_access = access
    return gate, asked


@pytest.mark.parametrize(
    ("method", "uri", "get", "allowed"),
    [
        ("GET", "/dicom-web/studies/1.2.3/series", None, True),
        ("GET", "/dicom-web/studies/1.2.3/series/4/instances/5/frames/1", None, True),
        ("HEAD", "/dicom-web/studies/1.2.3/metadata", None, True),
        ("GET", "/dicom-web/studies", {"StudyInstanceUID": "1.2.3"}, True),  # OHIF's first search
        ("GET", "/dicom-web/series", {"0020000D": "1.2.3"}, True),
        ("GET", "/wado", {"requestType": "WADO", "studyUID": "1.2.3"}, True),
        ("GET", "/dicom-web/studies", None, False),  # a search over every study
        ("GET", "/dicom-web/studies", {"PatientID": "X"}, False),
        ("GET", "/dicom-web/studies", {"StudyInstanceUID": "1.2.3,9.9"}, False),  # one study not theirs
        ("GET", "/dicom-web/studies/9.9/series", None, False),
        ("POST", "/dicom-web/studies/1.2.3", None, False),  # STOW-RS
        ("GET", "/patients", None, False),  # Orthanc's own API
    ],
)
def test_a_member_reads_the_studies_of_their_projects_only(method, uri, get, allowed):
    gate, _ = member_gate({"1.2.3"})
    assert gate.allowed(method, uri, "10.0.0.9", {"authorization": "Bearer member"}, get) is allowed


def test_without_a_token_nothing_is_asked():
    gate, asked = member_gate({"1.2.3"})
    assert not gate.allowed("GET", "/dicom-web/studies/1.2.3/series", "10.0.0.9", {})
    assert asked == []


def test_study_uids_of_a_request():
    assert dicomweb.study_uids_of("/dicom-web/studies/1.2/series", None) == ["1.2"]
    assert dicomweb.study_uids_of("/dicom-web/studies", {"StudyInstanceUID": "1.2\\3.4"}) == ["1.2", "3.4"]
    assert dicomweb.study_uids_of("/dicom-web/studies", {}) is None
    assert dicomweb.study_uids_of("/dicom-web/studies/", None) is None


class FakeConn:
    def __init__(self, rows, fail=False):
        self.rows, self.fail, self.closed, self.queries = rows, fail, False, 0

    def cursor(self):
        conn = self

        class Cur:
            def __enter__(self):
                return self

            def __exit__(self, *a):
                return False

            def execute(self, sql, params):
                conn.queries += 1
                if conn.fail:
                    raise RuntimeError("database gone")
                self.uids = params[0]

            def fetchall(self):
                return [(u, p) for u, p in conn.rows if u in self.uids]

        return Cur()

    def commit(self):
        pass

    def close(self):
        self.closed = True


def test_the_check_reads_the_projects_caches_and_fails_closed(monkeypatch):
    from nmdose.projects import store

    monkeypatch.setattr(store, "member_access", lambda conn, names, groups: [])
    conn = FakeConn([("1.2.3", "trial"), ("4.5.6", "other")])
    check = ProjectStudyAccess(None, connect=lambda: conn)
    assert check(MEMBER, ["1.2.3"]) and not check(MEMBER, ["4.5.6"]) and not check(MEMBER, ["7.7"])
    queries = conn.queries
    for _ in range(100):  # a viewer's frames: answered from the cache
        assert check(MEMBER, ["1.2.3"])
    assert conn.queries == queries
    broken = ProjectStudyAccess(None, connect=lambda: FakeConn([], fail=True))
    assert broken(MEMBER, ["1.2.3"]) is False
