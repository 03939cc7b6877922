"""The DICOM security profile: which peer may ask which service of each node we run, in one place.

Every generated Orthanc (research PACS, dose-PACS stand-in, simulation PACS, and the production container, which
runs the same generator) checks the called AE title and the calling peer's host, admits C-ECHO from anyone and
nothing else from anyone it does not know. Each registered peer gets exactly what the pipeline needs of that node:

- the source PACS may C-STORE into the research PACS (the sub-operations of our C-MOVEs);
- the research PACS may C-FIND and C-MOVE on the source PACS (census, retrieval), and C-STORE and C-FIND on the
  dose PACS (forwarding, and checking what it holds);
- nmdose's own DCMTK tools (``local_aet``) may C-FIND and C-MOVE on the source PACS (the DCMTK backends);
  on the simulation PACS also C-STORE (``nmdose simulate`` fills it);
- with ``transfer.selective_destination: dosePACS`` (the default; the selective transfer moves dose objects
  straight from the source), the source PACS may C-STORE into the dose PACS, which it knows as a C-MOVE
  destination;
- with ``import.yaml: enabled``, the watch-folder importer (``import.yaml: aet``, from ``host`` or
  ``local_host``) may C-STORE into the research PACS (a dropped CD may hold dose reports: the plugin's C-STORE
  filter lets it store them);
- a peer that is only a C-MOVE destination (or only called) is registered with no service at all;
- ``allow:`` entries of a node add the peers a site needs beyond the pipeline (a scanner sending RDSRs).

docs/security.md prints this as a table (``nmdose security profile`` prints the live one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nmdose import sop_classes

if TYPE_CHECKING:
    from nmdose.config import Config

SCU_NAME = "nmdose"  # the DicomModalities name of nmdose's own DCMTK tools (AE title: local_aet)
IMPORT_NAME = "nmdose-import"  # the watch-folder importer's (AE title: import.yaml aet), when it is enabled
SERVICES = ("find", "move", "get", "store")
_ORTHANC_ALLOW = {"find": "AllowFind", "move": "AllowMove", "get": "AllowGet", "store": "AllowStore"}
# What the security profile fixes in every Orthanc it generates (node `orthanc_settings` may not loosen these in
# prod; see nmdose.security.policy).
LOCKED_SETTINGS: dict[str, bool] = {
    "DicomCheckCalledAet": True,
    "DicomCheckModalityHost": True,
    "DicomAlwaysAllowEcho": True,
    "DicomAlwaysAllowFind": False,
    "DicomAlwaysAllowGet": False,
    "DicomAlwaysAllowMove": False,
    "DicomAlwaysAllowStore": False,
    "DicomModalitiesInDatabase": False,
}


_LAST_FACT_TAG = 0x00080060  # Modality; SOP Class UID (0008,0016) comes before it


def header_facts(data: bytes) -> tuple[str, str] | None:
    """(SOP class UID, modality) from a DICOM file's first elements, or None when no SOP class is read. Stops
    at Modality (0008,0060), so an SR's content tree (0040,A730) is never read, however deep (Orthanc's own
    JSON of a 3,000-level SR is ~190 MB and too deep for `json.loads`)."""
    import io

    from pydicom.filereader import read_partial

    try:
        ds = read_partial(
            io.BytesIO(data), stop_when=lambda tag, vr, length: tag > _LAST_FACT_TAG, force=True
        )
        sop_class = str(ds.get("SOPClassUID", "") or "")
        if not sop_class:  # a file without it in the dataset: what its file meta says
            sop_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
        if not sop_class:  # not read (or absent): unknown
            return None
        return sop_class, str(ds.get("Modality", "") or "")
    except Exception:  # noqa: BLE001 - any unreadable header is "unknown": the caller decides
        return None


# What the dose hooks hand to the dose parser (the same rule as dose/standin_hook.py and
# conquest/lua/nmdose_import.lua): every SR, PET, NM and secondary capture. Such objects from a peer that may not
# C-STORE into the node are refused by the plugin's and the hooks' own filters. The classes and the rule live in
# nmdose.sop_classes (DOSE_CANDIDATE_CLASSES, is_dose_candidate); re-exported here for the plugin and the hooks.
is_dose_candidate = sop_classes.is_dose_candidate


@dataclass(frozen=True)
class Peer:
    """A peer registered on one node: who it is, where it is, what it may ask of the node, and why."""

    name: str  # key in Orthanc's DicomModalities
    aet: str
    host: str
    port: int | None  # where the node reaches it (outgoing calls, C-MOVE destination); None: never called
    tls: bool  # the peer's DICOM port speaks TLS (outgoing associations use it)
    services: tuple[str, ...]  # what it may ask of the node (C-ECHO is open to all)
    why: str


def _selective_to_dose(cfg: Config) -> bool:
    """The selective transfer moves straight from the source into the dose PACS: the strategy `selective`, or
    `nmdose forward selective` run by hand with any strategy (set `selective_destination: researchPACS` to
    route it through the research PACS and drop these two grants)."""
    return cfg.retrieve.transfer.selective_destination == cfg.dose_node.name


def peers(cfg: Config, name: str) -> list[Peer]:
    """The peers node `name` registers, with what each may ask of it."""
    nodes = cfg.active_nodes()
    source, research, dose = cfg.source_node.name, cfg.research_node.name, cfg.dose_node.name
    result: list[Peer] = []

    def add(peer_name: str, services: tuple[str, ...], why: str, *, called: bool = True) -> None:
        node = nodes[peer_name]
        result.append(
            Peer(peer_name, node.aet, node.host, node.port if called else None, node.tls, services, why)
        )

    def add_scu(services: tuple[str, ...], why: str) -> None:
        result.append(Peer(SCU_NAME, cfg.local_aet, cfg.local_host, None, False, services, why))

    if name == research:
        add(source, ("store",), "source PACS: C-STOREs the studies we C-MOVE; we C-FIND/C-MOVE on it")
        add(dose, (), "dose PACS: we C-STORE dose objects and samples and C-FIND what it holds")
        if cfg.imports.enabled:
            result.append(Peer(IMPORT_NAME, cfg.imports.aet, cfg.imports.host or cfg.local_host, None, False,
                               ("store",), "watch-folder import: C-STOREs dropped folders"))  # fmt: skip
    elif name == source:
        add(
            research,
            ("find", "move"),
            "research PACS: census C-FIND, retrieval C-MOVE (and their destination)",
        )
        if _selective_to_dose(cfg):
            add(dose, (), "dose PACS: C-MOVE destination of the selective transfer")
        scu = ("find", "move", "store") if name == "simulationPACS" else ("find", "move")
        add_scu(
            scu, "nmdose's DCMTK tools: findscu/movescu backends" + (", `nmdose simulate`" * (len(scu) == 3))
        )
    elif name == dose:
        add(
            research,
            ("find", "store"),
            "research PACS: forwards dose objects and samples, checks what is held",
        )
        if _selective_to_dose(cfg):
            add(source, ("store",), "source PACS: C-STOREs the selective transfer's dose objects "
                "(selective_destination: researchPACS avoids it)")  # fmt: skip
    node = cfg.nodes[name]
    for grant in node.allow:
        result.append(
            Peer(modality_name(f"allow-{grant.aet}-{grant.host}"), grant.aet, grant.host, grant.port, grant.tls,
                 tuple(s for s in SERVICES if s in grant.services), "site peer (allow: in the node's config)")
        )  # fmt: skip
    return result


def modality_name(text: str) -> str:
    """`text` as an Orthanc modality name: Orthanc 1.10 refuses to start on any other character than letters,
    digits, '-' and '_' ("Only alphanumeric, dash characters and underscores are allowed in the names of
    modalities"), so the dots of an IP address (`allow-CT1-10.0.0.5`) and of host names become '_'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def store_senders(cfg: Config, name: str) -> dict[str, set[str]]:
    """AE title -> hosts allowed to C-STORE into node `name` (the plugin's and the Lua hooks' own check)."""
    senders: dict[str, set[str]] = {}
    for peer in peers(cfg, name):
        if "store" in peer.services:
            senders.setdefault(peer.aet, set()).add(peer.host)
    return senders


def orthanc_modalities(cfg: Config, name: str) -> dict[str, dict[str, Any]]:
    """Orthanc's DicomModalities for node `name`: every peer with its exact permissions."""
    modalities: dict[str, dict[str, Any]] = {}
    for peer in peers(cfg, name):
        entry: dict[str, Any] = {
            "AET": peer.aet,
            "Host": peer.host,
            "Port": peer.port or 104,  # never called when the profile gives no port (Orthanc requires one)
            "Manufacturer": "Generic",
            "AllowEcho": True,
            "AllowStorageCommitment": False,
            "UseDicomTls": peer.tls,
        }
        entry.update({key: service in peer.services for service, key in _ORTHANC_ALLOW.items()})
        modalities[peer.name] = entry
    return modalities


def orthanc_settings(cfg: Config, name: str) -> dict[str, Any]:
    """The security part of a generated Orthanc configuration: checks on, only C-ECHO open, the peers."""
    return {**LOCKED_SETTINGS, "DicomModalities": orthanc_modalities(cfg, name)}


def table(cfg: Config) -> list[dict[str, str]]:
    """Rows node x peer x allowed services, for docs and `nmdose security profile`."""
    rows = []
    for name, node in cfg.active_nodes().items():
        # A PACS we do not run (the clinical PACS, Conquest): its administrator registers these peers.
        where = "generated" if node.local else "register on that system"
        for peer in peers(cfg, name):
            services = ", ".join(f"C-{s.upper()}" for s in peer.services) or "none (C-ECHO only)"
            rows.append({"node": name, "peer": peer.name, "aet": peer.aet, "host": peer.host,
                         "services": services, "tls": "yes" if peer.tls else "no", "where": where,
                         "why": peer.why})  # fmt: skip
    return rows
