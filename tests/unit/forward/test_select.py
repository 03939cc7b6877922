"""Selection rules: every dose object, one image per image series, nothing from series without images."""

from __future__ import annotations

from nmdose import sop_classes as K
from nmdose.forward import select as S
from nmdose.forward.select import (
    InstanceDetails,
    InstanceFacts,
    Role,
    SeriesFacts,
    select_series,
    select_study,
)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
NM_IMAGE = "1.2.840.10008.5.1.4.1.1.20"
GRAYSCALE_PS = "1.2.840.10008.5.1.4.1.1.11.1"
KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
RAW_DATA = "1.2.840.10008.5.1.4.1.1.66"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def inst(uid: str, sop_class: str | None, number: int | None = None, **kw) -> InstanceFacts:
    return InstanceFacts(f"id-{uid}", uid, sop_class, number, **kw)


def series(modality: str, *instances: InstanceFacts, description: str = "", uid: str = "s") -> SeriesFacts:
    return SeriesFacts(f"id-{uid}", uid, modality, description, list(instances))


def details_from(table: dict[str, InstanceDetails]):
    return lambda i: table.get(i.sop_instance_uid, InstanceDetails())


def roles(selected) -> list[tuple[str, str]]:
    return [(s.instance.sop_instance_uid, s.role) for s in selected]


def test_xray_and_radiopharmaceutical_dose_srs_are_always_dose_objects():
    s = series(
        "SR", inst("a", K.XRAY_RADIATION_DOSE_SR, 1), inst("b", K.RADIOPHARMACEUTICAL_RADIATION_DOSE_SR, 2)
    )
    assert roles(select_series(s)) == [("a", Role.DOSE_OBJECT), ("b", Role.DOSE_OBJECT)]


def test_enhanced_xray_radiation_dose_sr_is_a_dose_object_without_reading_its_title():
    """88.76 (TID 10040) was skipped as an "other SR class": a dose report the dose PACS never got."""
    s = series("SR", inst("e", K.ENHANCED_XRAY_RADIATION_DOSE_SR))
    assert roles(select_series(s, details_from({}))) == [("e", Role.DOSE_OBJECT)]


def test_enhanced_and_comprehensive_sr_are_dose_objects_only_with_a_dose_report_title():
    s = series(
        "SR",
        inst("esr-ct", K.ENHANCED_SR, 1),
        inst("csr-rp", K.COMPREHENSIVE_SR, 2),
        inst("esr-other", K.ENHANCED_SR, 3),
        inst("csr-none", K.COMPREHENSIVE_SR, 4),
    )
    details = details_from(
        {
            "esr-ct": InstanceDetails(document_title=("DCM", "113701")),
            "csr-rp": InstanceDetails(document_title=("DCM", "113500")),
            "esr-other": InstanceDetails(document_title=("DCM", "126000")),  # Imaging Measurement Report
        }
    )
    assert roles(select_series(s, details)) == [("esr-ct", Role.DOSE_OBJECT), ("csr-rp", Role.DOSE_OBJECT)]


def test_dose_title_from_another_scheme_is_not_a_dose_report():
    s = series("SR", inst("x", K.ENHANCED_SR, 1))
    assert select_series(s, details_from({"x": InstanceDetails(document_title=("99PHI", "113701"))})) == []


def test_general_sr_with_unknown_title_counts_as_dose_only_when_asked():
    s = series("SR", inst("x", K.ENHANCED_SR, 1))
    assert select_series(s) == []
    assert roles(select_series(s, unknown_title_is_dose=True)) == [("x", Role.DOSE_OBJECT)]


def test_other_sr_classes_and_series_without_images_are_skipped():
    for sop_class, modality in (
        (BASIC_TEXT_SR, "SR"),
        (GRAYSCALE_PS, "PR"),
        (KEY_OBJECT_SELECTION, "KO"),
        (RAW_DATA, "CT"),  # raw data kept in a CT-labelled series
    ):
        assert select_series(series(modality, inst("a", sop_class, 1), inst("b", sop_class, 2))) == []


def test_series_with_unknown_sop_class_falls_back_to_modality():
    assert select_series(series("PR", inst("a", None, 1))) == []
    assert roles(select_series(series("CT", inst("a", None, 1)))) == [("a", Role.SAMPLE_IMAGE)]


def test_ct_series_gets_its_first_image_by_instance_number():
    s = series("CT", inst("c", CT_IMAGE, 3), inst("a", CT_IMAGE, 10), inst("b", CT_IMAGE, 2))
    assert roles(select_series(s)) == [("b", Role.SAMPLE_IMAGE)]


def test_missing_instance_numbers_sort_last_and_ties_are_deterministic():
    s = series("CT", inst("z", CT_IMAGE, None), inst("y", CT_IMAGE, 5), inst("x", CT_IMAGE, 5))
    assert roles(select_series(s)) == [("x", Role.SAMPLE_IMAGE)]
    assert roles(select_series(series("CT", inst("q", CT_IMAGE), inst("p", CT_IMAGE)))) == [
        ("p", Role.SAMPLE_IMAGE)
    ]


