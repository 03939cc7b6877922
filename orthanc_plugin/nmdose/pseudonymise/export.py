"""Write the pseudonymised copies of studies into the pseudoPACS node or a folder (deid does the changes).

For each study: find it in the research PACS (``/tools/find``; one StudyInstanceUID may exist under two
PatientIDs: each is copied under its own pseudonym), then per instance ask Orthanc for the anonymized file
(``POST /instances/{id}/anonymize``, nothing stored in the research PACS), apply nmdose's keyed changes and store
the result: ``POST /instances`` on the pseudoPACS (``AlreadyStored`` on a re-run: nothing twice), or a file
``<folder>/<pseudonym>/<copy study UID>/<copy SOP UID>.dcm`` written to a temporary name and renamed.

A row per study in rpacs.pseudonymised_copy (running → done | failed) and one audit row per run naming every
study read. A study that fails (gone from the research PACS, an instance Orthanc refuses) is marked failed with
the reason and the others go on; a crash leaves `running` rows that the next run redoes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nmdose.errors import ConfigError, PacsError
from nmdose.pseudonymise import deid

if TYPE_CHECKING:
    from nmdose.config import Config

log = logging.getLogger(__name__)
NODE = "pseudoPACS"
WORKERS = 4  # instances in flight: Orthanc's anonymization overlaps nmdose's pass and the store
DEFAULT_OPTIONS = deid.Options()


@dataclass
class StudyOutcome:
    study_instance_uid: str
    state: str = "done"
    pseudonyms: list[str] = field(default_factory=list)
    copy_study_uids: list[str] = field(default_factory=list)
    instances: int = 0
    stored: int = 0
    already_stored: int = 0
    error: str | None = None


def project_studies(cfg: Config, project: str) -> list[str]:
    """The StudyInstanceUIDs of a research project (rpacs.project_study), oldest first; an unknown project is
    an error."""
    from nmdose.db import connect

    with contextlib.closing(connect(cfg, role="worker")) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM rpacs.project WHERE name = %s", (project,))
        if cur.fetchone() is None:
            raise ConfigError(f"no research project named {project!r} (nmdose project list)")
        cur.execute(
            "SELECT study_instance_uid FROM rpacs.project_study WHERE project = %s ORDER BY added_at, 1",
            (project,),
        )
        return [r[0] for r in cur.fetchall()]


class _PerThread:
    """One client per thread (a requests.Session is not shared between threads)."""

    def __init__(self, make):
        self._make = make
        self._local = threading.local()

    def get(self):
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._make()
        return client


class _Target:
    name: str

    def store(self, data: bytes, facts: dict[str, str]) -> bool:  # True: written now, False: had it already
        raise NotImplementedError


class _NodeTarget(_Target):
    def __init__(self, cfg: Config, node: str):
        from nmdose.pacs.orthanc_http import OrthancHttp

        if node not in cfg.nodes:
            raise ConfigError(
                f"{cfg.config_dir / 'dicom_network_entities.yaml'}: nodes.{node}: not configured "
                "(expected an Orthanc node with an http_port for the pseudonymised copies)"
            )
        self.name = node
        self.rest = _PerThread(lambda: OrthancHttp.for_node(cfg, node))

    def store(self, data: bytes, facts: dict[str, str]) -> bool:
        answer = self.rest.get().request("POST", "/instances", data=data).json()
        return answer.get("Status") != "AlreadyStored"


class _FolderTarget(_Target):
    def __init__(self, folder: Path):
        self.folder = folder.resolve()
        self.name = f"folder:{self.folder}"
        self.folder.mkdir(parents=True, exist_ok=True)

    def store(self, data: bytes, facts: dict[str, str]) -> bool:
        path = (
            self.folder
            / facts["pseudonym"]
            / facts["study_instance_uid"]
            / f"{facts['sop_instance_uid']}.dcm"
        )
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return True


def _mark(cfg: Config, project: str, outcome: StudyOutcome, target: str, options: deid.Options) -> None:
    from nmdose.db import connect

    with contextlib.closing(connect(cfg, role="worker")) as conn, conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO rpacs.pseudonymised_copy AS c (project, study_instance_uid, target, pseudonym,
                   copy_study_uid, dates, keep_dose, state, instances, stored, already_stored, error, started_at,
                   finished_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now(),
                       CASE WHEN %s = 'running' THEN NULL ELSE now() END)
               ON CONFLICT (project, study_instance_uid, target) DO UPDATE SET
                   pseudonym = EXCLUDED.pseudonym, copy_study_uid = EXCLUDED.copy_study_uid,
                   dates = EXCLUDED.dates, keep_dose = EXCLUDED.keep_dose, state = EXCLUDED.state,
                   instances = EXCLUDED.instances, stored = EXCLUDED.stored,
                   already_stored = EXCLUDED.already_stored, error = EXCLUDED.error,
                   started_at = CASE WHEN EXCLUDED.state = 'running' THEN now() ELSE c.started_at END,
                   finished_at = EXCLUDED.finished_at""",
            (project, outcome.study_instance_uid, target, ",".join(outcome.pseudonyms) or None,
             ",".join(outcome.copy_study_uids) or None, options.dates, options.keep_dose, outcome.state,
             outcome.instances, outcome.stored, outcome.already_stored, outcome.error, outcome.state),
        )  # fmt: skip


