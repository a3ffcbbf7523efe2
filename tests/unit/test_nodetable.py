"""The node table and bringup arguments: expansion, and bad input stopped before any node starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.core.config.nodetable import (
    ARGUMENTS,
    check_param_file,
    expand,
    load_deployment,
    parse_arguments,
    placement,
    ros_arguments,
)
from lab.core.errors import ConfigError

TABLE = {
    "nodes": [
        {"name": "sim", "executable": "sim", "owns_clock": True, "when": {"sim": "embedded"},
         "params": ["params/sim.yaml"], "set": {"speed": "{speed}", "robots": "{robot_names}"}},
        {"name": "navigator", "executable": "navigator", "namespace": "{robot}", "for_each": "robot",
         "params": ["params/nav.yaml"], "set": {"backend": "{navigation}"}},
        {"name": "{station}", "executable": "station", "namespace": "stations", "for_each": "station",
         "params": ["params/station.yaml"], "set": {"kind": "{kind}"}},
        {"name": "recorder", "executable": "recorder", "when": {"record": True}},
    ]
}
PARAMS = {"sim": {"/**": {"ros__parameters": {"seed": 3, "start_poses": [1.0, 2.0, 0.0]}}},
          "nav": {"/**": {"ros__parameters": {"max_speed": 0.5}}},
          "station": {"/**": {"ros__parameters": {"fault_probability": 0.1}}}}


def _station(kind: str, y: float, marker: int) -> dict:
    return {"kind": kind, "pose": [0.35, y, 0.0], "size": [0.7, 1.0, 0.9], "dock": [1.35, y, 3.1416],
            "marker": {"id": marker, "size": 0.1, "position": [0.27, 0.0, 0.9]}, "slots": {"rack": [0.15, 0.0, 0.9]}}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "params").mkdir()
    (tmp_path / "nodes.yaml").write_text(yaml.safe_dump(TABLE, sort_keys=False))
    for name in ("sim", "nav", "station"):
        (tmp_path / "params" / f"{name}.yaml").write_text(yaml.safe_dump(PARAMS[name]))
    (tmp_path / "deployments").mkdir()
    (tmp_path / "deployments" / "single.yaml").write_text(yaml.safe_dump({"hosts": {"lab": ["/*"]}}))
    (tmp_path / "stations.yaml").write_text(yaml.safe_dump(
        {"stations": {"photoreactor_1": _station("photoreactor", 3.0, 1), "charger_1": _station("charger", 5.0, 2)},
         "parking": [[3.0, 1.0, 0.0], [3.0, 2.0, 0.0], [3.0, 4.0, 0.0]]},
        sort_keys=False))
    return tmp_path


def test_defaults_expand_to_embedded_lab(config: Path) -> None:
    specs = expand(config, {})
    assert [s.full_name for s in specs] == [
        "/sim", "/robot1/navigator", "/stations/photoreactor_1", "/stations/charger_1", "/recorder"]
    sim, nav, reactor = specs[0], specs[1], specs[2]
    assert sim.parameters == {"use_sim_time": False, "speed": 60.0, "robots": ["robot1"]}
    assert nav.parameters == {"use_sim_time": True, "backend": "embedded"}
    assert reactor.parameters["kind"] == "photoreactor"
    assert nav.param_files == (config / "params" / "nav.yaml",)


def test_arguments_select_nodes_and_backends(config: Path) -> None:
    specs = expand(config, {"sim": "none", "robots": "3", "record": "false"})
    names = [s.full_name for s in specs]
    assert "/sim" not in names and "/recorder" not in names
    assert names[:3] == ["/robot1/navigator", "/robot2/navigator", "/robot3/navigator"]
    assert all(s.parameters["use_sim_time"] is False for s in specs)
    assert specs[0].parameters["backend"] == "nav2"  # auto -> full stack outside the embedded sim


@pytest.mark.parametrize("given, words", [
    ({"robot": "2"}, ["unknown bringup argument 'robot'"]),
    ({"sim": "mujoco"}, ["sim:=mujoco", "embedded, gazebo, none"]),
    ({"robots": "0"}, ["robots:=0", "at least 1"]),
    ({"speed": "fast"}, ["speed:=fast"]),
    ({"rviz": "maybe"}, ["rviz:=maybe"]),
    ({"robots": "1000000"}, ["robots:=1000000", "parking spots for 3 robots"]),
])
def test_bad_arguments_are_named(config: Path, given: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        expand(config, given)
    for word in words:
        assert word in str(err.value)


def test_malformed_yaml_names_file_and_line(config: Path) -> None:
    bad = config / "params" / "nav.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"nav\.yaml: line \d+ not valid YAML"):
        expand(config, {})


@pytest.mark.parametrize("doc, key", [
    ({"/**": {"parameters": {"a": 1}}}, "/**: must hold exactly one key, 'ros__parameters'"),
    ({"/**": {"ros__parameters": {"a": [1, "x"]}}}, "/**.ros__parameters.a: a list must hold values of one"),
    ({"/**": {"ros__parameters": {"deep": {"b": None}}}}, "/**.ros__parameters.deep.b: unsupported value"),
    ([1, 2], "must be a mapping of node name"),
])
def test_malformed_parameter_file_names_key(tmp_path: Path, doc: object, key: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        check_param_file(path)
    assert str(path) in str(err.value) and key in str(err.value)


def test_param_file_flattened_like_rcl(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"x": {"y": 2, "z": [1, 2.5]}}}}))
    assert check_param_file(path) == {"/**": {"x.y": 2, "x.z": [1.0, 2.5]}}


def test_missing_station_file_is_named(config: Path) -> None:
    (config / "stations.yaml").unlink()
    with pytest.raises(ConfigError, match=r"stations\.yaml: file not found"):
        expand(config, {})


def test_table_errors_are_named(config: Path) -> None:
    table = yaml.safe_load((config / "nodes.yaml").read_text())
    table["nodes"][1]["colour"] = "red"
    (config / "nodes.yaml").write_text(yaml.safe_dump(table, sort_keys=False))
    with pytest.raises(ConfigError, match=r"nodes\[1\]: unknown key\(s\) colour"):
        expand(config, {})


def test_ros_arguments_are_what_launch_passes(config: Path) -> None:
    spec = expand(config, {"robots": "2"})[2]
    assert spec.full_name == "/robot2/navigator"
    assert ros_arguments(spec) == [
        "--ros-args", "-r", "__node:=navigator", "-r", "__ns:=/robot2",
        "--params-file", str(config / "params" / "nav.yaml"),
        "-p", "use_sim_time:=true", "-p", "backend:=embedded"]


def test_parse_arguments_resolves_auto() -> None:
    assert parse_arguments({"sim": "gazebo"})["arm"] == "moveit"
    assert parse_arguments({"sim": "gazebo", "arm": "embedded"})["arm"] == "embedded"
    assert set(ARGUMENTS) == {"sim", "robots", "rviz", "speed", "navigation", "arm", "record", "viz",
                              "deployment", "host", "hardware", "keystore", "console", "instruments"}


def test_real_table_expands(repo_root: Path) -> None:
    """The shipped table, stations and parameter files are consistent for every sim kind."""
    for sim in ("embedded", "gazebo", "none"):
        specs = expand(repo_root / "config", {"sim": sim, "robots": "2"})
        names = [s.full_name for s in specs]
        assert ("/sim" in names) == (sim == "embedded")
        assert "/robot2/navigator" in names and "/robot2/arm" in names
        assert "/foxglove_bridge" not in names
        viz = [s.full_name for s in expand(repo_root / "config", {"sim": sim, "viz": "foxglove"})]
        assert "/foxglove_bridge" in viz
        assert any(n.startswith("/stations/") for n in names)


@pytest.mark.parametrize("file, params, words", [
    ("nav", {"max_speed": -1.0}, ["/robot1/navigator", "nav.yaml", "max_speed", "greater than 0", "-1.0"]),
    ("nav", {"max_sped": 0.5}, ["/robot1/navigator", "max_sped", "Extra inputs are not permitted"]),
    ("station", {"fault_probability": 2.0}, ["/stations/photoreactor_1", "fault_probability", "less than or equal"]),
    ("sim", {"objects": ["rack_1-rack_storage/slot1"]}, ["/sim", "objects", "'<id>@<owner>/<slot>'"]),
    ("sim", {"seed": "one"}, ["/sim", "seed", "valid integer"]),
])
def test_parameter_values_checked_against_the_node_model(config: Path, file: str, params: dict,
                                                          words: list[str]) -> None:
    """Each node's files and settings are checked against lab.core.config.params before any node starts."""
    (config / "params" / f"{file}.yaml").write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    with pytest.raises(ConfigError) as err:
        expand(config, {})
    for word in words:
        assert word in str(err.value)


