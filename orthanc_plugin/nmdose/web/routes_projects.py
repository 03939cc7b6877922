"""Research projects (`/nmdose/api/projects...`, `/nmdose/ui/projects`, `/nmdose/ui/project/{name}`; issue 17
item 2, docs/projects.md): the projects a user may see, a project's studies, adding and removing studies, a
study's ZIP from the research PACS, and uploading DICOM files or a ZIP into a project.

The router's permission is per route, a project's per request: the API routes ask for an authenticated user
(`project:admin` to create a project or name its members), and each handler checks the user's access to the
`{name}` of its path (nmdose.projects.access: token roles `project:<name>:read|write`, groups `/projects/<name>`,
explicit members, admins): 403 for a user of another project, and the list holds only the user's projects.
The audit trail records every call with the studies it named (the answer's `study_instance_uid` values, the
`{uid}` of a download)."""

from __future__ import annotations

import functools
import logging

from nmdose.projects import orthanc, store, upload
from nmdose.projects.access import ADMIN, READ, WRITE, Access
from nmdose.projects.names import ProjectError, check_name, parse_id_csv
from nmdose.web.params import TEXT
from nmdose.web.router import AUTHENTICATED, PUBLIC, HttpError, Request, Response, check_uid, header
from nmdose.web.routes import HTML, Context, RouteSpec
from nmdose.web.shell import render, shell

log = logging.getLogger("nmdose.projects")
# A study's ZIP is read into memory before it is answered (the router's answers are whole): larger ones are
# refused (413), which keeps the research PACS within its memory budget.
MAX_ARCHIVE_BYTES = 1 << 30

NAME = {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]{1,62}$", "maxLength": 63}
CREATE_BODY = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {"name": NAME, "description": {"type": "string", "maxLength": 1000}},
}
ADD_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "uids": {
            "type": "array",
            "items": {"type": "string", "maxLength": 64},
            "minItems": 1,
            "maxItems": 100_000,
        },
        "accessions": {
            "type": "array",
            "items": {"type": "string", "maxLength": 16},
            "minItems": 1,
            "maxItems": 100_000,
        },
        "csv": {"type": "string", "maxLength": 10_000_000},
        "description": {"type": "string", "maxLength": 256},
        "year": {"type": "integer", "minimum": 1900, "maximum": 2200},
        "state": {"type": "string", "maxLength": 32},
    },
}
MEMBER_BODY = {
    "type": "object",
    "required": ["kind", "principal", "access"],
    "additionalProperties": False,
    "properties": {
        "kind": {"type": "string", "enum": ["user", "group"]},
        "principal": {"type": "string", "maxLength": 256},
        "access": {"type": "string", "enum": ["read", "write"]},
    },
}


def _answers(handler):
    """A ProjectError of the projects' modules becomes the HTTP error it names."""

    @functools.wraps(handler)
    def run(request: Request, ctx: Context) -> Response:
        try:
            return handler(request, ctx)
        except ProjectError as exc:
            raise HttpError(exc.status, exc.message) from None

    return run


def _by(request: Request) -> str:
    return str(getattr(request.user, "username", None) or "local")


def _access(request: Request, conn) -> Access:
    return store.user_access(conn, request.user)


def _name(request: Request) -> str:
    """The path's project name, checked (400) before anything else runs."""
    return check_name(request.params["name"])


def _check(request: Request, conn, name: str, wanted: str = READ) -> Access:
    """The user's access to the project (403 without it)."""
    access = _access(request, conn)
    access.check(name, wanted)
    return access


# ----- handlers


@_answers
def list_projects(request: Request, ctx: Context) -> Response:
    with ctx.db() as conn:
        access = _access(request, conn)
        got = store.projects(conn, access)
    return Response.json({"rows": got, "count": len(got), "admin": access.admin})


@_answers
def create_project(request: Request, ctx: Context) -> Response:
    data = request.data or {}
    if "name" not in data:
        raise HttpError(400, "body lacks 'name'")
    with ctx.db() as conn:
        created = store.create(conn, data["name"], data.get("description", ""), _by(request))
        project = store.get(conn, data["name"])
    return Response.json({"created": created, "project": project}, 201 if created else 200)


@_answers
def project_detail(request: Request, ctx: Context) -> Response:
    """The project and its studies (each view is audited with the study UIDs of the answer)."""
    name = _name(request)
    with ctx.db() as conn:
        access = _check(request, conn, name)
        project = store.get(conn, name)
        got = store.studies(conn, name)
    can_write = access.can(name, WRITE)
    return Response.json({"project": project, "rows": got, "count": len(got), "write": can_write})


