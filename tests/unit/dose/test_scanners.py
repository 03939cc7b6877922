"""The scanner identity rule (nmdose.dose.scanners, docs/dose.md "Scanners"), without a database."""

from __future__ import annotations

import datetime as dt

from nmdose.dose.scanners import Equipment, display_name, equipment, identity_keys, updated

STUDY = {"manufacturer": " SIEMENS ", "model_name": "SOMATOM  Force", "station_name": "CTRAD1",
         "study_date": dt.date(2024, 3, 1)}  # fmt: skip


def test_equipment_takes_the_study_fields_and_every_objects_serial_software_and_uid():
    objects = [
        {"device_serial_number": None, "software_versions": "VB20A"},
        {"device_serial_number": "FC75412", "software_versions": "VB20A", "device_observer_uid": "1.2.3"},
        {"device_serial_number": "other", "software_versions": "VB30A", "device_observer_uid": "1.2.3"},
    ]
    eq = equipment(objects, STUDY)
    assert eq == Equipment("SIEMENS", "SOMATOM Force", "FC75412", "CTRAD1", ("VB20A", "VB30A"), ("1.2.3",),
                           dt.date(2024, 3, 1))  # fmt: skip


def test_keys_are_strongest_first_uid_then_serial_then_station():
    eq = Equipment("SIEMENS", "SOMATOM Force", "FC75412", "CTRAD1", (), ("1.2.3",))
    assert identity_keys(eq) == [
        "uid:1.2.3",
        "serial:siemens|somatom force|FC75412",
        "station:siemens|somatom force|ctrad1",
    ]
    assert identity_keys(Equipment("GE", "Discovery", None, "NM1")) == ["station:ge|discovery|nm1"]
    # no serial key without manufacturer and model: a serial number alone names no device
    assert identity_keys(Equipment(None, None, "123", "X")) == ["station:||x"]
    assert identity_keys(Equipment()) == []


def test_keys_ignore_case_and_spaces_of_the_names_but_not_the_station_change():
    a = equipment([{"device_serial_number": "S1"}], {**STUDY, "manufacturer": "siemens", "station_name": "A"})
    b = equipment(
        [{"device_serial_number": "S1"}], {**STUDY, "manufacturer": "SIEMENS ", "station_name": "B"}
    )
    assert identity_keys(a)[0] == identity_keys(b)[0]  # same serial key: one scanner
    assert identity_keys(a)[-1] != identity_keys(b)[-1]  # the station keys differ


def test_display_name_is_model_and_station():
    assert display_name(Equipment("SIEMENS", "SOMATOM Force", station="CTRAD1")) == "SOMATOM Force (CTRAD1)"
    assert display_name(Equipment("SIEMENS")) == "SIEMENS"
    assert display_name(Equipment(station="NM1")) == "NM1"
    assert display_name(Equipment()) == "scanner"


def test_a_new_software_version_and_station_are_added_with_their_dates_never_replaced():
    row = {"station_names": {"CTRAD1": {"first": "2020-01-01", "last": "2023-12-31"}},
           "software_versions": {"VB20A": {"first": "2020-01-01", "last": "2023-12-31"}},
           "device_observer_uids": ["1.2.3"], "device_observer_uid": "1.2.3", "device_serial_number": "S1",
           "manufacturer": "SIEMENS", "model_name": "Force",
           "first_study_date": dt.date(2020, 1, 1), "last_study_date": dt.date(2023, 12, 31)}  # fmt: skip
    eq = Equipment("SIEMENS", "Force", "S1", "CT-ER-1", ("VB30A",), ("1.2.3", "1.2.4"), dt.date(2024, 2, 1))
    changes = updated(row, eq)
    assert changes["station_names"] == {"CTRAD1": {"first": "2020-01-01", "last": "2023-12-31"},
                                        "CT-ER-1": {"first": "2024-02-01", "last": "2024-02-01"}}  # fmt: skip
    assert changes["software_versions"]["VB30A"] == {"first": "2024-02-01", "last": "2024-02-01"}
    assert changes["device_observer_uids"] == ["1.2.3", "1.2.4"] and "device_observer_uid" not in changes
    assert changes["last_study_date"] == dt.date(2024, 2, 1) and "first_study_date" not in changes
    # an older study of a known station widens its dates; the same study again changes nothing
    older = Equipment("SIEMENS", "Force", "S1", "CTRAD1", ("VB20A",), ("1.2.3",), dt.date(2019, 6, 1))
    assert updated(row, older) == {
        "station_names": {"CTRAD1": {"first": "2019-06-01", "last": "2023-12-31"}},
        "software_versions": {"VB20A": {"first": "2019-06-01", "last": "2023-12-31"}},
        "first_study_date": dt.date(2019, 6, 1),
    }
    same = Equipment("SIEMENS", "Force", "S1", "CTRAD1", ("VB20A",), ("1.2.3",), dt.date(2022, 1, 1))
    assert updated(row, same) == {}


def test_a_missing_serial_is_filled_in_never_overwritten():
    row = {"device_serial_number": None, "manufacturer": "GE", "model_name": "D"}
    assert updated(row, Equipment("GE", "D", "123"))["device_serial_number"] == "123"
    assert "device_serial_number" not in updated(
        {**row, "device_serial_number": "999"}, Equipment("GE", "D", "1")
    )


def test_the_parser_reads_the_device_observer_uid_and_the_software_versions(files):
    from pydicom import dcmread

    from nmdose.dose.parse import parse_file
    from nmdose.simulate import rdsr as R

    study = R.DoseStudyInfo(device_observer_uid="1.2.826.0.1.3680043.8.498.99", software_versions="VB20A")
    got = parse_file(files.ct(study=study))
    assert (got["device_observer_uid"], got["software_versions"], got["warnings"]) == (
        "1.2.826.0.1.3680043.8.498.99",
        "VB20A",
        [],
    )
    # several SoftwareVersions values: joined by a backslash, as DICOM writes them
    path = files.ct(study=study)
    ds = dcmread(path)
    ds.SoftwareVersions = ["VB20A", "SP1"]
    ds.save_as(path)
    assert parse_file(path)["software_versions"] == "VB20A\\SP1"
    # an image carries no dose report tree: no Device Observer UID, its SoftwareVersions all the same
    image = parse_file(files.image(study=study))
    assert (image["device_observer_uid"], image["software_versions"]) == (None, "VB20A")