def test_node_name_keys_override_wildcard_like_rcl(config: Path) -> None:
    """A bad value under '/**' overridden for the node by name is not an error, and vice versa."""
    path = config / "params" / "nav.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"max_speed": -1.0}},
                                    "/robot1/navigator": {"ros__parameters": {"max_speed": 0.4}}}))
    expand(config, {})
    path.write_text(yaml.safe_dump({"/robot1/navigator": {"ros__parameters": {"max_retries": 3}}}))
    with pytest.raises(ConfigError, match="max_retries"):
        expand(config, {})


@pytest.mark.parametrize("body, words", [
    ({"dock": ["abc", 7.7, 0.0]}, ["stations.photoreactor_1.dock", "all finite", "abc"]),
    ({"pose": [0.35, float("nan"), 0.0]}, ["stations.photoreactor_1.pose", "all finite"]),
    ({"kind": ""}, ["stations.photoreactor_1.kind"]),
])
def test_bad_station_values_stop_the_bringup(config: Path, body: dict, words: list[str]) -> None:
    doc = yaml.safe_load((config / "stations.yaml").read_text())
    doc["stations"]["photoreactor_1"].update(body)
    (config / "stations.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        expand(config, {})
    for word in words:
        assert word in str(err.value)


# --- deployments: which host runs which node --------------------------------------------------

def test_shipped_deployments_place_every_node_once(repo_root: Path) -> None:
    """single runs everything on one host; lab3 splits the same nodes over server, stations and one
    host per robot, and the hosts together run exactly the nodes of one machine."""
    config = repo_root / "config"
    for sim in ("embedded", "gazebo", "none"):
        given = {"sim": sim, "robots": "2", "viz": "foxglove", "rviz": "true"}
        everything = [s.full_name for s in expand(config, given)]
        assert [s.full_name for s in expand(config, given | {"host": "lab"})] == everything
        hosts = {h: [s.full_name for s in expand(config, given | {"deployment": "lab3", "host": h})]
                 for h in ("server", "stations", "robot1", "robot2")}
        assert sorted(sum(hosts.values(), [])) == sorted(everything)
        assert hosts["robot2"] == ["/robot2/navigator", "/robot2/arm"]
        assert all(n.startswith("/stations/") for n in hosts["stations"]) and hosts["stations"]
        assert {"/planner", "/lab_manager", "/recorder", "/safety"} <= set(hosts["server"])
        runs = placement(config, given | {"deployment": "lab3", "host": "robot1"})
        assert runs("/robot1/nav2") and runs("/robot1/move_group") and not runs("/gazebo")
        assert not runs("/robot2/robot_state_publisher")


def _deployment(config: Path, hosts: object) -> None:
    (config / "deployments" / "mine.yaml").write_text(yaml.safe_dump({"hosts": hosts}))


@pytest.mark.parametrize("hosts, given, words", [
    ({"a": ["/*"], "b": ["/recorder"]}, {}, ["mine.yaml", "hosts a, b would all run node /recorder"]),
    ({"a": ["/sim", "/recorder", "/stations/*"]}, {}, ["mine.yaml", "no host runs node /robot1/navigator"]),
    ({"a": ["/*"]}, {"host": "b"}, ["host:=b", "no such host", "its hosts: a"]),
    ({"a": "/*"}, {}, ["hosts.a", "list of node names"]),
    ({"a": ["planner"]}, {}, ["hosts.a", "starting with '/'"]),
    ({"{robot}": ["/{robot}/*"], "robot1": ["/*"]}, {}, ["host robot1 is declared twice"]),
    ({"a b": ["/*"]}, {}, ["host name 'a b'"]),
    ([], {}, ["key 'hosts'"]),
])
def test_bad_deployments_are_refused_before_anything_starts(config: Path, hosts: object, given: dict,
                                                             words: list[str]) -> None:
    _deployment(config, hosts)
    with pytest.raises(ConfigError) as err:
        expand(config, {"deployment": "mine", **given})
    for word in words:
        assert word in str(err.value)


def test_unknown_deployment_names_the_known_ones(config: Path) -> None:
    with pytest.raises(ConfigError, match="deployment:=lab9: no file .*known deployments: single"):
        expand(config, {"deployment": "lab9"})


def test_robot_hosts_follow_the_robot_count(config: Path, tmp_path: Path) -> None:
    _deployment(config, {"server": ["/sim", "/recorder", "/stations/*"], "{robot}": ["/{robot}/*"]})
    assert [s.full_name for s in expand(config, {"deployment": "mine", "robots": "3", "host": "robot3"})] == [
        "/robot3/navigator"]
    with pytest.raises(ConfigError, match="host:=robot3"):
        expand(config, {"deployment": "mine", "robots": "2", "host": "robot3"})
    own = tmp_path / "elsewhere.yaml"  # a deployment of one's own, by path
    own.write_text(yaml.safe_dump({"hosts": {"one": ["/*"]}}))
    assert load_deployment(config, str(own), ["robot1"]).hosts == {"one": ("/*",)}


def test_a_table_naming_an_executable_the_package_lacks_is_refused_before_anything_starts(tmp_path: Path) -> None:
    import shutil

    from lab.bringup.processes import plan
    from lab.core.errors import ConfigError

    root = Path(__file__).resolve().parents[2]
    config = tmp_path / "config"
    shutil.copytree(root / "config", config)
    assert plan({"robots": "1"}, config)  # the shipped table: every executable exists
    nodes = config / "nodes.yaml"
    nodes.write_text(nodes.read_text().replace("executable: traffic", "executable: no_such_node"))
    with pytest.raises(ConfigError, match="no_such_node that package lab does not have"):
        plan({"robots": "1"}, config)


def test_a_bringup_argument_given_twice_is_refused() -> None:
    from lab.bringup.processes import parse_cli_arguments

    assert parse_cli_arguments(["robots:=2", "speed:=10"]) == {"robots": "2", "speed": "10"}
    with pytest.raises(ConfigError, match=r"argument robots given twice \(robots:=1, robots:=2\): give it once"):
        parse_cli_arguments(["robots:=1", "robots:=2"])


def test_the_single_host_deployment_keeps_dds_on_the_host(tmp_path: Path) -> None:
    """deployment single (dds: local): every node gets Fast DDS's local-only profile and discovery
    left to it; lab3 (dds: network) adds nothing; a profile the user named wins; a bad value is refused."""
    from lab.core.config.nodetable import DDS_PROFILE_VARIABLES, dds_environment, expand
    from lab.paths import share_dir

    config = share_dir() / "config"

    env = dds_environment(config, {}, {})
    assert env == {**{v: str(config / "dds" / "local_only.xml") for v in DDS_PROFILE_VARIABLES},
                   "ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT"}
    assert (config / "dds" / "local_only.xml").is_file()
    assert all(dict(spec.env) == env for spec in expand(config, {}))
    assert dds_environment(config, {"deployment": "lab3"}, {}) == {}
    assert dds_environment(config, {}, {"FASTRTPS_DEFAULT_PROFILES_FILE": "/site/profile.xml"}) == {}
    bad = tmp_path / "bad.yaml"
    bad.write_text("dds: everywhere\nhosts:\n  lab: ['/*']\n")
    with pytest.raises(ConfigError, match="dds must be 'local'"):
        dds_environment(config, {"deployment": str(bad)}, {})


def test_a_keystore_puts_every_lab_node_in_its_enclave(tmp_path: Path) -> None:
    """keystore:=DIR: every node runs with SROS2 enforced in /lab<its name>; a folder that is no
    keystore, or a full stack (whose nodes no policy covers), is refused before anything starts."""
    from lab.core.config.nodetable import expand
    from lab.paths import share_dir

    config = share_dir() / "config"
    (tmp_path / "enclaves").mkdir()
    specs = expand(config, {"keystore": str(tmp_path)})
    for spec in specs:
        assert spec.arguments[-3:] == ("--ros-args", "--enclave", f"/lab{spec.full_name}")
        assert (spec.env["ROS_SECURITY_KEYSTORE"], spec.env["ROS_SECURITY_ENABLE"],
                spec.env["ROS_SECURITY_STRATEGY"]) == (str(tmp_path), "true", "Enforce")
    with pytest.raises(ConfigError, match="no SROS2 keystore there"):
        expand(config, {"keystore": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="covers the lab's own nodes only"):
        expand(config, {"keystore": str(tmp_path), "sim": "gazebo"})


def test_instruments_sila_serves_each_processing_station_and_points_the_station_at_its_server(repo_root: Path) -> None:
    from lab.core.config.nodetable import instrument_port

    specs = expand(repo_root / "config", {"instruments": "sila", "deployment": "lab3"})
    servers = {s.name: s for s in specs if s.executable == "instrument"}
    stations = {s.name: s for s in specs if s.executable == "station"}
    assert set(servers) == set(stations) - {"rack_storage", "charger"}  # kinds that run no process have none
    for name, server in servers.items():
        port = stations[name].parameters["sila_port"]
        assert stations[name].parameters["backend"] == "sila" and server.full_name == f"/instruments/{name}"
        assert server.arguments[server.arguments.index("--port") + 1] == str(port)
        assert stations[name].parameters["sila_ca"] == server.arguments[server.arguments.index("--cert-out") + 1]
    assert len({s.parameters["sila_port"] for s in stations.values()}) == len(stations)
    assert instrument_port(0, {"ROS_DOMAIN_ID": "3"}) == instrument_port(39, {"ROS_DOMAIN_ID": "2"}) + 1
    on_stations = expand(repo_root / "config", {"instruments": "sila", "deployment": "lab3", "host": "stations"})
    assert {s.full_name for s in on_stations} >= {f"/instruments/{n}" for n in servers}
    default = expand(repo_root / "config", {})
    assert not any(s.executable == "instrument" for s in default)
    assert all("backend" not in s.parameters for s in default if s.executable == "station")
    with pytest.raises(ConfigError, match="instruments:=sila serves the embedded simulation's emulated instruments; "
                                          "with sim:=none give each station backend: sila"):
        expand(repo_root / "config", {"instruments": "sila", "sim": "none"})  # real instruments: a params file
