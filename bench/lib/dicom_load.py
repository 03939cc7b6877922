"""Synthetic DICOM load for the PACS-target bench and its test: CT images (pydicom) and concurrent associations
(pynetdicom) against a local Orthanc, with the association count open at once.

No patient data: every instance is generated (PatientID "PT-…", PatientName "Bench^Nnnn"), with fresh UIDs.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelFind, Verification

SUCCESS = 0x0000


def ct_image(
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    size: int = 2,
    patient_id: str = "PT-0000",
    study_date: str = "20240101",
    description: str = "CT BENCH",
    number: int = 1,
    pixels: bytes | None = None,
) -> Dataset:
    """A CT image (16-bit, ``size`` x ``size``; 512 gives ~0.5 MB), file meta included."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = f"Bench^{patient_id[-4:]}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = ds.SeriesDate = study_date
    ds.StudyTime = "090000"
    ds.StudyDescription = description
    ds.AccessionNumber = ""
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = pixels if pixels is not None else os.urandom(size * size * 2)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


def write_ct_series(folder: Path, count: int, *, size: int = 512, **fields) -> list[Path]:
    """``count`` CT images of one new study and series in ``folder`` (one random pixel block shared: the
    content does not matter to an uncompressed store)."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    pixels = os.urandom(size * size * 2)
    paths = []
    for i in range(count):
        ds = ct_image(study_uid=study_uid, series_uid=series_uid, size=size, number=i + 1, pixels=pixels,
                      **fields)  # fmt: skip
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def application_entity(calling: str, timeout_s: float = 60) -> AE:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    for context in (Verification, CTImageStorage, StudyRootQueryRetrieveInformationModelFind):
        ae.add_requested_context(context)
    return ae


def associate(node, calling: str, timeout_s: float = 60):
    """An association to ``node`` with TCP_NODELAY on the client's socket: pynetdicom leaves Nagle's algorithm
    on, and a DIMSE request sent as a command PDU then a dataset PDU then waits for the peer's delayed ACK
    (~40 ms per C-FIND or C-STORE on Linux), which would be timed as the server's answer."""
    assoc = application_entity(calling, timeout_s).associate(node.host, node.port, ae_title=node.aet)
    if assoc.is_established:
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return assoc


def status_of(response) -> int | None:
    return int(response.Status) if response is not None and "Status" in response else None


@dataclass
class LoadResult:
    requested: int
    established: int = 0
    concurrent_max: int = 0
    echo_ok: int = 0
    store_statuses: list[int | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def stored_ok(self) -> int:
        return sum(1 for s in self.store_statuses if s == SUCCESS)


def _echo_store(assoc, ds: Dataset, result: LoadResult, lock: threading.Lock) -> None:
    echo = status_of(assoc.send_c_echo())
    store = status_of(assoc.send_c_store(ds))
    with lock:
        result.echo_ok += echo == SUCCESS
        result.store_statuses.append(store)


def concurrent_echo_store(
    node, calling: str, datasets: list[Dataset], *, timeout_s: float = 60
) -> LoadResult:
    """One thread and one association per dataset: all associate, wait on a barrier until every thread has its
    answer (all associations that were accepted are open at that moment), then each does a C-ECHO and a
    C-STORE of its dataset and releases."""
    result = LoadResult(requested=len(datasets))
    lock = threading.Lock()
    barrier = threading.Barrier(len(datasets))
    open_now = 0

    def worker(ds: Dataset) -> None:
        nonlocal open_now
        assoc = None
        try:
            assoc = associate(node, calling, timeout_s)
            if assoc.is_established:
                with lock:
                    result.established += 1
                    open_now += 1
                    result.concurrent_max = max(result.concurrent_max, open_now)
            else:
                with lock:
                    result.errors.append("rejected" if assoc.is_rejected else "aborted")
        except Exception as exc:  # noqa: BLE001 - counted, reported by the caller
            with lock:
                result.errors.append(f"associate: {exc}")
        try:
            barrier.wait(timeout=timeout_s)
        except threading.BrokenBarrierError:
            with lock:
                result.errors.append("barrier broken")
        if assoc is None or not assoc.is_established:
            return
        try:
            _echo_store(assoc, ds, result, lock)
        except Exception as exc:  # noqa: BLE001
            with lock:
                result.errors.append(f"dimse: {exc}")
        finally:
            with lock:
                open_now -= 1
            if assoc.is_established:
                assoc.release()

    threads = [threading.Thread(target=worker, args=(ds,), daemon=True) for ds in datasets]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s * 3)
    result.seconds = time.perf_counter() - started
    return result


def sequential_echo_store(
    node, calling: str, datasets: list[Dataset], *, timeout_s: float = 60
) -> LoadResult:
    """The same work as :func:`concurrent_echo_store` over one association after another."""
    result = LoadResult(requested=len(datasets))
    lock = threading.Lock()
    started = time.perf_counter()
    for ds in datasets:
        assoc = associate(node, calling, timeout_s)
        if not assoc.is_established:
            result.errors.append("rejected" if assoc.is_rejected else "aborted")
            continue
        result.established += 1
        result.concurrent_max = 1
        try:
            _echo_store(assoc, ds, result, lock)
        finally:
            assoc.release()
    result.seconds = time.perf_counter() - started
    return result
