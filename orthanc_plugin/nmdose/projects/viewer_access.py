"""Whether a user may read studies through a research project: the gate's rule for the OHIF viewer's DICOMweb
reads by project members who lack ``images:read`` (web/gate.py, docs/projects.md).

The gate asks for every request the viewer makes (one per frame), so answers are cached per user and study for
`TTL_S` seconds (a membership removed is honoured at the latest then). The database is asked on one connection of
the worker role, guarded by a lock; a database that does not answer refuses (fail closed).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from nmdose.projects import store
from nmdose.projects.access import READ

if TYPE_CHECKING:
    from nmdose.config import Config

log = logging.getLogger(__name__)
TTL_S = 30.0
MAX_ENTRIES = 20_000


def _user_key(user: Any) -> tuple:
    return (
        getattr(user, "username", None),
        getattr(user, "subject", None),
        tuple(sorted(getattr(user, "realm_roles", ()) or ())),
        tuple(sorted(getattr(user, "groups", ()) or ())),
        tuple(sorted(getattr(user, "permissions", ()) or ())),
    )


class ProjectStudyAccess:
    def __init__(self, cfg: Config, *, ttl_s: float = TTL_S, connect=None):
        from nmdose.db import connect as db_connect

        self._connect = connect or (lambda: db_connect(cfg, role="worker"))
        self._conn = None
        self._lock = threading.Lock()
        self._cache: dict[tuple, tuple[float, bool]] = {}
        self.ttl_s = ttl_s

    def __call__(self, user: Any, study_uids: list[str]) -> bool:
        """True when `user` may read every study of `study_uids` through one of their projects."""
        key = _user_key(user)
        now = time.monotonic()
        todo = [u for u in study_uids if (hit := self._cache.get((key, u))) is None or hit[0] < now]
        if todo:
            try:
                allowed = self._ask(user, todo)
            except Exception:  # noqa: BLE001 - fail closed, the viewer gets 403 and the log says why
                log.exception("project access check failed; refused")
                return False
            if len(self._cache) > MAX_ENTRIES:
                self._cache.clear()
            for uid in todo:
                self._cache[(key, uid)] = (now + self.ttl_s, uid in allowed)
        return all(self._cache[(key, u)][1] for u in study_uids)

    def _ask(self, user: Any, uids: list[str]) -> set[str]:
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            try:
                access = store.user_access(self._conn, user)
                with self._conn.cursor() as cur:
                    cur.execute(
                        "SELECT study_instance_uid, project FROM rpacs.project_study"
                        " WHERE study_instance_uid = ANY(%s)",
                        (uids,),
                    )
                    rows = cur.fetchall()
                self._conn.commit()
            except Exception:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
                raise
        return {uid for uid, project in rows if access.can(project, READ)}
