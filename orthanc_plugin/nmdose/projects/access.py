"""Who may read or write which research project.

A user's access to project `<name>` comes from, in this order:
1. the permission `project:admin` (nmdose role `admin`; in dev mode every caller has it): every project, read and
   write, and creating projects and naming their members;
2. the token: a realm role `project:<name>:read` or `project:<name>:write`, or a group path (`groups_claim`,
   default `groups`) `/projects/<name>` (read) or `/projects/<name>/write` (read and write);
3. the explicit members of the project (`rpacs.project_member`): a user by `preferred_username` or `sub`, or a
   group path, with `read` or `write`.
Write includes read. A project the user cannot read is answered 404 to listing calls and 403 to calls naming it,
so a user sees only their own projects in the list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nmdose.projects.names import ProjectError

ADMIN = "project:admin"
READ, WRITE = "read", "write"
_ROLE_RE = re.compile(r"^project:([a-z0-9][a-z0-9_-]{1,62}):(read|write)$")
_GROUP_RE = re.compile(r"^/?projects/([a-z0-9][a-z0-9_-]{1,62})(?:/(write|read))?$")


@dataclass(frozen=True)
class Access:
    """What one user may do: `admin` (everything), else the access per project name (`read` or `write`)."""

    username: str
    admin: bool = False
    projects: dict[str, str] = field(default_factory=dict)

    def can(self, name: str, wanted: str = READ) -> bool:
        if self.admin:
            return True
        got = self.projects.get(name)
        return got == WRITE or (got == READ and wanted == READ)

    def check(self, name: str, wanted: str = READ) -> None:
        """ProjectError 403 unless the user may `wanted` the project `name`."""
        if not self.can(name, wanted):
            raise ProjectError(403, f"user {self.username} may not {wanted} project {name}")


def _grant(out: dict[str, str], name: str, access: str) -> None:
    if out.get(name) != WRITE:
        out[name] = access


def token_access(user: Any) -> dict[str, str]:
    """Project -> access from the user's realm roles and group paths (none for a user without a token)."""
    out: dict[str, str] = {}
    for role in getattr(user, "realm_roles", ()) or ():
        m = _ROLE_RE.match(role)
        if m:
            _grant(out, m.group(1), m.group(2))
    for group in getattr(user, "groups", ()) or ():
        m = _GROUP_RE.match(group)
        if m:
            _grant(out, m.group(1), WRITE if m.group(2) == "write" else READ)
    return out


def principals(user: Any) -> tuple[list[str], list[str]]:
    """(user names, group paths) the explicit members of a project are matched against."""
    names = [n for n in (getattr(user, "username", None), getattr(user, "subject", None)) if n]
    groups = [g if g.startswith("/") else "/" + g for g in getattr(user, "groups", ()) or ()]
    return names, groups


def access_of(user: Any, member_rows: Iterable[tuple[str, str]] = ()) -> Access:
    """The user's access: `member_rows` are (project, access) of the explicit memberships that name the user or
    one of their groups (store.member_access)."""
    username = str(getattr(user, "username", None) or "anonymous")
    if user is None:  # no authenticator at all (a router built without one: tests, the CLI): local use
        return Access("local", admin=True)
    if ADMIN in (getattr(user, "permissions", None) or ()):
        return Access(username, admin=True)
    projects = token_access(user)
    for name, access in member_rows:
        _grant(projects, name, access)
    return Access(username, projects=projects)
