"""A small synthetic CT study and an NM one (pydicom; the simulator's phantom pixels) for the viewer tests: real CT Image Storage
slices with geometry, rescale and window, so that OHIF lays them out and renders them."""

from __future__ import annotations

import io
import json
import urllib.request

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from nmdose.simulate import pixels

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
NM_IMAGE = "1.2.840.10008.5.1.4.1.1.20"


def ct_slices(study_uid: str, patient_id: str, *, count: int = 4, size: int = 128) -> list[bytes]:
    """`count` axial CT slices of one series of `study_uid` (Part 10 bytes)."""
    series_uid, frame_uid = generate_uid(), generate_uid()
    out = []
    for i in range(count):
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CT_IMAGE, sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientID, ds.PatientName, ds.PatientSex, ds.PatientBirthDate = (
            patient_id,
            "SYNTHETIC^VIEWER",
            "O",
            "",
        )
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240506", "101500", "1", "VIEWER1"
        ds.StudyDescription, ds.SeriesDescription = "nmdose viewer test", "Axial synthetic"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, i + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [-250, -250, -3 * i]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [500 / size, 500 / size]
        ds.SliceThickness, ds.SliceLocation = 3, -3 * i
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = pixels.ct_slice(size, size, i % pixels.VARIANTS)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def nm_static(study_uid: str, patient_id: str, *, size: int = 128) -> bytes:
    """One multi-frame NM Image (STATIC, anterior and posterior frames of two detectors; Part 10 bytes)."""
    sop = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = NM_IMAGE, sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = NM_IMAGE, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.PatientID, ds.PatientName, ds.PatientSex, ds.PatientBirthDate = patient_id, "SYNTHETIC^VIEWER", "O", ""
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240507", "091000", "2", "VIEWER2"
    ds.StudyDescription, ds.SeriesDescription = "nmdose viewer test NM", "Bone static"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "NM", 1, 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"]
    ds.NumberOfFrames = 2
    ds.FrameIncrementPointer = [0x00540010, 0x00540020]  # Energy Window Vector, Detector Vector
    ds.EnergyWindowVector, ds.DetectorVector, ds.NumberOfDetectors = [1, 1], [1, 2], 2
    ds.NumberOfEnergyWindows = 1
    ds.PixelSpacing = [4, 4]
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.volume("planar", size, size, 2)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def store_instances(orthanc_url: str, instances: list[bytes], headers: dict[str, str] | None = None) -> str:
    """Store Part 10 instances in an Orthanc (REST POST /instances); the Orthanc study ID of the last."""
    parent = ""
    for data in instances:
        req = urllib.request.Request(
            orthanc_url + "/instances", data=data, method="POST", headers=headers or {}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            parent = json.loads(r.read())["ParentStudy"]
    return parent


def store_ct_study(
    orthanc_url: str, study_uid: str, patient_id: str, headers: dict[str, str] | None = None
) -> str:
    """Store the CT slices in an Orthanc; Orthanc's study ID."""
    return store_instances(orthanc_url, ct_slices(study_uid, patient_id), headers)
