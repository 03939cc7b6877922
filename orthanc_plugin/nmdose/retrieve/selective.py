"""The `selective` transfer, a retrieve strategy (`transfer.strategy: selective`, and `nmdose forward selective`
by hand): move only the dose objects and one image per series from the source PACS.

Series- and instance-level C-FIND on the source (through the research Orthanc's REST API) give the facts
(SOP class, InstanceNumber, ImageType); the same rules as forwarding choose the instances
(:func:`nmdose.forward.select.select_study`), with two differences a C-FIND forces: an Enhanced/Comprehensive SR
counts as a dose object (its document title is not a C-FIND answer) and a PT/NM sample is the first image by
InstanceNumber (the Radiopharmaceutical Information Sequence is not either). Then one instance-level C-MOVE per
series with the chosen SOPInstanceUIDs, to the dose PACS (move destination its AE, e.g. NMDOSE) or to the
research PACS (`transfer.selective_destination`), where the stable-study forwarding sends them on.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from nmdose.config import Config, Node
from nmdose.db import connect
from nmdose.errors import PacsError
from nmdose.forward import runner, sender
from nmdose.forward.select import InstanceFacts, Selected, SeriesFacts, no_details, select_study
from nmdose.pacs.orthanc_http import OrthancHttp


@dataclass
class SelectiveResult:
    study_uid: str
    ok: bool
    destination: str  # node name
    announced_instances: int = 0
    selected: list[Selected] = field(default_factory=list)
    bytes_moved: int | None = None  # measured where the destination has a REST API
    seconds: float = 0.0
    error: str | None = None

    @property
    def selected_instances(self) -> int:
        return len(self.selected)


def _int(value) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _find(rest: OrthancHttp, source: Node, level: str, query: dict) -> list[dict]:
    q = rest.post(f"/modalities/{source.name}/query", {"Level": level, "Query": query, "Normalize": False})
    try:
        return rest.get(f"/queries/{q['ID']}/answers", params={"expand": "", "simplify": ""})
    finally:
        with contextlib.suppress(PacsError):
            rest.delete(f"/queries/{q['ID']}")


def source_facts(rest: OrthancHttp, source: Node, study_uid: str) -> list[SeriesFacts]:
    """The study's series and instances as the source announces them (C-FIND, series then instance level)."""
    result = []
    for s in _find(
        rest,
        source,
        "Series",
        {
            "StudyInstanceUID": study_uid,
            "SeriesInstanceUID": "",
            "Modality": "",
            "SeriesDescription": "",
            "SeriesNumber": "",
            "NumberOfSeriesRelatedInstances": "",
        },
    ):
        series_uid = s["SeriesInstanceUID"]
        answers = _find(
            rest,
            source,
            "Instance",
            {
                "StudyInstanceUID": study_uid,
                "SeriesInstanceUID": series_uid,
                "SOPInstanceUID": "",
                "SOPClassUID": "",
                "InstanceNumber": "",
                "ImageType": "",
            },
        )
        instances = [
            InstanceFacts(
                a["SOPInstanceUID"],
                a["SOPInstanceUID"],
                a.get("SOPClassUID") or None,
                _int(a.get("InstanceNumber")),
                None,
                tuple(v for v in (a.get("ImageType") or "").split("\\") if v) or None,
            )
            for a in answers
            if a.get("SOPInstanceUID")
        ]
        result.append(
            SeriesFacts(
                series_uid,
                series_uid,
                (s.get("Modality") or "").upper(),
                s.get("SeriesDescription") or "",
                instances,
                _int(s.get("SeriesNumber")),
            )
        )
    result.sort(key=lambda s: (s.number is None, s.number or 0, s.series_instance_uid))
    return result


def _sizes(node: Node, sop_uids: list[str]) -> int | None:
    """Bytes the destination holds for these SOP instances (None: it has no REST API to ask)."""
    if not node.http_url:
        return None
    rest = OrthancHttp(node.http_url, name=node.name, timeout_s=60)
    total = 0
    for uid in sop_uids:
        ids = rest.post("/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": uid}})
        for orthanc_id in ids:
            total += int(rest.get(f"/instances/{orthanc_id}/statistics")["DiskSize"])
    return total


