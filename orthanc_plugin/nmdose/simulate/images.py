"""Image datasets: CT Image, PET Image and NM Image IODs (PS3.3 A.3, A.21, A.5) built with pydicom.

Each builder returns a complete dataset with its file meta; the generator only writes it. Nothing here reads the
clock: every date and time comes from the study plan, so the same seed gives byte-identical files.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from nmdose import dicom_sr as sr
from nmdose.dicom_sr import Code
from nmdose.dose import codes as C
from nmdose.simulate import catalog, pixels
from nmdose.simulate.model import MESS_PT_MBQ, MESS_SRT_CODES, SeriesPlan, StudyPlan

IMPLEMENTATION_VERSION = "NMDOSE_SIM_1"
INSTITUTION = "NMDOSE SIMULATED HOSPITAL"
_HEAD_FIRST = Code("102540008", "SCT", "headfirst")
# pydicom's code dictionary entries, taken once as the one Code type of nmdose (nmdose.dicom_sr.Code)
_RECUMBENT = catalog.sr_code(codes.SCT.Recumbent)
_SUPINE = catalog.sr_code(codes.SCT.Supine)
_FEET_FIRST = catalog.sr_code(codes.SCT.FeetFirst)
_ANTERIOR_PROJECTION = catalog.sr_code(codes.SCT.AnteriorProjection)
_POSTERIOR_PROJECTION = catalog.sr_code(codes.SCT.PosteriorProjection)


def da(value: datetime) -> str:
    return value.strftime("%Y%m%d")


def tm(value: datetime) -> str:
    return value.strftime("%H%M%S")


def dt(value: datetime) -> str:
    return value.strftime("%Y%m%d%H%M%S")


def code_item(code: Code) -> Dataset:
    """A Code Sequence item (PS3.3 Table 8.8-1a basic attributes)."""
    return sr.code_sequence_item(code)


def new_dataset(plan: StudyPlan, series: SeriesPlan, sop_uid: str, implementation_uid: str) -> Dataset:
    """Patient, General Study, Patient Study, General Series, General Equipment and SOP Common modules."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = series.sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = implementation_uid
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = plan.charset
    ds.SOPClassUID = series.sop_class
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = da(plan.started)
    ds.InstanceCreationTime = tm(plan.started)
    ds.StudyDate = da(plan.started)
    ds.SeriesDate = da(plan.started)
    ds.StudyTime = tm(plan.started)
    ds.SeriesTime = tm(plan.started + timedelta(minutes=series.number))
    ds.AccessionNumber = plan.accession
    ds.Modality = series.modality
    ds.Manufacturer = plan.scanner.manufacturer
    ds.InstitutionName = INSTITUTION
    ds.ReferringPhysicianName = f"SIM^REFERRER{plan.patient.number % 17 + 1}"
    ds.StationName = plan.station_name
    ds.StudyDescription = plan.exam.description
    ds.SeriesDescription = series.description
    ds.ManufacturerModelName = plan.scanner.model
    ds.PatientName = plan.patient.name
    ds.PatientID = plan.patient.patient_id
    ds.IssuerOfPatientID = "NMDOSE-SIM"
    ds.PatientBirthDate = plan.patient.birth_date.strftime("%Y%m%d")
    ds.PatientSex = plan.patient.sex
    ds.PatientAge = f"{plan.age_years:03d}Y"
    ds.PatientSize = f"{plan.patient.height_m:.2f}"
    if plan.weight_kg is not None:
        ds.PatientWeight = f"{plan.weight_kg:.1f}"
    ds.DeviceSerialNumber = plan.scanner.serial
    ds.SoftwareVersions = plan.software_version
    if plan.exam.body_part and series.modality != "SR":
        ds.BodyPartExamined = plan.exam.body_part
    ds.StudyInstanceUID = plan.uid
    ds.SeriesInstanceUID = series.uid
    ds.StudyID = plan.accession[-8:]
    ds.SeriesNumber = series.number
    return ds


def _image_pixel(ds: Dataset, rows: int, cols: int, data: bytes, *, signed: bool = False) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = data


def _frame_of_reference(ds: Dataset, plan: StudyPlan) -> None:
    ds.FrameOfReferenceUID = plan.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""


