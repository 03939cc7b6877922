"""The one table of coded concepts the dose readers and the synthetic builders use (PS3.16).

Concept names follow PS3.16 TID 10011-10015 (CT radiation dose), TID 10021-10023 (radiopharmaceutical dose),
TID 1002/1004 (observer context); value sets follow CID 10013 (CT acquisition type), CID 4052 (phantom),
CID 4030/4031 (regions), CID 4020/18 (radionuclides), CID 4021/25 (radiopharmaceuticals), CID 11 (routes).
Codes are SNOMED-CT (SCT) where the current standard uses them; legacy SNOMED-RT (SRT) codes in files are mapped
to SCT through pydicom's SRT/SCT table (:func:`nmdose.dicom_sr.code_key`) before matching, so one entry covers
both. Matching is always by ``scheme:value`` key, never by meaning text.
"""

from __future__ import annotations

from nmdose.dicom_sr import SNOMED_MAPPING, Code

_SCT_TO_SRT: dict[str, str] = SNOMED_MAPPING["SCT"]


def legacy_srt(code: Code) -> Code:
    """The SNOMED-RT spelling of an SCT code (as older scanners send it); the code itself when none exists."""
    if code.scheme == "SCT" and code.value in _SCT_TO_SRT:
        return Code(_SCT_TO_SRT[code.value], "SRT", code.meaning)
    return code


# ----------------------------------------------------------------------------------- document titles, TID 10011
XRayRadiationDoseReport = Code("113701", "DCM", "X-Ray Radiation Dose Report")
RadiopharmaceuticalRadiationDoseReport = Code("113500", "DCM", "Radiopharmaceutical Radiation Dose Report")
ProcedureReported = Code("121058", "DCM", "Procedure reported")
ComputedTomographyXRay = Code("77477000", "SCT", "Computed Tomography X-Ray")
HasIntent = Code("363703001", "SCT", "Has Intent")
DiagnosticIntent = Code("261004008", "SCT", "Diagnostic Intent")
ObserverType = Code("121005", "DCM", "Observer Type")
Device = Code("121007", "DCM", "Device")
DeviceObserverUID = Code("121012", "DCM", "Device Observer UID")
DeviceObserverName = Code("121013", "DCM", "Device Observer Name")
DeviceObserverManufacturer = Code("121014", "DCM", "Device Observer Manufacturer")
DeviceObserverModelName = Code("121015", "DCM", "Device Observer Model Name")
DeviceObserverSerialNumber = Code("121016", "DCM", "Device Observer Serial Number")
StartOfXRayIrradiation = Code("113809", "DCM", "Start of X-Ray Irradiation")
EndOfXRayIrradiation = Code("113810", "DCM", "End of X-Ray Irradiation")
ScopeOfAccumulation = Code("113705", "DCM", "Scope of Accumulation")
Study = Code("113014", "DCM", "Study")
StudyInstanceUID = Code("110180", "DCM", "Study Instance UID")
SourceOfDoseInformation = Code("113854", "DCM", "Source of Dose Information")
AutomatedDataCollection = Code("113856", "DCM", "Automated Data Collection")
Comment = Code("121106", "DCM", "Comment")

# TID 10012 CT Accumulated Dose Data
CTAccumulatedDoseData = Code("113811", "DCM", "CT Accumulated Dose Data")
TotalNumberOfIrradiationEvents = Code("113812", "DCM", "Total Number of Irradiation Events")
CTDoseLengthProductTotal = Code("113813", "DCM", "CT Dose Length Product Total")

# TID 10013 CT Irradiation Event Data
CTAcquisition = Code("113819", "DCM", "CT Acquisition")
AcquisitionProtocol = Code("125203", "DCM", "Acquisition Protocol")
TargetRegion = Code("123014", "DCM", "Target Region")
CTAcquisitionType = Code("113820", "DCM", "CT Acquisition Type")
IrradiationEventUID = Code("113769", "DCM", "Irradiation Event UID")
CTAcquisitionParameters = Code("113822", "DCM", "CT Acquisition Parameters")
ExposureTime = Code("113824", "DCM", "Exposure Time")
NominalSingleCollimationWidth = Code("113826", "DCM", "Nominal Single Collimation Width")
NominalTotalCollimationWidth = Code("113827", "DCM", "Nominal Total Collimation Width")
PitchFactor = Code("113828", "DCM", "Pitch Factor")
NumberOfXRaySources = Code("113823", "DCM", "Number of X-Ray Sources")
CTXRaySourceParameters = Code("113831", "DCM", "CT X-Ray Source Parameters")
IdentificationOfTheXRaySource = Code("113832", "DCM", "Identification of the X-Ray Source")
KVP = Code("113733", "DCM", "KVP")
MaximumXRayTubeCurrent = Code("113833", "DCM", "Maximum X-Ray Tube Current")
XRayTubeCurrent = Code("113734", "DCM", "X-Ray Tube Current")
ExposureTimePerRotation = Code("113834", "DCM", "Exposure Time per Rotation")
CTDose = Code("113829", "DCM", "CT Dose")
MeanCTDIvol = Code("113830", "DCM", "Mean CTDIvol")
CTDIwPhantomType = Code("113835", "DCM", "CTDIw Phantom Type")
DLP = Code("113838", "DCM", "DLP")