def retrieve_selected(
    cfg: Config,
    rest: OrthancHttp,
    source: Node,
    study_uid: str,
    *,
    destination: str | None = None,
    record: bool = True,
    timeout_s: float = 3600,
) -> SelectiveResult:
    """C-MOVE only the selected instances of one study from `source` to the dose or the research PACS.

    `rest` is the research Orthanc's REST API (it drives the C-FIND / C-MOVE). Never raises for a DICOM failure:
    the result says `ok` and `error` (the retrieval turns that into a retry)."""
    started = time.monotonic()
    dest_name = destination or cfg.retrieve.transfer.selective_destination
    dest = cfg.nodes[dest_name]
    result = SelectiveResult(study_uid, False, dest_name)
    try:
        series = source_facts(rest, source, study_uid)
        result.announced_instances = sum(len(s.instances) for s in series)
        if not series:
            result.error = f"{source.name} has no study {study_uid}"
            return result
        result.selected = select_study(series, no_details, unknown_title_is_dose=True)
        by_series: dict[str, list[str]] = {}
        for item in result.selected:
            by_series.setdefault(item.series_instance_uid, []).append(item.instance.sop_instance_uid)
        for series_uid, sop_uids in by_series.items():
            q = rest.post(
                f"/modalities/{source.name}/query",
                {
                    "Level": "Instance",
                    "Normalize": False,
                    "Query": {
                        "StudyInstanceUID": study_uid,
                        "SeriesInstanceUID": series_uid,
                        "SOPInstanceUID": "\\".join(sop_uids),
                    },
                },
            )
            try:
                job = rest.post(f"/queries/{q['ID']}/retrieve", {"TargetAet": dest.aet, "Synchronous": False})
                moved = sender.follow(rest, job["ID"], timeout_s=timeout_s, what=f"C-MOVE to {dest.aet}")
            finally:
                with contextlib.suppress(PacsError):
                    rest.delete(f"/queries/{q['ID']}")
            if not moved.ok:
                result.error = moved.error
                return result
        with contextlib.suppress(PacsError):
            result.bytes_moved = _sizes(dest, [s.instance.sop_instance_uid for s in result.selected])
        result.ok = True
        return result
    except PacsError as exc:
        result.error = str(exc)
        return result
    finally:
        result.seconds = time.monotonic() - started
        if record:
            _record(cfg, source, result)


def _record(cfg: Config, source: Node, result: SelectiveResult) -> None:
    with contextlib.closing(connect(cfg)) as conn:
        with conn.cursor() as cur:
            cur.execute(
                """INSERT INTO rpacs.selective_move (study_instance_uid, source_node, destination, ok,
                          announced_instances, selected_instances, bytes_moved, seconds, error)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    result.study_uid,
                    source.name,
                    result.destination,
                    result.ok,
                    result.announced_instances,
                    result.selected_instances,
                    result.bytes_moved,
                    result.seconds,
                    result.error,
                ),
            )
        conn.commit()
        if result.ok and result.destination == cfg.dose_node.name:
            # straight to the dose PACS: these count as forwarded (never sent again by the forward stage)
            runner.record(conn, result.study_uid, result.destination, result.selected, "sent", via="c-move")
            with conn.cursor() as cur:
                cur.execute(
                    """INSERT INTO rpacs.forward_study (study_instance_uid, destination, state, trigger, selected,
                              dose_objects, sample_images, sent, stable_at, started_at, finished_at)
                       VALUES (%s, %s, 'done', 'selective', %s, %s, %s, %s, now(), now(), now())
                       ON CONFLICT (study_instance_uid) DO UPDATE SET state = 'done', trigger = 'selective',
                              sent = EXCLUDED.sent, finished_at = now(), updated_at = now()""",
                    (
                        result.study_uid,
                        result.destination,
                        result.selected_instances,
                        sum(s.role != "sample_image" for s in result.selected),
                        sum(s.role == "sample_image" for s in result.selected),
                        result.selected_instances,
                    ),
                )
            conn.commit()