def _plane(ds: Dataset, fov_mm: float, rows: int, cols: int, z: float, thickness: float) -> None:
    spacing = fov_mm / cols
    ds.PixelSpacing = [f"{fov_mm / rows:.6g}", f"{spacing:.6g}"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [f"{-fov_mm / 2:.6g}", f"{-fov_mm / 2:.6g}", f"{z:.6g}"]
    ds.SliceThickness = f"{thickness:.6g}"
    ds.SliceLocation = f"{z:.6g}"


def ct_image(plan: StudyPlan, series: SeriesPlan, index: int, sop_uid: str, impl_uid: str) -> Dataset:
    """One CT slice (or the topogram when ``series.kind == "ct_localizer"``)."""
    ds = new_dataset(plan, series, sop_uid, impl_uid)
    localizer = series.kind == "ct_localizer"
    scan = plan.exam.ct
    acquired = plan.started + timedelta(minutes=2 if localizer else 4, seconds=index // 4)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"] if localizer else ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ContentDate = da(acquired)
    ds.AcquisitionDate = da(acquired)
    ds.ContentTime = tm(acquired)
    ds.AcquisitionTime = tm(acquired)
    ds.ProtocolName = plan.ct_protocol if scan else plan.exam.description
    ds.PatientPosition = "FFS" if plan.exam.family == "petct" and not scan.head else "HFS"
    ds.KVP = scan.kvp if scan else 120
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = index + 1
    ds.PatientOrientation = ""
    ds.ScanOptions = "TOPOGRAM" if localizer else "HELICAL_CT"
    _frame_of_reference(ds, plan)
    rows, cols = series.rows, series.cols
    thickness = series.extra.get("thickness", 3.0)
    z = -(index * thickness)
    _plane(ds, 500.0 if not localizer else 1000.0, rows, cols, z, thickness)
    data = (
        pixels.ct_localizer(rows, cols) if localizer else pixels.ct_slice(rows, cols, index % pixels.VARIANTS)
    )
    _image_pixel(ds, rows, cols, data)
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    if not localizer:
        ds.ConvolutionKernel = "Br38" if plan.scanner.manufacturer == "SIEMENS" else "STANDARD"
        ds.ReconstructionDiameter = 500
        ds.ExposureTime = 500
        ds.XRayTubeCurrent = series.extra.get("ma", 120)
        ds.CTDIvol = float(series.extra.get("ctdivol", 3.0))
    return ds


def radiopharmaceutical_item(plan: StudyPlan, *, pet: bool) -> Dataset:
    """An item of RadiopharmaceuticalInformationSequence (PS3.3 C.8.9.2 PET Isotope, C.8.4.10 NM Isotope)."""
    rp = plan.radiopharmaceutical
    assert rp is not None and plan.injection is not None
    legacy = MESS_SRT_CODES in plan.mess
    item = Dataset()
    item.Radiopharmaceutical = rp.text
    item.RadiopharmaceuticalRoute = "Intravenous route"
    item.RadiopharmaceuticalVolume = "5"
    item.RadiopharmaceuticalStartTime = tm(plan.injection)
    item.RadiopharmaceuticalStartDateTime = dt(plan.injection)
    if pet and MESS_PT_MBQ not in plan.mess:
        item.RadionuclideTotalDose = str(round(plan.activity_mbq * 1e6))  # Bq, as PET scanners write it
    else:
        item.RadionuclideTotalDose = f"{plan.activity_mbq:.6g}"  # MBq, as the standard says
    item.RadionuclideHalfLife = f"{rp.half_life_s:g}"
    if rp.positron_fraction is not None:
        item.RadionuclidePositronFraction = f"{rp.positron_fraction:g}"
    nuclide, agent = rp.nuclide_code, rp.agent
    if legacy:
        nuclide, agent = C.legacy_srt(nuclide), C.legacy_srt(agent)
    item.RadionuclideCodeSequence = Sequence([code_item(nuclide)])
    item.RadiopharmaceuticalCodeSequence = Sequence([code_item(agent)])
    item.AdministrationRouteCodeSequence = Sequence([code_item(catalog.INTRAVENOUS_ROUTE)])
    return item


def _nm_pet_orientation(ds: Dataset, plan: StudyPlan) -> None:
    """NM/PET Patient Orientation module (type 2 sequences, filled as scanners do)."""
    recumbent = code_item(_RECUMBENT)
    recumbent.PatientOrientationModifierCodeSequence = Sequence([code_item(_SUPINE)])
    ds.PatientOrientationCodeSequence = Sequence([recumbent])
    ds.PatientGantryRelationshipCodeSequence = Sequence(
        [code_item(_HEAD_FIRST if plan.exam.family != "petct" else _FEET_FIRST)]
    )


def pet_image(plan: StudyPlan, series: SeriesPlan, index: int, sop_uid: str, impl_uid: str) -> Dataset:
    """One PET slice with the PET Series, PET Isotope and PET Image modules."""
    ds = new_dataset(plan, series, sop_uid, impl_uid)
    acquired = plan.started + timedelta(minutes=8)
    corrected = series.extra.get("corrected", True)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.AcquisitionDate = da(acquired)
    ds.AcquisitionTime = tm(acquired)
    ds.ContentDate = da(acquired)
    ds.ContentTime = tm(acquired + timedelta(minutes=20))
    ds.ProtocolName = plan.exam.description
    ds.PatientPosition = "FFS"
    ds.Units = "BQML"
    ds.CountsSource = "EMISSION"
    ds.SeriesType = ["WHOLE BODY", "IMAGE"]
    ds.CorrectedImage = (
        ["NORM", "DTIM", "ATTN", "SCAT", "DECY", "RAN"] if corrected else ["NORM", "DTIM", "DECY"]
    )
    ds.RandomsCorrectionMethod = "DLYD"
    ds.DecayCorrection = "START"
    ds.ReconstructionMethod = "OSEM 4i5s" if corrected else "OSEM NAC"
    ds.NumberOfSlices = series.instances
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = index + 1
    ds.ImageIndex = index + 1
    ds.FrameReferenceTime = "0"
    ds.ActualFrameDuration = 120000
    ds.DecayFactor = "1.0"
    ds.DoseCalibrationFactor = "1.0"
    ds.PatientOrientation = ""
    ds.RadiopharmaceuticalInformationSequence = Sequence([radiopharmaceutical_item(plan, pet=True)])
    _nm_pet_orientation(ds, plan)
    _frame_of_reference(ds, plan)
    thickness = series.extra.get("thickness", 3.0)
    _plane(ds, 700.0, series.rows, series.cols, -(index * thickness), thickness)
    _image_pixel(
        ds, series.rows, series.cols, pixels.emission_slice(series.rows, series.cols, index % pixels.VARIANTS)
    )
    ds.RescaleIntercept = 0
    ds.RescaleSlope = "2.5"
    ds.WindowCenter = 5000
    ds.WindowWidth = 10000
    return ds


# Frame Increment Pointer vectors (PS3.3 C.8.4.8 NM Multi-frame module).
_ENERGY_WINDOW_VECTOR = 0x00540010
_DETECTOR_VECTOR = 0x00540020
_ROTATION_VECTOR = 0x00540050
_ANGULAR_VIEW_VECTOR = 0x00540090
_SLICE_VECTOR = 0x00540080

_TC99M_WINDOW = (126.45, 154.55)  # 140.5 keV +-10 %


def nm_image(plan: StudyPlan, series: SeriesPlan, index: int, sop_uid: str, impl_uid: str) -> Dataset:
    """One multi-frame NM image: WHOLE BODY, STATIC, TOMO (projections) or RECON TOMO (slices)."""
    ds = new_dataset(plan, series, sop_uid, impl_uid)
    kind = series.kind
    acquired = plan.started + timedelta(minutes=3 + 20 * index + series.number)
    frames, rows, cols = series.frames, series.rows, series.cols
    detectors = 2 if kind in ("nm_whole_body", "nm_tomo") or (kind == "nm_static" and frames == 2) else 1
    ds.ImageType = [
        "ORIGINAL" if kind != "nm_recon" else "DERIVED",
        "PRIMARY",
        {"nm_whole_body": "WHOLE BODY", "nm_static": "STATIC", "nm_tomo": "TOMO", "nm_recon": "RECON TOMO"}[
            kind
        ],
        "EMISSION",
    ]
    ds.AcquisitionDate = da(acquired)
    ds.AcquisitionTime = tm(acquired)
    ds.ContentDate = da(acquired)
    ds.ContentTime = tm(acquired)
    ds.ProtocolName = plan.exam.description
    ds.InstanceNumber = index + 1
    ds.PatientOrientation = ""
    ds.NumberOfFrames = frames
    ds.ActualFrameDuration = 600000 if kind == "nm_whole_body" else (20000 if kind == "nm_tomo" else 300000)

    window = Dataset()
    lower, upper = _TC99M_WINDOW
    rng_item = Dataset()
    rng_item.EnergyWindowLowerLimit = f"{lower:g}"
    rng_item.EnergyWindowUpperLimit = f"{upper:g}"
    window.EnergyWindowRangeSequence = Sequence([rng_item])
    window.EnergyWindowName = "TC99M"
    ds.EnergyWindowInformationSequence = Sequence([window])
    ds.NumberOfEnergyWindows = 1
    ds.RadiopharmaceuticalInformationSequence = Sequence([radiopharmaceutical_item(plan, pet=False)])

    detector_items = []
    for d in range(detectors):
        det = Dataset()
        det.CollimatorGridName = "LEHR"
        det.CollimatorType = "PINH" if "pinhole" in series.description else "PARA"
        det.ImagePositionPatient = [0, 0, 0]
        det.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        if kind in ("nm_whole_body", "nm_static"):
            view = _ANTERIOR_PROJECTION if d == 0 else _POSTERIOR_PROJECTION
            det.ViewCodeSequence = Sequence([code_item(view)])
        detector_items.append(det)
    ds.DetectorInformationSequence = Sequence(detector_items)
    ds.NumberOfDetectors = detectors

    if kind in ("nm_whole_body", "nm_static"):
        ds.FrameIncrementPointer = [_ENERGY_WINDOW_VECTOR, _DETECTOR_VECTOR]
        ds.EnergyWindowVector = [1] * frames
        ds.DetectorVector = [(f % detectors) + 1 for f in range(frames)]
        if kind == "nm_whole_body":
            ds.ScanVelocity = "15"
            ds.ScanLength = 2000
        data = pixels.volume("planar", rows, cols, frames)
    elif kind == "nm_tomo":
        per_detector = frames // detectors
        ds.FrameIncrementPointer = [
            _ENERGY_WINDOW_VECTOR,
            _DETECTOR_VECTOR,
            _ROTATION_VECTOR,
            _ANGULAR_VIEW_VECTOR,
        ]
        ds.EnergyWindowVector = [1] * frames
        ds.DetectorVector = [d + 1 for d in range(detectors) for _ in range(per_detector)]
        ds.RotationVector = [1] * frames
        ds.AngularViewVector = [v + 1 for _ in range(detectors) for v in range(per_detector)]
        ds.NumberOfRotations = 1
        rotation = Dataset()
        rotation.StartAngle = "0"
        rotation.AngularStep = f"{360 / max(1, frames):.4g}"
        rotation.RotationDirection = "CW"
        rotation.ScanArc = "360"
        rotation.ActualFrameDuration = 20000
        rotation.NumberOfFramesInRotation = per_detector
        rotation.RadialPosition = [220.0] * per_detector
        rotation.TableTraverse = "0"
        rotation.TableHeight = "120"
        ds.RotationInformationSequence = Sequence([rotation])
        ds.TypeOfDetectorMotion = "STEP AND SHOOT"
        data = pixels.volume("emission", rows, cols, frames)
    else:  # RECON TOMO
        ds.FrameIncrementPointer = _SLICE_VECTOR
        ds.SliceVector = [f + 1 for f in range(frames)]
        ds.NumberOfSlices = frames
        ds.SliceThickness = "4.8"
        ds.SpacingBetweenSlices = "4.8"
        ds.ImagePositionPatient = [-150, -150, 0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        _frame_of_reference(ds, plan)
        data = pixels.volume("emission", rows, cols, frames)
    _nm_pet_orientation(ds, plan)
    ds.PixelSpacing = ["4.8", "4.8"]
    _image_pixel(ds, rows, cols, data)
    return ds
