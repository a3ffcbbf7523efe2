"""The node table (config/nodes.yaml) and the bringup arguments, expanded into node specs.

Both launch/bringup.launch.py and `lab bringup` call :func:`expand`, so the two start exactly
the same nodes with exactly the same parameters. Everything here is pure: it reads YAML
files and returns dataclasses; it raises :class:`ConfigError` naming the file and key on bad
input, before any node starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

from lab.core import yamlfile
from lab.core.config.params import NODE_PARAMS, validate
from lab.core.errors import ConfigError
from lab.core.robot.world import load_stations

Scalar = bool | int | float | str
ParamValue = Scalar | list[Any]


@dataclass(frozen=True)
class Argument:
    """A bringup argument: `lab bringup name:=value`, `ros2 launch lab bringup.launch.py name:=value`."""

    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()
    parse: Callable[[str], Any] = str


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError("must be true or false")


ARGUMENTS: dict[str, Argument] = {
    a.name: a
    for a in (
        Argument("sim", "embedded", "simulation: embedded | gazebo | none (real hardware)",
                 ("embedded", "gazebo", "none")),
        Argument("robots", "1", "number of mobile manipulators (namespaces robot1..robotN)",
                 parse=_positive_int),
        Argument("rviz", "false", "start RViz with rviz/lab.rviz (where rviz2 is installed)",
                 ("true", "false"), _bool),
        Argument("speed", "60.0", "embedded simulation speed: simulated seconds per wall second",
                 parse=_positive_float),
        Argument("navigation", "auto", "navigation backend: auto | embedded | nav2",
                 ("auto", "embedded", "nav2")),
        Argument("arm", "auto", "manipulation backend: auto | embedded | moveit",
                 ("auto", "embedded", "moveit")),
        Argument("record", "true", "record the lab's topics to MCAP", ("true", "false"), _bool),
        Argument("viz", "none", "live view: none | foxglove (a Foxglove WebSocket server on port 8765)",
                 ("none", "foxglove")),
        Argument("console", "true", "the operator's console in a browser (http://127.0.0.1:8080; accounts: "
                 "lab users add)", ("true", "false"), _bool),
        Argument("instruments", "default", "default: each station's instrument backend as its parameter file "
                 "says (the in-process emulator unless set); sila: every station's emulated instrument served "
                 "as a SiLA 2 server (lab instrument serve) and driven through it (docs/instruments.md)",
                 ("default", "sila")),
        Argument("deployment", "single", "which host runs which node: config/deployments/<name>.yaml "
                 "(single | lab3 | a path to a file of your own)"),
        Argument("host", "", "start only this host's nodes of the deployment (empty: every host's, "
                 "all on this machine)"),
        Argument("hardware", "mock_components/GenericSystem", "sim:=none: the arm's ros2_control hardware "
                 "plugin (the robot's driver; mock_components/GenericSystem, the default, for a dry run)"),
        Argument("keystore", "", "an SROS2 keystore (lab security keystore): every lab node runs in its enclave "
                 "/lab<node>, security enforced (a Jazzy install with sros2; the embedded lab only)"),
    )
}

def instrument_port(index: int, environ: Mapping[str, str] = os.environ) -> int:
    """The TCP port of the `index`-th station's SiLA 2 server under instruments:=sila: 40 ports per
    ROS domain from 50100 (a test's lab on domain N and another's on N+1 never share one)."""
    domain = int(environ.get("ROS_DOMAIN_ID", "0") or 0)
    return 50100 + 40 * domain + index


_FULL_STACK_BACKEND = {"navigation": "nav2", "arm": "moveit"}


@dataclass(frozen=True)
class NodeSpec:
    """One node to start: what `ros2 run` / launch_ros.actions.Node need."""

    name: str
    executable: str
    package: str = "lab"
    namespace: str = ""
    param_files: tuple[Path, ...] = ()
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)
    arguments: tuple[str, ...] = ()
    remappings: tuple[tuple[str, str], ...] = ()
    required: bool = True
    env: Mapping[str, str] = field(default_factory=dict)  # added to the node's environment (dds_environment)

    @property
    def full_name(self) -> str:
        ns = self.namespace.strip("/")
        return f"/{ns}/{self.name}" if ns else f"/{self.name}"


def parse_arguments(given: Mapping[str, str]) -> dict[str, Any]:
    """Validate bringup arguments (strings, as typed) and resolve defaults and `auto`."""
    unknown = sorted(set(given) - set(ARGUMENTS))
    if unknown:
        raise ConfigError(
            f"unknown bringup argument {', '.join(repr(u) for u in unknown)}; "
            f"known: {', '.join(ARGUMENTS)}"
        )
    values: dict[str, Any] = {}
    for name, arg in ARGUMENTS.items():
        text = str(given.get(name, arg.default))
        if arg.choices and text.lower() not in arg.choices:
            raise ConfigError(f"bringup argument {name}:={text}: must be one of {', '.join(arg.choices)}")
        try:
            values[name] = arg.parse(text.lower() if arg.choices else text)
        except ValueError as exc:
            raise ConfigError(f"bringup argument {name}:={text}: {exc}") from None
    for key, full in _FULL_STACK_BACKEND.items():
        if values[key] == "auto":
            values[key] = "embedded" if values["sim"] == "embedded" else full
    if values["instruments"] == "sila" and values["sim"] != "embedded":
        raise ConfigError("bringup argument instruments:=sila serves the embedded simulation's emulated instruments; "
                          f"with sim:={values['sim']} give each station backend: sila and its instrument's address "
                          "in its parameter file (docs/instruments.md)")
    values["robot_names"] = [f"robot{i + 1}" for i in range(values["robots"])]
    return values


def load_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return yamlfile.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{path}:{line} not valid YAML: {getattr(exc, 'problem', exc)}") from None


def check_param_file(path: Path) -> dict[str, dict[str, ParamValue]]:
    """Validate a ros__parameters YAML file; return {node pattern: {param: value}}.

    The structure rcl accepts: a mapping of node names (or '/**') to a mapping holding
    exactly `ros__parameters`, whose values are scalars or lists of one scalar type.
    Nested mappings are flattened to dotted names, as rcl does.
    """
    doc = load_yaml(path)
    if not isinstance(doc, dict) or not doc:
        raise ConfigError(f"{path}: must be a mapping of node name (or '/**') to 'ros__parameters'")
    out: dict[str, dict[str, ParamValue]] = {}
    for node, body in doc.items():
        if not isinstance(body, dict) or set(body) != {"ros__parameters"}:
            raise ConfigError(f"{path}: {node}: must hold exactly one key, 'ros__parameters'")
        params = body["ros__parameters"]
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ConfigError(f"{path}: {node}.ros__parameters: must be a mapping")
        out[str(node)] = _flatten(path, f"{node}.ros__parameters", params)
    return out


def _flatten(path: Path, where: str, params: dict[str, Any], prefix: str = "") -> dict[str, ParamValue]:
    flat: dict[str, ParamValue] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(path, where, value, f"{name}."))
        elif isinstance(value, list):
            kinds = {type(v) for v in value}
            if value and (len(kinds) > 1 or not kinds <= {bool, int, float, str}):
                if kinds == {int, float}:
                    flat[name] = [float(v) for v in value]
                    continue
                raise ConfigError(f"{path}: {where}.{name}: a list must hold values of one scalar type")
            flat[name] = value
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            raise ConfigError(f"{path}: {where}.{name}: unsupported value {value!r}")
    return flat


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _substitute(value: Any, context: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, list):
        return [_substitute(v, context, where) for v in value]
    if not isinstance(value, str):
        return value
    whole = _PLACEHOLDER.fullmatch(value)
    if whole:
        if whole.group(1) not in context:
            raise ConfigError(f"{where}: unknown placeholder {value}")
        return context[whole.group(1)]

    def one(match: re.Match[str]) -> str:
        if match.group(1) not in context:
            raise ConfigError(f"{where}: unknown placeholder {{{match.group(1)}}}")
        return str(context[match.group(1)])

    return _PLACEHOLDER.sub(one, value)


_ENTRY_KEYS = {"name", "executable", "package", "namespace", "for_each", "when", "params", "set",
               "arguments", "remap", "required", "owns_clock"}


def _remappings(items: Any, context: Mapping[str, Any], where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(items, list):
        raise ConfigError(f"{where}: must be a list of 'from:=to'")
    pairs = []
    for item in items:
        source, sep, target = str(_substitute(item, context, where)).partition(":=")
        if not sep or not source or not target:
            raise ConfigError(f"{where}: {item!r} is not 'from:=to'")
        pairs.append((source, target))
    return tuple(pairs)


def expand(config_dir: Path, given: Mapping[str, str], table: str = "nodes.yaml") -> list[NodeSpec]:
    """The nodes to start for these bringup arguments, parameter files checked."""
    args = parse_arguments(given)
    spots = len(load_stations(config_dir / "stations.yaml").parking)
    if args["robots"] > max(1, spots):
        raise ConfigError(f"bringup argument robots:={args['robots']}: the lab has parking spots for {spots} "
                          f"robots ({config_dir / 'stations.yaml'}: parking); each robot but the first starts "
                          "on one and every robot clears a dock to its own: add spots to run more")
    table_path = config_dir / table
    doc = load_yaml(table_path)
    entries = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{table_path}: key 'nodes' must be a list of node entries")
    stations: list[tuple[str, str]] | None = None
    specs: list[NodeSpec] = []
    checked: dict[Path, None] = {}
    for i, entry in enumerate(entries):
        where = f"{table_path}: nodes[{i}]"
        if not isinstance(entry, dict) or not {"name", "executable"} <= set(entry):
            raise ConfigError(f"{where}: needs 'name' and 'executable'")
        extra = set(entry) - _ENTRY_KEYS
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        when = entry.get("when") or {}
        if not isinstance(when, dict):
            raise ConfigError(f"{where}.when: must be a mapping of argument to value")
        for key, wanted in when.items():
            if key not in args:
                raise ConfigError(f"{where}.when: unknown argument {key!r}")
            if args[key] != wanted:
                break
        else:
            contexts: list[dict[str, Any]]
            for_each = entry.get("for_each", "") or ""
            base = dict(args, share=str(config_dir.parent))
            if for_each == "robot":
                contexts = [dict(base, robot=r) for r in args["robot_names"]]
            elif for_each == "station":
                if stations is None:
                    stations = list(load_stations(config_dir / "stations.yaml").kinds().items())
                contexts = [dict(base, station=s, kind=k, instrument_port=instrument_port(i))
                            for i, (s, k) in enumerate(stations)]
            elif for_each == "instrument":  # the stations whose kind runs a process (an instrument to serve)
                if stations is None:
                    stations = list(load_stations(config_dir / "stations.yaml").kinds().items())
                from lab.core.stations.station import load_kinds

                kinds = load_kinds(config_dir / "station_processes.yaml")
                contexts = [dict(base, station=s, kind=k, instrument_port=instrument_port(i))
                            for i, (s, k) in enumerate(stations) if k in kinds and kinds[k].processes]
            elif for_each == "":
                contexts = [base]
            else:
                raise ConfigError(f"{where}.for_each: must be '', 'robot', 'station' or 'instrument'")
            files = []
            for rel in entry.get("params") or []:
                path = config_dir / rel
                if path not in checked:
                    check_param_file(path)
                    checked[path] = None
                files.append(path)
            # Every node runs on the simulation's /clock (RViz included), except the node that
            # publishes it.
            sim_time = {"use_sim_time": args["sim"] != "none" and not entry.get("owns_clock", False)}
            overrides = entry.get("set") or {}
            if not isinstance(overrides, dict):
                raise ConfigError(f"{where}.set: must be a mapping")
            for ctx in contexts:
                specs.append(NodeSpec(
                    name=_substitute(entry["name"], ctx, f"{where}.name"),
                    executable=entry["executable"],
                    package=entry.get("package", "lab"),
                    namespace=_substitute(entry.get("namespace", ""), ctx, f"{where}.namespace"),
                    param_files=tuple(files),
                    parameters={**sim_time, **{k: _substitute(v, ctx, f"{where}.set.{k}")
                                               for k, v in overrides.items()}},
                    arguments=tuple(str(a) for a in _substitute(list(entry.get("arguments") or []), ctx,
                                                                f"{where}.arguments")),
                    remappings=_remappings(entry.get("remap") or [], ctx, f"{where}.remap"),
                    required=bool(entry.get("required", True)),
                ))
    for spec in specs:
        check_parameters(spec, table_path)
    names = [s.full_name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{table_path}: two nodes would share the name(s) {', '.join(duplicates)}")
    deployment = load_deployment(config_dir, args["deployment"], args["robot_names"])
    placed = {spec.full_name: deployment.host_of(spec.full_name) for spec in specs}  # every node, once
    if args["host"]:
        deployment.check_host(args["host"])
        specs = [spec for spec in specs if placed[spec.full_name] == args["host"]]
    env = _dds_scope(config_dir, deployment, os.environ)
    if args["keystore"]:
        env = {**env, **_security_environment(args)}
        return [replace(spec, env=env, arguments=(*spec.arguments, "--ros-args", "--enclave", f"/lab{spec.full_name}"))
                for spec in specs]
    return [replace(spec, env=env) for spec in specs] if env else specs


def _security_environment(args: Mapping[str, Any]) -> dict[str, str]:
    """SROS2 for every lab node (docs/security.md): the keystore `lab security keystore` made, its
    enclaves /lab<node's full name>, enforced (a node without its enclave does not start)."""
    keystore = Path(args["keystore"]).expanduser()
    if not (keystore / "enclaves").is_dir():
        raise ConfigError(f"bringup argument keystore:={args['keystore']}: no SROS2 keystore there (no enclaves/ "
                          "folder); `lab security keystore DIR --policy FILE` makes one")
    if args["sim"] != "embedded":
        raise ConfigError("bringup argument keystore:= covers the lab's own nodes only: Gazebo's, Nav2's and "
                          "MoveIt's are in no policy yet, so sim:=gazebo|none with a keystore is refused")
    return {"ROS_SECURITY_KEYSTORE": str(keystore.resolve()), "ROS_SECURITY_ENABLE": "true",
            "ROS_SECURITY_STRATEGY": "Enforce"}