# TID 10013 CT Dose: size-specific dose estimate and the patient size it used (AAPM Reports 204 and 220). Code
# values and meanings as in pydicom 3.0's DCM concept dictionary (``codes.DCM.SizeSpecificDoseEstimate`` etc.);
# PS3.16 and vendors spell 113930 "Size Specific Dose Estimation": matching is by key, the meaning is ours.
SizeSpecificDoseEstimate = Code("113930", "DCM", "Size Specific Dose Estimate")
MeasuredLateralDimension = Code("113931", "DCM", "Measured Lateral Dimension")
MeasuredAPDimension = Code("113932", "DCM", "Measured AP Dimension")
DerivedEffectiveDiameter = Code("113933", "DCM", "Derived Effective Diameter")
WaterEquivalentDiameter = Code("113980", "DCM", "Water Equivalent Diameter")
MeasurementMethod = Code("370129005", "SCT", "Measurement Method")  # concept modifier of SSDE and of Dw

# TID 10014 Scanning Length
ScanningLength = Code("113825", "DCM", "Scanning Length")
LengthOfReconstructableVolume = Code("113893", "DCM", "Length of Reconstructable Volume")
ExposedRange = Code("113899", "DCM", "Exposed Range")

# TID 10015 CT Dose Check Details
DoseCheckAlertDetails = Code("113900", "DCM", "Dose Check Alert Details")
DLPAlertValueConfigured = Code("113901", "DCM", "DLP Alert Value Configured")
CTDIvolAlertValueConfigured = Code("113902", "DCM", "CTDIvol Alert Value Configured")
DLPAlertValue = Code("113903", "DCM", "DLP Alert Value")
CTDIvolAlertValue = Code("113904", "DCM", "CTDIvol Alert Value")
AccumulatedDLPForwardEstimate = Code("113905", "DCM", "Accumulated DLP Forward Estimate")
AccumulatedCTDIvolForwardEstimate = Code("113906", "DCM", "Accumulated CTDIvol Forward Estimate")
ReasonForProceeding = Code("113907", "DCM", "Reason for Proceeding")
PersonName = Code("113870", "DCM", "Person Name")
DoseCheckNotificationDetails = Code("113908", "DCM", "Dose Check Notification Details")
DLPNotificationValueConfigured = Code("113909", "DCM", "DLP Notification Value Configured")
CTDIvolNotificationValueConfigured = Code("113910", "DCM", "CTDIvol Notification Value Configured")
DLPNotificationValue = Code("113911", "DCM", "DLP Notification Value")
CTDIvolNotificationValue = Code("113912", "DCM", "CTDIvol Notification Value")
DLPForwardEstimate = Code("113913", "DCM", "DLP Forward Estimate")
CTDIvolForwardEstimate = Code("113914", "DCM", "CTDIvol Forward Estimate")
Yes = Code("373066001", "SCT", "Yes")
No = Code("373067005", "SCT", "No")

