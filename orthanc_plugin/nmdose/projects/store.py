"""The rows of the research projects (sql/018_projects.sql): projects, their studies and explicit members.

Every function takes an open connection and commits what it writes (one transaction per call); values are always
bound. Adding a study twice is a no-op (`ON CONFLICT DO NOTHING`): the first add, its user and its way stay.
Studies are found in the census (`rpacs.study`) by accession number or by a description filter; a UID is taken
as given (an uploaded or imported study need not be in the census) and `not_in_census` names those it lacks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from nmdose.projects.access import ADMIN, Access, access_of, principals
from nmdose.projects.names import ProjectError, check_name, is_uid

Rows = list[dict[str, Any]]
MAX_FILTER_STUDIES = 100_000  # a description filter adding more is refused (413): narrow it with a year


def _rows(cur) -> Rows:
    names = [c.name for c in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _query(conn, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Rows:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        out = _rows(cur)
    conn.rollback()  # read-only: never leave a pooled connection inside a transaction
    return out


# ----- projects


def create(conn, name: str, description: str, by: str) -> bool:
    """Create the project (True), or nothing when it exists (False: its description stays)."""
    check_name(name)
    if len(description) > 1000:
        raise ProjectError(400, "a project description is at most 1000 characters")
    with conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO rpacs.project (name, description, created_by) VALUES (%s, %s, %s)
               ON CONFLICT (name) DO NOTHING RETURNING name""",
            (name, description, by),
        )
        return cur.fetchone() is not None


def get(conn, name: str) -> dict[str, Any]:
    """The project row with its study and member counts; ProjectError 404 when there is none."""
    check_name(name)
    got = _query(
        conn,
        """SELECT p.name, p.description, p.created_by, p.created_at,
                  (SELECT count(*) FROM rpacs.project_study s WHERE s.project = p.name)::int AS studies,
                  (SELECT count(*) FROM rpacs.project_member m WHERE m.project = p.name)::int AS members
             FROM rpacs.project p WHERE p.name = %s""",
        (name,),
    )
    if not got:
        raise ProjectError(404, f"no project {name}")
    return got[0]


def projects(conn, access: Access) -> Rows:
    """The projects the user may read (every one for an admin), by name, each with its counts and the user's
    access."""
    where, params = ("", ()) if access.admin else ("WHERE p.name = ANY(%s)", (sorted(access.projects),))
    got = _query(
        conn,
        f"""SELECT p.name, p.description, p.created_by, p.created_at,
                   (SELECT count(*) FROM rpacs.project_study s WHERE s.project = p.name)::int AS studies
              FROM rpacs.project p {where} ORDER BY p.name""",  # noqa: S608 - `where` is one of two fixed texts
        params,
    )
    for r in got:
        r["access"] = "write" if access.can(r["name"], "write") else "read"
    return got


def user_access(conn, user: Any) -> Access:
    """What `user` (the router's authenticated user, None without an authenticator) may do with the projects:
    admins and local use without the members table, others with their explicit memberships."""
    if user is None or ADMIN in (getattr(user, "permissions", None) or ()):
        return access_of(user)
    names, groups = principals(user)
    return access_of(user, member_access(conn, names, groups))


def member_access(conn, usernames: Iterable[str], groups: Iterable[str]) -> list[tuple[str, str]]:
    """(project, access) of the explicit memberships naming one of `usernames` or `groups`."""
    got = _query(
        conn,
        """SELECT project, access FROM rpacs.project_member
            WHERE (kind = 'user' AND principal = ANY(%s)) OR (kind = 'group' AND principal = ANY(%s))""",
        (list(usernames), list(groups)),
    )
    return [(r["project"], r["access"]) for r in got]


# ----- studies


def studies(conn, name: str) -> Rows:
    """The project's studies, newest first: date, description, modalities, series and instance counts (from the
    census when it knows the study, else what the upload saw), whether the dose record exists, how and by whom
    each was added. Named by StudyInstanceUID only."""
    return _query(
        conn,
        """SELECT ps.study_instance_uid,
                  coalesce(r.study_date, ps.study_date) AS study_date,
                  coalesce(nullif(r.description, ''), ps.description) AS description,
                  array_to_string(coalesce(r.modalities_corrected, nullif(r.modalities_found, '{}'),
                                           ps.modalities), '/') AS modalities,
                  coalesce(r.series_count, ps.series_count) AS series_count,
                  coalesce(r.instance_count, ps.instance_count) AS instance_count,
                  r.study_uid IS NOT NULL AS in_census, r.retrieval_state,
                  d.study_instance_uid IS NOT NULL AS dose_record,
                  ps.how, ps.added_by, ps.added_at
             FROM rpacs.project_study ps
             LEFT JOIN rpacs.study r ON r.study_uid = ps.study_instance_uid
             LEFT JOIN dose.study d ON d.study_instance_uid = ps.study_instance_uid
            WHERE ps.project = %s
            ORDER BY coalesce(r.study_date, ps.study_date) DESC NULLS LAST, ps.study_instance_uid""",
        (name,),
    )


def has_study(conn, name: str, uid: str) -> bool:
    return bool(
        _query(
            conn,
            "SELECT 1 FROM rpacs.project_study WHERE project = %s AND study_instance_uid = %s",
            (name, uid),
        )
    )