@dataclass(frozen=True)
class Deployment:
    """Which host runs which node (config/deployments/*.yaml): host -> node-name patterns
    (fnmatch on full names such as /robot1/navigator or /stations/*)."""

    path: Path
    hosts: Mapping[str, tuple[str, ...]]
    dds: str = "network"  # 'local': shared memory and loopback only (config/dds/local_only.xml)

    def host_of(self, full_name: str) -> str:
        """The one host that runs this node; ConfigError when none or several do."""
        hosts = [h for h, patterns in self.hosts.items() if any(fnmatchcase(full_name, p) for p in patterns)]
        if len(hosts) != 1:
            what = "no host runs" if not hosts else f"hosts {', '.join(hosts)} would all run"
            raise ConfigError(f"{self.path}: {what} node {full_name}; each node must be placed on exactly one host")
        return hosts[0]

    def check_host(self, host: str) -> None:
        if host not in self.hosts:
            raise ConfigError(f"bringup argument host:={host}: deployment {self.path} has no such host; "
                              f"its hosts: {', '.join(self.hosts)}")

    def runs(self, host: str, full_name: str) -> bool:
        """Whether `host` ('' = this machine runs every host) starts the node or part `full_name`
        (ConfigError when the deployment places it on no host or on several)."""
        owner = self.host_of(full_name)
        return not host or owner == host