# TID 10021-10023 Radiopharmaceutical Radiation Dose
RadiopharmaceuticalAdministration = Code("113502", "DCM", "Radiopharmaceutical Administration")
RadiopharmaceuticalAgent = Code("349358000", "SCT", "Radiopharmaceutical agent")
Radionuclide = Code("89457008", "SCT", "Radionuclide")
RadionuclideHalfLife = Code("304283002", "SCT", "Radionuclide Half Life")
RadiopharmaceuticalAdministrationEventUID = Code(
    "113503", "DCM", "Radiopharmaceutical Administration Event UID"
)
AdministeredActivity = Code("113507", "DCM", "Administered activity")
PreAdministrationMeasuredActivity = Code("113508", "DCM", "Pre-Administration Measured Activity")
PostAdministrationMeasuredActivity = Code("113509", "DCM", "Post-Administration Measured Activity")
RadiopharmaceuticalStartDateTime = Code("123003", "DCM", "Radiopharmaceutical Start DateTime")
RadiopharmaceuticalStopDateTime = Code("123004", "DCM", "Radiopharmaceutical Stop DateTime")
RadiopharmaceuticalVolume = Code("123005", "DCM", "Radiopharmaceutical Volume")
RouteOfAdministration = Code("410675002", "SCT", "Route of administration")
PatientCharacteristics = Code("121118", "DCM", "Patient Characteristics")
SubjectAge = Code("121033", "DCM", "Subject Age")
SubjectSex = Code("121032", "DCM", "Subject Sex")
PatientHeight = Code("8302-2", "LN", "Patient Height")
PatientWeight = Code("29463-7", "LN", "Patient Weight")
OrganDoseInformation = Code("113517", "DCM", "Organ Dose Information")
EffectiveDose = Code("113839", "DCM", "Effective Dose")
Male = Code("M", "DCM", "Male")  # CID 7455 Sex
Female = Code("F", "DCM", "Female")
SEX_BY_KEY: dict[str, str] = {
    "DCM:M": "M",
    "DCM:F": "F",
    "DCM:U": "O",
    "SCT:248153007": "M",
    "SCT:248152002": "F",
}

# Legacy SRT concept names not in pydicom's SRT->SCT map under the code TID 10022 used before SCT
LEGACY_CONCEPT_ALIASES: dict[str, str] = {
    "SRT:F-61FDB": RadiopharmaceuticalAgent.key,  # "Radiopharmaceutical agent"
    "SCT:F-61FDB": RadiopharmaceuticalAgent.key,
}

# ------------------------------------------------------------------------------------------- value sets
# CID 10013 CT Acquisition Type
CT_ACQUISITION_TYPES: dict[str, Code] = {
    "spiral": Code("116152004", "SCT", "Spiral Acquisition"),
    "sequenced": Code("113804", "DCM", "Sequenced Acquisition"),
    "constant_angle": Code("113805", "DCM", "Constant Angle Acquisition"),
    "stationary": Code("113806", "DCM", "Stationary Acquisition"),
    "free": Code("113807", "DCM", "Free Acquisition"),
    "cone_beam": Code("702569007", "SCT", "Cone Beam Acquisition"),
}

# CID 10023 Size Specific Dose Estimation Method for CT: key -> (code, the patient size the method uses)
SSDE_METHODS: dict[str, tuple[Code, str]] = {
    "aapm204_lateral": (Code("113934", "DCM", "AAPM 204 Lateral Dimension"), "lateral_dimension"),
    "aapm204_ap": (Code("113935", "DCM", "AAPM 204 AP Dimension"), "ap_dimension"),
    "aapm204_lateral_plus_ap": (
        Code("113936", "DCM", "AAPM 204 Sum of Lateral and AP Dimension"),
        "lateral_plus_ap",
    ),
    "aapm204_age": (
        Code("113937", "DCM", "AAPM 204 Effective Diameter Estimated From Patient Age"),
        "effective_diameter",
    ),
    "from_wed": (
        Code("113988", "DCM", "Estimated from Water Equivalent Diameter"),
        "water_equivalent_diameter",
    ),
    "average_ssde_z": (Code("113989", "DCM", "Arithmetic Average of SSDE(z)"), "water_equivalent_diameter"),
}
# CID 10024 Water Equivalent Diameter Method
WED_METHODS: dict[str, Code] = {
    "representative": Code("113981", "DCM", "Water Equivalent Diameter Representative Value"),
    "integrated": Code("113982", "DCM", "Water Equivalent Diameter Integrated Across Scan Range"),
    "raw_data": Code("113983", "DCM", "Water Equivalent Diameter From Raw Data"),
    "localizer": Code("113984", "DCM", "Water Equivalent Diameter From Localizer"),
}

# CID 4052 Phantom Devices (the CTDIw phantom); our short names are the contract's values
PHANTOMS: dict[str, Code] = {
    "head16": Code("113690", "DCM", "IEC Head Dosimetry Phantom"),
    "body32": Code("113691", "DCM", "IEC Body Dosimetry Phantom"),
}

