"""config/workflows.yaml: what the lab manager does with a batch."""

from pathlib import Path

import pytest
import yaml

from lab.core.errors import ConfigError, InvalidGoal
from lab.core.operations.workflow import load_workflows, parse_workflows, workflow
from lab.core.robot.world import load_stations


def test_shipped_workflows_name_only_stations_the_lab_has(repo_root: Path) -> None:
    kinds = set(load_stations(repo_root / "config" / "stations.yaml").kinds().values())
    flows = load_workflows(repo_root / "config" / "workflows.yaml", kinds)
    photo = flows["photocatalysis"]
    assert photo.capacity == 16 and photo.carrier == "rack"
    assert [s.kind for s in photo.steps] == ["solid_dispenser", "liquid_dispenser", "photoreactor",
                                             "gas_chromatograph"]
    assert {"crossed_barrel", "photopolymer"} <= set(flows)
    with pytest.raises(InvalidGoal, match="unknown workflow 'nope'"):
        workflow(flows, "nope")


@pytest.mark.parametrize(("doc", "key"), [
    ({"workflows": {"w": {"carrier": "rack", "capacity": 0, "home": "h", "steps": ["a"]}}}, "w.capacity"),
    ({"workflows": {"w": {"carrier": "rack", "capacity": 2, "home": "h", "steps": [{"knd": "a"}]}}}, "steps[0]"),
    ({"workflows": {"w": {"carrier": "rack", "capacity": 2, "home": "h", "steps": ["zz"]}}}, "steps[0].kind"),
    ({"workflows": {"w": {"carrier": "rack", "capacity": 2, "steps": ["a"]}}}, "w.home"),
    ({"flows": {}}, "workflows"),
])
def test_malformed_workflows_name_the_key(doc: dict, key: str, tmp_path: Path) -> None:
    path = tmp_path / "workflows.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as info:
        load_workflows(path, {"a", "h"})
    assert str(path) in str(info.value) and key in str(info.value)


def test_steps_may_be_written_short() -> None:
    flows = parse_workflows({"workflows": {"w": {"carrier": "tray", "capacity": 8, "home": "h",
                                                 "steps": ["a", {"kind": "b", "process": "cure"}]}}}, "x")
    assert [(s.kind, s.process) for s in flows["w"].steps] == [("a", ""), ("b", "cure")]
