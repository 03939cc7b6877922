"""`census accept` edits retrieve_options.yaml without losing comments or order."""

import shutil

from nmdose.census.descriptions import add_to_yaml
from tests.support import REPO


def test_accept_appends_descriptions_and_keeps_comments_and_order(tmp_path):
    path = tmp_path / "retrieve_options.yaml"
    shutil.copy(REPO / "config" / "retrieve_options.yaml", path)
    before = path.read_text(encoding="utf-8")
    added = add_to_yaml(path, ["전신 뼈 스캔", "Low Dose Chest CT", "PET-CT PSMA"])
    after = path.read_text(encoding="utf-8")
    assert added == ["전신 뼈 스캔", "Low Dose Chest CT"]  # PET-CT PSMA was there already
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert comments == [line for line in after.splitlines() if line.lstrip().startswith("#")]
    assert (
        after.index("  - CT Brain")
        < after.index("전신 뼈 스캔")
        < after.index("Low Dose Chest CT")
        < after.index("modality_rules:")
    )
    import yaml

    data = yaml.safe_load(after)
    assert data["target_descriptions"][-2:] == ["전신 뼈 스캔", "Low Dose Chest CT"]
    assert list(data) == list(yaml.safe_load(before))
    assert "date_from: null" in after
    assert add_to_yaml(path, ["Low Dose Chest CT"]) == [] and path.read_text(encoding="utf-8") == after