# CID 4030/4031 target regions seen on CT; keys are the builders' short names
TARGET_REGIONS: dict[str, Code] = {
    "chest": Code("51185008", "SCT", "Chest"),
    "head": Code("69536005", "SCT", "Head"),
    "abdomen": Code("818981001", "SCT", "Abdomen"),
    "pelvis": Code("12921003", "SCT", "Pelvis"),
    "neck": Code("45048000", "SCT", "Neck"),
    "head_and_neck": Code("774007", "SCT", "Head and Neck"),
    "chest_abdomen": Code("416550000", "SCT", "Chest and Abdomen"),
    "abdomen_pelvis": Code("416949008", "SCT", "Abdomen and Pelvis"),
    "chest_abdomen_pelvis": Code("416775004", "SCT", "Chest, Abdomen and Pelvis"),
    "whole_body": Code("38266002", "SCT", "Entire body"),
    "brain": Code("12738006", "SCT", "Brain"),
    "heart": Code("80891009", "SCT", "Heart"),
    "spine": Code("421060004", "SCT", "Spine"),
    "extremity": Code("66019005", "SCT", "Extremity"),
}
# Codes that mean the same region under another SNOMED concept id
TARGET_REGION_SYNONYMS: dict[str, str] = {
    "SCT:816094009": "chest",  # "Chest" (current CID 4031)
    "SCT:43799004": "chest",  # "Chest cavity"
    "SCT:113345001": "abdomen",  # "Abdominal structure" (T-D4000)
    "SCT:416949008": "abdomen_pelvis",
}

# CID 4020 / CID 18 radionuclides, with physical half-life in seconds: evaluated values of NNDC NuDat 3
# (nndc.bnl.gov/nudat3) and LNHB's DDEP tables (lnhb.fr/ddep), as listed in issue #16: F-18 109.77 min, C-11
# 20.364 min, N-13 9.965 min, O-15 122.24 s, Ga-68 67.71 min, Rb-82 1.2575 min, Zr-89 78.41 h, Tc-99m 6.0067 h
# (21624 s kept: the synthetic objects' bytes depend on it; 0.12 s apart), I-123 13.22 h, I-131 8.0252 d,
# In-111 2.8047 d, Tl-201 72.91 h, Lu-177 6.647 d. Used where neither the image header (RadionuclideHalfLife,
# which wins) nor the dose report gives one.
RADIONUCLIDES: dict[str, tuple[Code, float]] = {
    "F18": (Code("77004003", "SCT", "^18^Fluorine"), 6586.2),
    "C11": (Code("40565003", "SCT", "^11^Carbon"), 1221.84),
    "N13": (Code("21576001", "SCT", "^13^Nitrogen"), 597.9),
    "O15": (Code("129504001", "SCT", "^15^Oxygen"), 122.24),
    "Ga68": (Code("35337001", "SCT", "^68^Gallium"), 4062.6),
    "Rb82": (Code("79197006", "SCT", "^82^Rubidium"), 75.45),
    "Cu64": (Code("3932008", "SCT", "^64^Copper"), 45721.0),
    "Zr89": (Code("63360001", "SCT", "^89^Zirconium"), 282276.0),
    "I124": (Code("40937006", "SCT", "^124^Iodine"), 360806.0),
    "Tc99m": (Code("72454006", "SCT", "^99m^Technetium"), 21624.0),
    "I123": (Code("21572004", "SCT", "^123^Iodine"), 47602.0),
    "I131": (Code("1368003", "SCT", "^131^Iodine"), 693377.3),
    "In111": (Code("56609000", "SCT", "^111^Indium"), 242326.1),
    "Tl201": (Code("60057003", "SCT", "^201^Thallium"), 262476.0),
    "Ga67": (Code("2008008", "SCT", "^67^Gallium"), 281810.0),
    "Lu177": (Code("447553000", "SCT", "^177^Lutetium"), 574344.0),
    "Y90": (Code("14691008", "SCT", "^90^Yttrium"), 230400.0),
    "Ra223": (Code("24853006", "SCT", "^223^Radium"), 987552.0),
    "Sm153": (Code("419804008", "SCT", "^153^Samarium"), 166622.0),
}
POSITRON_EMITTERS = frozenset({"F18", "C11", "N13", "O15", "Ga68", "Rb82", "Cu64", "Zr89", "I124"})