def add_studies(
    conn, name: str, uids: Iterable[str], by: str, how: str, fields: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Add the studies (`how`: uid, accession, description, csv, upload); the ones already there are left as
    they are. `fields`: per UID what its files said (study_date, description, modalities, series_count,
    instance_count: an upload), kept for a study the census lacks; an upload adds to the counts of a study
    already in the project. Returns {"added", "already", "not_in_census", "study_instance_uids"}."""
    get(conn, name)  # 404 for an unknown project
    wanted = list(dict.fromkeys(uids))
    bad = [u for u in wanted if not is_uid(u)]
    if bad:
        raise ProjectError(400, f"not a StudyInstanceUID: {bad[0][:80]!r}")
    fields = fields or {}
    added: list[str] = []
    with conn, conn.cursor() as cur:
        for uid in wanted:
            f = fields.get(uid, {})
            cur.execute(
                """INSERT INTO rpacs.project_study (project, study_instance_uid, added_by, how, study_date,
                       description, modalities, series_count, instance_count)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (project, study_instance_uid) DO NOTHING RETURNING study_instance_uid""",
                (name, uid, by, how, f.get("study_date"), f.get("description"), f.get("modalities"),
                 f.get("series_count"), f.get("instance_count")),
            )  # fmt: skip
            if cur.fetchone() is not None:
                added.append(uid)
            elif f:  # an upload of more files of a study already there: the counts it saw grow
                cur.execute(
                    """UPDATE rpacs.project_study SET
                           instance_count = coalesce(instance_count, 0) + %s,
                           modalities = (SELECT array_agg(DISTINCT m ORDER BY m)
                                           FROM unnest(coalesce(modalities, '{}') || %s::text[]) m),
                           series_count = greatest(coalesce(series_count, 0), %s)
                     WHERE project = %s AND study_instance_uid = %s""",
                    (f.get("instance_count") or 0, f.get("modalities") or [], f.get("series_count") or 0,
                     name, uid),
                )  # fmt: skip
        cur.execute("SELECT study_uid FROM rpacs.study WHERE study_uid = ANY(%s)", (wanted,))
        known = {r[0] for r in cur.fetchall()}
    return {
        "added": len(added),
        "already": len(wanted) - len(added),
        "not_in_census": [u for u in wanted if u not in known],
        "study_instance_uids": wanted,
    }


def remove_study(conn, name: str, uid: str) -> bool:
    """Take the study out of the project (its files stay in the research PACS); False when it was not there."""
    get(conn, name)
    with conn, conn.cursor() as cur:
        cur.execute(
            "DELETE FROM rpacs.project_study WHERE project = %s AND study_instance_uid = %s", (name, uid)
        )
        return cur.rowcount > 0


def uids_of_accessions(conn, accessions: Sequence[str]) -> tuple[list[str], list[str]]:
    """(StudyInstanceUIDs of the census with these accession numbers, accession numbers it does not know)."""
    got = _query(
        conn,
        "SELECT accession_number, study_uid FROM rpacs.study WHERE accession_number = ANY(%s) ORDER BY 1, 2",
        (list(accessions),),
    )
    found = {r["accession_number"] for r in got}
    return [r["study_uid"] for r in got], [a for a in accessions if a not in found]


def uids_of_description(
    conn, pattern: str, *, year: int | None = None, state: str | None = None, modality: str | None = None
) -> list[str]:
    """StudyInstanceUIDs of the census whose description holds `pattern` (any case, wildcards literal), in
    `year`, with retrieval `state` (`done`, `pending`, …), with `modality` among their modalities."""
    if not pattern.strip() or len(pattern) > 256:
        raise ProjectError(400, "a description filter is 1 to 256 characters")
    like = "%" + pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    lo = dt.date(year, 1, 1) if year else None
    hi = dt.date(year + 1, 1, 1) if year else None
    got = _query(
        conn,
        """SELECT study_uid FROM rpacs.study
            WHERE description ILIKE %(like)s
              AND (%(lo)s::date IS NULL OR (study_date >= %(lo)s AND study_date < %(hi)s))
              AND (%(state)s::text IS NULL OR retrieval_state = %(state)s)
              AND (%(modality)s::text IS NULL
                   OR %(modality)s = ANY(coalesce(modalities_corrected, modalities_found)))
            ORDER BY study_date NULLS LAST, study_uid
            LIMIT %(limit)s""",
        {
            "like": like,
            "lo": lo,
            "hi": hi,
            "state": state,
            "modality": modality,
            "limit": MAX_FILTER_STUDIES + 1,
        },
    )
    if len(got) > MAX_FILTER_STUDIES:
        raise ProjectError(
            413, f"the filter finds more than {MAX_FILTER_STUDIES} studies: narrow it (a year)"
        )
    return [r["study_uid"] for r in got]


# ----- members


def members(conn, name: str) -> Rows:
    get(conn, name)
    return _query(
        conn,
        """SELECT kind, principal, access, added_by, added_at FROM rpacs.project_member
            WHERE project = %s ORDER BY kind, principal""",
        (name,),
    )


def set_member(conn, name: str, kind: str, principal: str, access: str, by: str) -> None:
    """Name a user or group a member with `access` (replacing an earlier access)."""
    get(conn, name)
    if kind not in ("user", "group") or access not in ("read", "write"):
        raise ProjectError(400, "a member is a user or a group, with read or write access")
    principal = principal.strip()
    if not principal or len(principal) > 256:
        raise ProjectError(400, "a member's name is 1 to 256 characters")
    if kind == "group" and not principal.startswith("/"):
        principal = "/" + principal
    with conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO rpacs.project_member (project, kind, principal, access, added_by)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (project, kind, principal) DO UPDATE SET access = EXCLUDED.access""",
            (name, kind, principal, access, by),
        )


def remove_member(conn, name: str, kind: str, principal: str) -> bool:
    get(conn, name)
    if kind == "group" and not principal.startswith("/"):
        principal = "/" + principal
    with conn, conn.cursor() as cur:
        cur.execute(
            "DELETE FROM rpacs.project_member WHERE project = %s AND kind = %s AND principal = %s",
            (name, kind, principal),
        )
        return cur.rowcount > 0