def _copy_study(research: _PerThread, target: _Target, key: bytes, uid: str, options: deid.Options,
                pool: ThreadPoolExecutor) -> StudyOutcome:  # fmt: skip
    outcome = StudyOutcome(uid)
    found = research.get().post(
        "/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": uid}, "Expand": True}
    )
    if not found:
        outcome.state, outcome.error = "failed", "the research PACS does not hold this study"
        return outcome
    for study in found:
        patient_id = (study.get("PatientMainDicomTags") or {}).get("PatientID", "")
        alias = deid.pseudonym(key, patient_id)
        request = deid.anonymize_request(alias, options)

        def one(instance_id: str, request=request, patient_id=patient_id) -> tuple[bool, str]:
            # Orthanc anonymizes on one of its HTTP threads while this process transforms another instance
            data = (
                research.get()
                .request("POST", f"/instances/{instance_id}/anonymize", json_body=request)
                .content
            )
            out, facts = deid.transform(data, key, patient_id, options)
            return target.store(out, facts), facts["study_instance_uid"]

        copy_uids = set()
        ids = [i["ID"] for i in research.get().get(f"/studies/{study['ID']}/instances")]
        for stored, copy_uid in pool.map(one, ids):
            copy_uids.add(copy_uid)
            outcome.instances += 1
            if stored:
                outcome.stored += 1
            else:
                outcome.already_stored += 1
        outcome.pseudonyms.append(alias)
        outcome.copy_study_uids.extend(sorted(copy_uids))
    return outcome


def export(
    cfg: Config,
    project: str,
    study_uids: list[str],
    *,
    folder: Path | None = None,
    node: str = NODE,
    options: deid.Options = DEFAULT_OPTIONS,
    requested_by: str | None = None,
    workers: int = WORKERS,
) -> list[StudyOutcome]:
    """Copy `study_uids` of `project` (pseudonymised) into `folder`, else into the node `node`; `workers`
    instances of a study at once."""
    from nmdose.audit.actions import record_action
    from nmdose.pacs.orthanc_http import OrthancHttp
    from nmdose.secrets import pseudonym_key

    key = deid.project_key(pseudonym_key(cfg), project)
    target: _Target = _FolderTarget(folder) if folder is not None else _NodeTarget(cfg, node)
    research = _PerThread(lambda: OrthancHttp.for_node(cfg, cfg.research_node.name))
    outcomes: list[StudyOutcome] = []
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="nmdose-pseudonymise")
    try:
        for uid in dict.fromkeys(study_uids):
            _mark(cfg, project, StudyOutcome(uid, state="running"), target.name, options)
            try:
                outcome = _copy_study(research, target, key, uid, options, pool)
            except (PacsError, OSError, ValueError) as exc:
                outcome = StudyOutcome(uid, state="failed", error=str(exc)[:500])
            _mark(cfg, project, outcome, target.name, options)
            log.info("pseudonymised copy of %s: %s (%d instances, %d stored)", uid, outcome.state,
                     outcome.instances, outcome.stored)  # fmt: skip
            outcomes.append(outcome)
    finally:
        pool.shutdown(wait=True)
        record_action(
            cfg,
            "pseudonymise",
            study_uids=[o.study_instance_uid for o in outcomes],
            params={"project": project, "target": target.name, "dates": options.dates,
                    "keep_dose": options.keep_dose, "requested_by": requested_by},
            rows=sum(o.instances for o in outcomes),
            status=0 if all(o.state == "done" for o in outcomes) else 1,
        )  # fmt: skip
    return outcomes


def reidentify(cfg: Config, project: str, alias: str) -> list[dict[str, Any]]:
    """The research PACS's (PatientID, study) pairs of the project's studies whose pseudonym is `alias`: the
    pseudonym recomputed from each study's PatientID under the project key (no table holds the pairs). The caller
    checks who may ask and records the audit row."""
    from nmdose.pacs.orthanc_http import OrthancHttp
    from nmdose.secrets import pseudonym_key

    key = deid.project_key(pseudonym_key(cfg), project)
    research = OrthancHttp.for_node(cfg, cfg.research_node.name)
    found = []
    for uid in project_studies(cfg, project):
        for study in research.post("/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": uid},
                                                   "Expand": True}):  # fmt: skip
            pid = (study.get("PatientMainDicomTags") or {}).get("PatientID", "")
            if deid.pseudonym(key, pid) == alias:
                found.append({"patient_id": pid, "study_instance_uid": uid})
    return found


def copies(cfg: Config, project: str) -> list[dict[str, Any]]:
    """The project's rows of rpacs.pseudonymised_copy."""
    from nmdose.db import connect

    with contextlib.closing(connect(cfg, role="worker")) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT study_instance_uid, target, pseudonym, copy_study_uid, dates, keep_dose, state, instances,
                      stored, already_stored, error, started_at, finished_at
                 FROM rpacs.pseudonymised_copy WHERE project = %s ORDER BY started_at, study_instance_uid""",
            (project,),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