# CID 4021 / CID 25 radiopharmaceuticals: key -> (code, radionuclide key)
RADIOPHARMACEUTICALS: dict[str, tuple[Code, str]] = {
    "fdg": (Code("35321007", "SCT", "Fluorodeoxyglucose F^18^"), "F18"),
    "naf": (Code("129501009", "SCT", "Sodium fluoride F^18^"), "F18"),
    "fluorocholine": (Code("456992002", "SCT", "Fluorocholine F^18^"), "F18"),
    "fdopa": (Code("5811000122108", "SCT", "Fluoro-L-dopa F^18^"), "F18"),
    "florbetaben": (Code("712736002", "SCT", "Florbetaben F^18^"), "F18"),
    "psma1007": (Code("126758", "DCM", "PSMA-1007 F^18^"), "F18"),
    "psma11": (Code("C118961", "NCIt", "PSMA-11 Ga^68^"), "Ga68"),
    "dotatate": (Code("724025002", "SCT", "Dotatate Ga^68^"), "Ga68"),
    "ammonia": (Code("129508003", "SCT", "Ammonia N^13^"), "N13"),
    "rubidium": (Code("129503007", "SCT", "Rubidium chloride Rb^82^"), "Rb82"),
    "methionine": (Code("129510001", "SCT", "Methionine C^11^"), "C11"),
    "mdp": (Code("96390006", "SCT", "Technetium Tc^99m^ medronate"), "Tc99m"),
    "hdp": (Code("53951001", "SCT", "Technetium Tc^99m^ oxidronate"), "Tc99m"),
    "sestamibi": (Code("424299003", "SCT", "Technetium Tc^99m^ sestamibi"), "Tc99m"),
    "tetrofosmin": (Code("424118002", "SCT", "Technetium Tc^99m^Tetrofosmin"), "Tc99m"),
    "pertechnetate": (Code("19495007", "SCT", "Sodium pertechnetate Tc^99m^"), "Tc99m"),
    "dmsa": (Code("24511001", "SCT", "Technetium Tc^99m^ succimer"), "Tc99m"),
    "mibg123": (Code("395787009", "SCT", "Iodine^123 3-Iodobenzylguanidine MIBG"), "I123"),
    "nai131": (Code("111160004", "SCT", "Sodium iodide I^131^"), "I131"),
    "pentetreotide": (Code("446800006", "SCT", "Indium^111 Pentetreotide"), "In111"),
    "psma617_lu177": (Code("126509", "DCM", "Lutetium^177^ n-acetylaspartylglutamate"), "Lu177"),
    # further agents of the ICRP 128 table (derived.py); codes and meanings as in PS3.16 CID 25 / CID 4021
    "fet": (Code("424708001", "SCT", "Fluorethyltyrosin F^18^"), "F18"),
    "florbetapir": (Code("456995000", "SCT", "Florbetapir F^18^"), "F18"),
    "flutemetamol": (Code("456997008", "SCT", "Flutemetamol F^18^"), "F18"),
    "dcfpyl": (Code("C116352", "NCIt", "Piflufolastat F^18^"), "F18"),
    "dotatoc": (Code("C2713594", "UMLS", "Edotreotide Ga^68^"), "Ga68"),
    "water": (Code("129505000", "SCT", "Oxygen-water O^15^"), "O15"),
    "maa": (Code("85693008", "SCT", "Technetium Tc^99m^ aggregated albumin"), "Tc99m"),
    "dtpa": (Code("430276001", "SCT", "Technetium Tc^99m^ pentetate"), "Tc99m"),
    "mag3": (Code("446536001", "SCT", "Technetium^99m Mercaptoacetyl triglycine MAG3"), "Tc99m"),
    "hmpao": (Code("77313009", "SCT", "Technetium Tc^99m^ exametazime"), "Tc99m"),
    "ecd": (Code("766886003", "SCT", "Technetium Tc^99m^ bicisate"), "Tc99m"),
    "ioflupane": (Code("429296007", "SCT", "Ioflupane I^123^"), "I123"),
    "mibg131": (Code("395789007", "SCT", "Iodine^131 3-Iodobenzylguanidine MIBG"), "I131"),
    "thallium": (Code("73685002", "SCT", "Thallous chloride Tl^201^"), "Tl201"),
}

# CID 11 Route of Administration
ROUTES: dict[str, Code] = {
    "intravenous": Code("47625008", "SCT", "Intravenous route"),
    "oral": Code("26643006", "SCT", "Oral route"),
    "inhalation": Code("446406008", "SCT", "By inhalation"),
    "subcutaneous": Code("34206005", "SCT", "Subcutaneous route"),
    "intra_arterial": Code("58100008", "SCT", "Intra-arterial route"),
    "intrathecal": Code("72607000", "SCT", "Intrathecal route"),
}