@_answers
def add_studies(request: Request, ctx: Context) -> Response:
    data = request.data or {}
    ways = [k for k in ("uids", "accessions", "csv", "description") if k in data]
    if len(ways) != 1:
        raise HttpError(400, "give one of 'uids', 'accessions', 'csv' or 'description' (a census filter)")
    if ("year" in data or "state" in data) and ways != ["description"]:
        raise HttpError(400, "'year' and 'state' go with 'description'")
    unknown: list[str] = []
    bad: list[str] = []
    name = _name(request)
    with ctx.db() as conn:
        _check(request, conn, name, WRITE)
        store.get(conn, name)
        if ways == ["uids"]:
            uids, how = [check_uid(u) for u in data["uids"]], "uid"
        elif ways == ["accessions"]:
            uids, unknown = store.uids_of_accessions(conn, data["accessions"])
            how = "accession"
        elif ways == ["csv"]:
            ids = parse_id_csv(data["csv"])
            found, unknown = store.uids_of_accessions(conn, ids.accessions) if ids.accessions else ([], [])
            uids, how, bad = ids.uids + found, "csv", ids.bad
        else:
            uids = store.uids_of_description(
                conn, data["description"], year=data.get("year"), state=data.get("state")
            )
            how = "description"
        result = store.add_studies(conn, name, uids, _by(request), how)
    return Response.json({**result, "unknown_accessions": unknown, "refused": bad})


@_answers
def remove_study(request: Request, ctx: Context) -> Response:
    uid = check_uid(request.params["uid"])
    name = _name(request)
    with ctx.db() as conn:
        _check(request, conn, name, WRITE)
        if not store.remove_study(conn, name, uid):
            raise HttpError(404, f"study {uid} is not in project {name}")
    return Response.json({"removed": True, "study_instance_uid": uid})


@_answers
def archive(request: Request, ctx: Context) -> Response:
    """The study as a ZIP from the research PACS (Orthanc's `/studies/{id}/archive`), bounded in size."""
    uid = check_uid(request.params["uid"])
    name = _name(request)
    with ctx.db() as conn:
        _check(request, conn, name)
        if not store.has_study(conn, name, uid):
            raise HttpError(404, f"study {uid} is not in project {name}")
    http = orthanc.client(ctx.cfg)
    oid = orthanc.study_id(http, uid)
    if oid is None:
        raise HttpError(404, f"the research PACS does not hold study {uid} (not retrieved yet, or deleted)")
    _instances, size = orthanc.study_size(http, oid)
    if size > MAX_ARCHIVE_BYTES:
        raise HttpError(
            413, f"the study holds {size >> 20} MB; a download is at most {MAX_ARCHIVE_BYTES >> 20} MB"
        )
    body = orthanc.archive(http, oid, MAX_ARCHIVE_BYTES + (64 << 20))
    resp = Response(200, body, "application/zip")
    resp.headers["Content-Disposition"] = f'attachment; filename="{uid}.zip"'
    return resp


@_answers
def upload_files(request: Request, ctx: Context) -> Response:
    """DICOM files into the project: one file (`application/dicom`) or a ZIP (`application/zip`); each bad file
    is listed with its reason, the good ones stored into the research PACS and their studies added."""
    ctype = header(request.headers, "Content-Type").split(";")[0].strip().lower()
    if ctype not in ("application/zip", "application/dicom"):
        raise HttpError(
            415, "an upload is application/zip (a ZIP of DICOM files) or application/dicom (one file)"
        )
    name = _name(request)
    with ctx.db() as conn:
        _check(request, conn, name, WRITE)
        store.get(conn, name)
    http = orthanc.client(ctx.cfg)

    def refuse(study_uid: str) -> str:
        """A study the research PACS holds already joins a project by being added (write access to the project
        is the right to choose among the research PACS's studies), never by an upload into it: files uploaded
        into another project's study would change what that project's members see."""
        with ctx.db() as conn:
            if store.has_study(conn, name, study_uid):
                return ""
        if orthanc.study_id(http, study_uid) is not None:
            return "the research PACS holds this study already (not in this project): add it to the project instead"
        return ""

    filename = request.args.get("filename") or "upload.dcm"
    report = upload.run(http, request.body, ctype, filename, refuse=refuse)
    added = {"added": 0, "already": 0, "study_instance_uids": []}
    if report.studies:
        with ctx.db() as conn:
            added = store.add_studies(
                conn, name, list(report.studies), _by(request), "upload", fields=report.studies
            )
    out = {
        **report.answer(),
        "added": added["added"],
        "already": added["already"],
        "study_instance_uids": added["study_instance_uids"],
    }
    if report.stored + report.already_stored == 0:
        return Response.json({"error": "no DICOM file of the upload could be stored", **out}, 400)
    return Response.json(out)