#: the environment variables Fast DDS reads its default profile from (2.x, 3.x)
DDS_PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


def dds_environment(config_dir: Path, given: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """What the bringup adds to its nodes' environment for the deployment's DDS scope: with
    `dds: local`, Fast DDS's default profile config/dds/local_only.xml (shared memory and loopback
    only), unless the user's environment names a profile already (theirs wins)."""
    args = parse_arguments(given)
    return _dds_scope(config_dir, load_deployment(config_dir, args["deployment"], args["robot_names"]), environ)


def _dds_scope(config_dir: Path, deployment: Deployment, environ: Mapping[str, str]) -> dict[str, str]:
    if deployment.dds != "local" or any(environ.get(v) for v in DDS_PROFILE_VARIABLES):
        return {}
    profile = str(config_dir / "dds" / "local_only.xml")
    # SYSTEM_DEFAULT: rmw_fastrtps leaves discovery to the profile; with LOCALHOST (the tests', and
    # a cautious user's, setting) it adds a UDP transport of its own on 0.0.0.0 and the host's
    # address (measured with ss)
    return {**{v: profile for v in DDS_PROFILE_VARIABLES}, "ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT"}


def placement(config_dir: Path, given: Mapping[str, str]) -> Callable[[str], bool]:
    """For the launch file's parts that are not in the node table (Gazebo, Nav2, MoveIt ...):
    whether this bringup's host starts the part named `full_name` (/gazebo, /robot1/nav2)."""
    args = parse_arguments(given)
    deployment = load_deployment(config_dir, args["deployment"], args["robot_names"])
    if args["host"]:
        deployment.check_host(args["host"])
    return lambda full_name: deployment.runs(args["host"], full_name)


def load_deployment(config_dir: Path, name: str, robots: Sequence[str]) -> Deployment:
    """Read a deployment: `name` is one under config/deployments/ or a path to a YAML file.

    The file holds `hosts:`, a mapping of host name to a list of node-name patterns. A host named
    with {robot} stands for one host per robot (robot1, robot2, ...), and its patterns may use
    {robot} too."""
    known = config_dir / "deployments"
    if "/" in name or name.endswith((".yaml", ".yml")):
        path = Path(name)
    else:
        path = known / f"{name}.yaml"
        if not path.is_file():
            choices = sorted(p.stem for p in known.glob("*.yaml"))
            raise ConfigError(f"bringup argument deployment:={name}: no file {path}; "
                              f"known deployments: {', '.join(choices) or 'none'}")
    doc = load_yaml(path)
    hosts = doc.get("hosts") if isinstance(doc, dict) else None
    if not isinstance(hosts, dict) or not hosts:
        raise ConfigError(f"{path}: key 'hosts' must map each host name to a list of node names")
    expanded: dict[str, tuple[str, ...]] = {}
    for key, patterns in hosts.items():
        where = f"{path}: hosts.{key}"
        if not isinstance(patterns, list) or not all(isinstance(p, str) and p.startswith("/") for p in patterns):
            raise ConfigError(f"{where}: must be a list of node names starting with '/', e.g. /planner or /stations/*")
        contexts = [{"robot": r} for r in robots] if "{robot}" in str(key) else [{}]
        for ctx in contexts:
            host = str(_substitute(str(key), ctx, where))
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", host):
                raise ConfigError(f"{where}: host name {host!r} must be letters, digits, '_', '.' or '-'")
            if host in expanded:
                raise ConfigError(f"{where}: host {host} is declared twice")
            expanded[host] = tuple(_substitute(p, ctx, where) for p in patterns)
    dds = doc.get("dds", "network")
    if dds not in ("local", "network"):
        raise ConfigError(f"{path}: dds must be 'local' (one computer: shared memory and loopback only) or "
                          f"'network', not {dds!r}")
    return Deployment(path, expanded, dds)


def check_parameters(spec: NodeSpec, table_path: Path) -> None:
    """A node's parameters, from its files and the table's `set`, checked against its model
    (lab.core.config.params) the way rcl merges them: later files and `set` win, node-name keys over
    '/**'. ConfigError naming the node, the files and the key."""
    model = NODE_PARAMS.get(spec.executable) if spec.package == "lab" else None
    if model is None:
        return
    keys = {"/**", spec.name, spec.full_name, spec.full_name.lstrip("/")}
    merged: dict[str, Any] = {}
    for path in spec.param_files:
        for node, params in check_param_file(path).items():
            if node in keys:
                merged.update(params)
    merged.update(spec.parameters)
    sources = ", ".join(str(p) for p in spec.param_files) or "no parameter file"
    validate(model, merged, f"{spec.full_name} ({sources}; {table_path.name} set)")


def ros_arguments(spec: NodeSpec) -> list[str]:
    """The `--ros-args` a process needs to become `spec` (what launch_ros passes)."""
    out = ["--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace:
        out += ["-r", f"__ns:=/{spec.namespace.strip('/')}"]
    for source, target in spec.remappings:
        out += ["-r", f"{source}:={target}"]
    for path in spec.param_files:
        out += ["--params-file", str(path)]
    for key, value in spec.parameters.items():
        out += ["-p", f"{key}:={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"]
    return out