# UCUM units used in dose objects
UCUM: dict[str, Code] = {
    "mGy": Code("mGy", "UCUM", "mGy"),
    "mGy.cm": Code("mGy.cm", "UCUM", "mGy.cm"),
    "MBq": Code("MBq", "UCUM", "MBq"),
    "Bq": Code("Bq", "UCUM", "Bq"),
    "s": Code("s", "UCUM", "s"),
    "mm": Code("mm", "UCUM", "mm"),
    "cm": Code("cm", "UCUM", "cm"),
    "m": Code("m", "UCUM", "m"),
    "kV": Code("kV", "UCUM", "kV"),
    "mA": Code("mA", "UCUM", "mA"),
    "kg": Code("kg", "UCUM", "kg"),
    "a": Code("a", "UCUM", "year"),
    "ratio": Code("{ratio}", "UCUM", "ratio"),
    "events": Code("{events}", "UCUM", "events"),
    "sources": Code("{X-Ray sources}", "UCUM", "X-Ray sources"),
    "cm3": Code("cm3", "UCUM", "cm3"),
    "mSv": Code("mSv", "UCUM", "mSv"),
}

# ------------------------------------------------------------------------------------ lookup by code key
ACQUISITION_TYPE_BY_KEY: dict[str, str] = {c.key: k for k, c in CT_ACQUISITION_TYPES.items()}
ACQUISITION_TYPE_BY_KEY["DCM:113611"] = "stationary"  # "Stationary Acquisition" (general, not CID 10013)
PHANTOM_BY_KEY: dict[str, str] = {c.key: k for k, c in PHANTOMS.items()}
TARGET_REGION_BY_KEY: dict[str, str] = {c.key: k for k, c in TARGET_REGIONS.items()} | TARGET_REGION_SYNONYMS
RADIONUCLIDE_BY_KEY: dict[str, str] = {c.key: k for k, (c, _hl) in RADIONUCLIDES.items()}
RADIOPHARMACEUTICAL_BY_KEY: dict[str, str] = {c.key: k for k, (c, _n) in RADIOPHARMACEUTICALS.items()}
ROUTE_BY_KEY: dict[str, str] = {c.key: k for k, c in ROUTES.items()}
SSDE_METHOD_BY_KEY: dict[str, str] = {c.key: k for k, (c, _size) in SSDE_METHODS.items()}
WED_METHOD_BY_KEY: dict[str, str] = {c.key: k for k, c in WED_METHODS.items()}
YES_NO_BY_KEY: dict[str, bool] = {
    Yes.key: True,
    No.key: False,
}


def canonical(key: str, table: dict[str, str], codes: dict[str, Code], fallback: str | None) -> str | None:
    """Meaning of a known code from our table (so synonyms read the same); else the file's own meaning."""
    short = table.get(key)
    if short is not None:
        return codes[short].meaning
    return fallback


def concept_key(code: Code) -> str:
    """Key of a concept name, with the legacy aliases the SRT/SCT map does not know."""
    key = code.key
    return LEGACY_CONCEPT_ALIASES.get(key, key)


AGENT_CODES: dict[str, Code] = {k: c for k, (c, _n) in RADIOPHARMACEUTICALS.items()}
NUCLIDE_CODES: dict[str, Code] = {k: c for k, (c, _h) in RADIONUCLIDES.items()}
HALF_LIFE_S: dict[str, float] = {k: h for k, (_c, h) in RADIONUCLIDES.items()}
# Administered activities (MBq) seen in practice per nuclide, diagnostic and therapeutic; used only to tell Bq from
# MBq in image headers, never to reject a value.
ACTIVITY_RANGE_MBQ: dict[str, tuple[float, float]] = {
    "F18": (10.0, 1000.0),
    "C11": (20.0, 2000.0),
    "N13": (50.0, 2000.0),
    "O15": (50.0, 5000.0),
    "Ga68": (10.0, 600.0),
    "Rb82": (300.0, 3000.0),
    "Cu64": (20.0, 600.0),
    "Zr89": (5.0, 200.0),
    "I124": (5.0, 400.0),
    "Tc99m": (5.0, 3000.0),
    "I123": (5.0, 800.0),
    "I131": (0.1, 15000.0),
    "In111": (5.0, 800.0),
    "Tl201": (20.0, 300.0),
    "Ga67": (20.0, 600.0),
    "Lu177": (50.0, 15000.0),
    "Y90": (50.0, 10000.0),
    "Ra223": (0.5, 20.0),
    "Sm153": (100.0, 5000.0),
}
DEFAULT_ACTIVITY_RANGE_MBQ = (0.1, 20000.0)