@_answers
def members(request: Request, ctx: Context) -> Response:
    name = _name(request)
    with ctx.db() as conn:
        _check(request, conn, name)
        got = store.members(conn, name)
    return Response.json({"rows": got, "count": len(got)})


@_answers
def set_member(request: Request, ctx: Context) -> Response:
    data = request.data or {}
    if not all(k in data for k in ("kind", "principal", "access")):
        raise HttpError(400, "body needs 'kind' (user|group), 'principal' and 'access' (read|write)")
    name = _name(request)
    with ctx.db() as conn:
        _check(request, conn, name, WRITE)
        store.set_member(conn, name, data["kind"], data["principal"], data["access"], _by(request))
        got = store.members(conn, name)
    return Response.json({"rows": got, "count": len(got)})


def projects_page(request: Request, ctx: Context) -> Response:
    return Response.html(shell("projects", render("projects.html"), depth=1, oidc=ctx.oidc))


def project_page(request: Request, ctx: Context) -> Response:
    try:
        name = check_name(request.params["name"])
    except ProjectError as exc:
        raise HttpError(400, exc.message) from None
    body = render("project.html", project=name)
    return Response.html(shell("project", body, data={"name": name}, depth=2, oidc=ctx.oidc))


NAME_ANSWERS = {
    400: "the project name is malformed, or the body or a query parameter",
    403: "the user may not read (or write) this project",
    404: "no such project",
}
STUDY_ANSWERS = {**NAME_ANSWERS, 404: "no such project, or the study is not in it"}

ROUTES = (
    RouteSpec(
        "GET",
        "/api/projects",
        list_projects,
        AUTHENTICATED,
        "The research projects the user may read (every one for project:admin), with their study counts",
        query={},
    ),
    RouteSpec(
        "POST",
        "/api/projects",
        create_project,
        ADMIN,
        "Create a research project (nothing when it exists: 200)",
        query={},
        body=CREATE_BODY,
        answers={201: "created", 400: "the name is malformed"},
    ),
    RouteSpec(
        "GET",
        "/api/projects/{name}",
        project_detail,
        AUTHENTICATED,
        "A project's studies (date, description, modalities, series/instance counts, dose record); members only",
        query={},
        answers=NAME_ANSWERS,
    ),
    RouteSpec(
        "POST",
        "/api/projects/{name}/studies",
        add_studies,
        AUTHENTICATED,
        "Add studies to a project (write access): UIDs, accession numbers, a CSV, or a census description filter",
        query={},
        body=ADD_BODY,
        answers={**NAME_ANSWERS, 413: "the filter finds too many studies"},
    ),
    RouteSpec(
        "DELETE",
        "/api/projects/{name}/studies/{uid}",
        remove_study,
        AUTHENTICATED,
        "Take a study out of a project (write access; its files stay in the research PACS)",
        query={},
        answers=STUDY_ANSWERS,
    ),
    RouteSpec(
        "GET",
        "/api/projects/{name}/studies/{uid}/archive",
        archive,
        AUTHENTICATED,
        "A study of the project as a ZIP from the research PACS (members only; audited with the study UID)",
        query={},
        answers={**STUDY_ANSWERS, 413: "the study is too large to download in one piece"},
        content_type="application/zip",
    ),
    RouteSpec(
        "POST",
        "/api/projects/{name}/upload",
        upload_files,
        AUTHENTICATED,
        "Upload DICOM files (application/dicom) or a ZIP of them (application/zip) into a project (write access)",
        query={"filename": TEXT.but(description="the file's name, named in the report (application/dicom)")},
        answers={
            **NAME_ANSWERS,
            400: "no file of the upload could be stored (each bad file listed), or the ZIP is unreadable",
            413: "the upload or its unpacked ZIP is too large",
            415: "not application/zip or application/dicom",
        },
    ),
    RouteSpec(
        "GET",
        "/api/projects/{name}/members",
        members,
        AUTHENTICATED,
        "A project's explicit members (users and groups beyond the token's project roles)",
        query={},
        answers=NAME_ANSWERS,
    ),
    RouteSpec(
        "POST",
        "/api/projects/{name}/members",
        set_member,
        ADMIN,
        "Name a user or group a member of a project, with read or write access",
        query={},
        body=MEMBER_BODY,
        answers=NAME_ANSWERS,
    ),
    RouteSpec(
        "GET", "/ui/projects", projects_page, PUBLIC, "The research projects page (shell)", content_type=HTML
    ),
    RouteSpec(
        "GET",
        "/ui/project/{name}",
        project_page,
        PUBLIC,
        "One project's page: its studies with viewer, ZIP and dose links, and the upload form (shell)",
        answers={400: "the project name is malformed"},
        content_type=HTML,
    ),
)