def test_pt_sample_carries_the_radiopharmaceutical_sequence():
    s = series("PT", inst("p1", PET_IMAGE, 1), inst("p2", PET_IMAGE, 2), inst("p3", PET_IMAGE, 3))
    details = details_from({"p2": InstanceDetails(has_radiopharmaceutical_info=True)})
    assert roles(select_series(s, details)) == [("p2", Role.SAMPLE_IMAGE)]


def test_pt_without_the_sequence_anywhere_falls_back_to_the_first_image():
    s = series("PT", inst("p2", PET_IMAGE, 2), inst("p1", PET_IMAGE, 1))
    assert roles(select_series(s, details_from({}))) == [("p1", Role.SAMPLE_IMAGE)]


def test_nm_sample_prefers_the_radiopharmaceutical_and_asks_lazily():
    asked: list[str] = []

    def details(i: InstanceFacts) -> InstanceDetails:
        asked.append(i.sop_instance_uid)
        return InstanceDetails(has_radiopharmaceutical_info=True)

    s = series("NM", *[inst(f"n{k}", NM_IMAGE, k) for k in range(1, 200)])
    assert roles(select_series(s, details)) == [("n1", Role.SAMPLE_IMAGE)]
    assert asked == ["n1"]  # one look, not 199


def test_pt_from_a_source_that_cannot_say_takes_the_first_image():
    s = series("PT", inst("p2", PET_IMAGE, 2), inst("p1", PET_IMAGE, 1))
    assert roles(select_series(s)) == [("p1", Role.SAMPLE_IMAGE)]


def test_philips_dose_info_secondary_capture_is_a_dose_screen():
    s = series("CT", inst("d", K.SECONDARY_CAPTURE, 1), description="Dose Info")
    assert roles(select_series(s)) == [("d", Role.DOSE_SCREEN)]


def test_dose_screen_recognised_by_exposure_dose_sequence_or_image_type():
    s = series(
        "OT", inst("e", K.SECONDARY_CAPTURE, 1), inst("f", K.SECONDARY_CAPTURE, 2), description="Screen"
    )
    details = details_from(
        {
            "e": InstanceDetails(has_exposure_dose_sequence=True),
            "f": InstanceDetails(image_type=("DERIVED", "SECONDARY", "DOSE_INFO")),
        }
    )
    assert roles(select_series(s, details)) == [("e", Role.DOSE_SCREEN), ("f", Role.DOSE_SCREEN)]
    cfind = series("CT", inst("g", K.SECONDARY_CAPTURE, 1, image_type=("DERIVED", "SECONDARY", "DOSE_INFO")))
    assert roles(select_series(cfind)) == [("g", Role.DOSE_SCREEN)]


def test_ordinary_secondary_capture_is_an_image_series_sample():
    s = series("OT", inst("k", K.SECONDARY_CAPTURE, 2), inst("j", K.SECONDARY_CAPTURE, 1), description="MIP")
    assert roles(select_series(s, details_from({}))) == [("j", Role.SAMPLE_IMAGE)]


def test_ge_and_siemens_dose_pages_by_series_description():
    for description in ("Dose Report", "Patient Protocol", "dose summary"):
        s = series("CT", inst("d", K.SECONDARY_CAPTURE, 1), description=description)
        assert roles(select_series(s)) == [("d", Role.DOSE_SCREEN)]


def test_pet_ct_study_dose_objects_plus_one_image_per_image_series():
    study = [
        series("CT", inst("topo", CT_IMAGE, 1), uid="s1"),
        series("CT", *[inst(f"ct{k}", CT_IMAGE, k) for k in range(1, 300)], uid="s2"),
        series("PT", *[inst(f"pt{k}", PET_IMAGE, k) for k in range(1, 100)], uid="s3"),
        series("SR", inst("rdsr", K.XRAY_RADIATION_DOSE_SR, 1), uid="s4"),
        series("SR", inst("rrdsr", K.RADIOPHARMACEUTICAL_RADIATION_DOSE_SR, 1), uid="s5"),
        series("PR", inst("ps", GRAYSCALE_PS, 1), uid="s6"),
    ]
    details = details_from(
        {f"pt{k}": InstanceDetails(has_radiopharmaceutical_info=True) for k in range(1, 100)}
    )
    selected = select_study(study, details)
    assert roles(selected) == [
        ("topo", Role.SAMPLE_IMAGE),
        ("ct1", Role.SAMPLE_IMAGE),
        ("pt1", Role.SAMPLE_IMAGE),
        ("rdsr", Role.DOSE_OBJECT),
        ("rrdsr", Role.DOSE_OBJECT),
    ]
    assert [s.series_instance_uid for s in selected] == ["s1", "s2", "s3", "s4", "s5"]


def test_image_series_with_an_rdsr_in_it_gets_both():
    s = series(
        "CT", inst("i1", CT_IMAGE, 1), inst("i2", CT_IMAGE, 2), inst("r", K.XRAY_RADIATION_DOSE_SR, 99)
    )
    assert roles(select_series(s)) == [("r", Role.DOSE_OBJECT), ("i1", Role.SAMPLE_IMAGE)]


def test_instance_known_to_hold_no_pixel_data_is_not_an_image():
    assert S.is_image(series("CT"), inst("a", CT_IMAGE, 1, has_pixel_data=False)) is False
    assert S.is_image(series("CT"), inst("a", CT_IMAGE, 1, has_pixel_data=True)) is True
