"""`lab fullstack audit [robots:=N sim:=gazebo|none ...]`: the graph the full-stack launch would
start, and what is wrong with it, without ROS 2, Nav2, MoveIt or Gazebo installed.

The graph comes from the project's own launch logic (lab.bringup.full_stack.full_stack_actions,
run with launch's actions recorded instead of executed, and the node table's nodes) and from what
the upstream packages do with what they are given (lab.bringup.upstream: which included file
pushes a namespace, how a parameter file is keyed and matched, each endpoint's QoS, what MoveItPy
makes of its arguments). For every node it lists the fully qualified name, the parameter-file keys
that match it under rcl's rules, the topics it publishes and subscribes with their QoS, and the
transforms it publishes; then it checks that no two nodes share a name, that every node that needs
parameters gets them, that every subscription has a publisher of its type with QoS it accepts,
that no service is offered twice, and that each robot's frames form one tree from `map`, apart
from the other robots'.

What it does not see: the lab's own nodes' topics (the embedded ones run over real DDS in the
system tests), Gazebo's own transport, actions (their servers are Nav2's and MoveIt's own), and
anything upstream does that lab.bringup.upstream does not state.
"""

from __future__ import annotations

import sys
import types
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lab.bringup import upstream as up
from lab.bringup.graph import Endpoint, GraphNode, check, report
from lab.core import yamlfile

TF_TYPE = "tf2_msgs/msg/TFMessage"


# --- launch, recorded -------------------------------------------------------------------------

class _Recorded:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


@contextmanager
def recorded_launch() -> Iterator[None]:
    """`launch` and `launch_ros` as full_stack_actions uses them, each action recording its
    arguments (the real modules, where installed, are put back afterwards)."""
    names = ("launch", "launch.actions", "launch.launch_description_sources", "launch_ros", "launch_ros.actions",
             "launch_ros.substitutions")
    import importlib.util

    if importlib.util.find_spec("moveit_configs_utils") is None:  # the builder's model where MoveIt is not installed
        names += ("moveit_configs_utils",)
    saved = {name: sys.modules.get(name) for name in names}
    modules = {name: types.ModuleType(name) for name in names}
    if "moveit_configs_utils" in modules:
        modules["moveit_configs_utils"].MoveItConfigsBuilder = up.builder_model({})  # type: ignore[attr-defined]
    for module, classes in (("launch.actions", ("GroupAction", "IncludeLaunchDescription")),
                            ("launch.launch_description_sources", ("PythonLaunchDescriptionSource",)),
                            ("launch_ros.actions", ("Node", "PushROSNamespace")),
                            ("launch_ros.substitutions", ("FindPackageShare",))):
        for cls in classes:
            setattr(modules[module], cls, type(cls, (_Recorded,), {}))
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


# --- names, as rcl resolves them ----------------------------------------------------------------

def resolve(name: str, namespace: str, remappings: dict[str, str] | list[tuple[str, str]] = ()) -> str:
    """A topic name as rcl resolves it: relative in the node's namespace, '~' in the node's name
    not handled (none used here); then remapped (the rule's sides resolved the same way)."""
    def absolute(n: str) -> str:
        return n if n.startswith("/") else (namespace.rstrip("/") + "/" + n)

    full = absolute(name)
    for source, target in (remappings.items() if isinstance(remappings, dict) else remappings):
        if absolute(source) == full:
            return absolute(target)
    return full


def _join(*parts: str) -> str:
    return "/" + "/".join(p.strip("/") for p in parts if p.strip("/"))


def params_for(full_name: str, files: list[Any]) -> tuple[dict[str, Any], list[str]]:
    """The parameters rcl gives `full_name` from `files` (paths, parsed documents, or dicts given
    inline), and which keys matched."""
    params: dict[str, Any] = {}
    matched: list[str] = []
    for item in files:
        if isinstance(item, dict) and not _is_document(item):
            params.update(item)
            matched.append("inline")
            continue
        doc = item if isinstance(item, dict) else yamlfile.safe_load(Path(item).read_text(encoding="utf-8"))
        for key, values in _node_blocks(doc):
            if up.key_matches(key, full_name):
                params.update(values)
                matched.append(key)
    return params, matched


def _is_document(item: dict) -> bool:
    return any(isinstance(v, dict) and ("ros__parameters" in v or _is_document(v)) for v in item.values())


def _node_blocks(doc: dict, path: tuple[str, ...] = ()) -> Iterator[tuple[str, dict]]:
    for key, value in doc.items():
        if key == "ros__parameters":
            yield "/".join(path), value
        elif isinstance(value, dict):
            yield from _node_blocks(value, path + (str(key),))


def _param(params: dict[str, Any], dotted: str) -> Any:
    """A parameter by its dotted name ('*' for any one key), nested or flat as YAML gives it."""
    heads = [params]
    for part in dotted.split("."):
        nxt = []
        for h in heads:
            if not isinstance(h, dict):
                continue
            nxt += list(h.values()) if part == "*" else [h[part]] if part in h else []
        heads = nxt
    if heads:
        return heads[0]
    return params.get(dotted)


# --- the graph ------------------------------------------------------------------------------------

def _endpoint(topic: up.Topic, node: GraphNode, namespace: str, remappings: Any, parent: str = "") -> Endpoint:
    name = topic.name
    if topic.param:
        given = _param(node.params, topic.param)
        name = str(given) if isinstance(given, str) and given else name
    name = name.replace("{parent}", parent)
    return Endpoint(resolve(name, namespace, remappings), topic.type, topic.qos, topic.source, topic.optional)


def _upstream_node(spec: up.UpstreamNode, namespace: str, files: list[Any], remappings: Any, origin: str,
                   ) -> GraphNode:
    local_ns, _, base = spec.name.rpartition("/")
    node_ns = _join(namespace, local_ns) if local_ns else (namespace or "/")
    full = _join(node_ns, base)
    params, matched = params_for(full, files)
    node = GraphNode(full, origin, params, matched, spec.uses_params_file, spec.needs)
    parent = namespace.rstrip("/")
    node.pubs = [_endpoint(t, node, node_ns, remappings, parent) for t in spec.pubs]
    node.subs = [_endpoint(t, node, node_ns, remappings, parent) for t in spec.subs]
    if spec.tf:
        topic = resolve("/tf", node_ns, remappings)
        for parent_key, parent_default, child_key, child_default in spec.tf:
            node.tf.append((topic, str(params.get(parent_key, parent_default)),
                            str(params.get(child_key, child_default))))
    return node


def _listens_to_tf(node: GraphNode, namespace: str, remappings: Any) -> None:
    node.subs += [Endpoint(resolve(t.name, namespace, remappings), t.type, t.qos, t.source) for t in up.TF_LISTENER]


def _nav2_include(action: _Recorded, pushed: str) -> list[GraphNode]:
    path = action.args[0].args[0]
    launch = up.NAV2_LAUNCH_FILES[str(path[-1]).rpartition("/")[2]]
    given = dict(action.kwargs.get("launch_arguments", ()))
    doc = yamlfile.safe_load(Path(given["params_file"]).read_text(encoding="utf-8"))
    rewritten = up.rewritten_yaml(doc, given.get(launch.root_key_argument, ""))
    namespace = _join(pushed, given.get(launch.root_key_argument, "")) if launch.pushes_namespace else (pushed or "/")
    nodes = []
    for spec in launch.nodes:
        owner = spec.name.partition("/")[0] if "/" in spec.name else spec.name
        server = {"local_costmap": "controller_server", "global_costmap": "planner_server"}.get(owner, spec.name)
        remaps = list(launch.remappings) + list(launch.node_remappings.get(server, ()))
        node = _upstream_node(spec, namespace, [rewritten], remaps, f"{launch.package} {launch.file}")
        if spec.name not in ("map_server", "lifecycle_manager_localization", "lifecycle_manager_navigation"):
            # (a costmap's listener is in its server's namespace: upstream.COSTMAP_TF_IN_SERVER_NAMESPACE)
            _listens_to_tf(node, namespace if "/" in spec.name else node.name.rpartition("/")[0] or "/", remaps)
        nodes.append(node)
    return nodes


def _urdf_tf(description: str, topics: tuple[str, str]) -> list[tuple[str, str, str]]:
    root = ET.fromstring(description)
    edges = []
    for joint in root.iter("joint"):
        parent, child = joint.find("parent"), joint.find("child")
        if parent is None or child is None:
            continue
        topic = topics[1] if joint.get("type") == "fixed" else topics[0]
        edges.append((topic, parent.get("link", ""), child.get("link", "")))
    return edges


def _node_action(action: _Recorded, pushed: str) -> list[GraphNode]:
    kw = action.kwargs
    executable = kw.get("executable", "")
    namespace = _join(pushed, kw.get("namespace") or "")
    remaps = list(kw.get("remappings") or [])
    files = list(kw.get("parameters") or [])
    if executable == "spawner":
        # the spawner exits once its controller is active; the controller is a node of the manager's
        controller = kw["arguments"][0]
        if controller == up.JOINT_STATE_BROADCASTER.name:
            return [_upstream_node(up.JOINT_STATE_BROADCASTER, namespace, [], [], "spawned by the controller manager")]
        return []
    if executable == "create":
        return []  # short-lived: `create` exits once the robot is spawned into Gazebo
    if executable == "ros2_control_node":
        return [_upstream_node(up.CONTROLLER_MANAGER, namespace, files, remaps, "full_stack.py (ros2_control_node)")]
    if executable == "robot_state_publisher":
        node = _upstream_node(up.ROBOT_STATE_PUBLISHER, namespace, files, remaps, "lab full_stack.py")
        topics = (resolve("/tf", namespace, remaps), resolve("/tf_static", namespace, remaps))
        node.tf = _urdf_tf(node.params.get("robot_description", "<robot/>"), topics)
        return [node]
    name = kw.get("name") or executable
    full = _join(namespace, name)
    params, matched = params_for(full, files)
    node = GraphNode(full, f"lab full_stack.py ({kw.get('package')})", params, matched)
    if executable == "parameter_bridge":
        qos, source = up.BRIDGE_QOS
        entries = yamlfile.safe_load(Path(params["config_file"]).read_text(encoding="utf-8"))
        for e in entries:
            end = Endpoint(e["ros_topic_name"], e["ros_type_name"], qos, source)
            (node.pubs if e["direction"] == "GZ_TO_ROS" else node.subs).append(end)
        node.tf += _bridged_tf(entries)
    if executable == "move_group":
        node.needs = up.MOVEIT_PY_NEEDS
        node.services.append(resolve(up.GET_PLANNING_SCENE, namespace))
        node.subs.append(Endpoint(resolve(up.JOINT_STATES.name, namespace), up.JOINT_STATES.type, up.JOINT_STATES.qos,
                                  up.JOINT_STATES.source))
        _listens_to_tf(node, namespace, remaps)
    return [node]


#: the odometry transform Gazebo publishes per robot: set by lab.bringup.audit.build from the
#: description (gz-sim-odometry-publisher-system's odom_frame and robot_base_frame)
_ODOM_FRAMES: dict[str, tuple[str, str]] = {}


#: Gazebo's controller managers: (namespace, parameters file) of each robot's gz_ros2_control plugin
_GZ_MANAGERS: list[tuple[str, str]] = []


def _bridged_tf(entries: list[dict]) -> list[tuple[str, str, str]]:
    out = []
    for e in entries:
        if e["ros_type_name"] == TF_TYPE and e["direction"] == "GZ_TO_ROS":
            for gz_topic, frames in _ODOM_FRAMES.items():
                if e["gz_topic_name"] == gz_topic:
                    out.append((e["ros_topic_name"], *frames))
    return out


def _walk(actions: list[Any], pushed: str = "") -> list[GraphNode]:
    nodes: list[GraphNode] = []
    for action in actions:
        kind = type(action).__name__
        if kind == "GroupAction":
            inner = action.args[0]
            push = "".join(_join(a.kwargs.get("namespace", a.args[0] if a.args else "")) for a in inner
                           if type(a).__name__ == "PushROSNamespace")
            nodes += _walk([a for a in inner if type(a).__name__ != "PushROSNamespace"], _join(pushed, push))
        elif kind == "IncludeLaunchDescription":
            path = action.args[0].args[0]
            if str(path[-1]).rpartition("/")[2] in up.NAV2_LAUNCH_FILES:
                nodes += _nav2_include(action, pushed)
            # gz_sim.launch.py runs Gazebo itself: no ROS node of its own
        elif kind == "Node":
            nodes += _node_action(action, pushed)
    return nodes


def rviz_file(share: Path) -> Path:
    return share / "rviz" / "lab.rviz"


def _rviz_subs(share: Path, namespace_remaps: list[tuple[str, str]]) -> list[Endpoint]:
    types_of = {"rviz_default_plugins/Map": "nav_msgs/msg/OccupancyGrid",
                "rviz_default_plugins/Path": "nav_msgs/msg/Path",
                "rviz_default_plugins/RobotModel": "std_msgs/msg/String",
                "rviz_default_plugins/Odometry": "nav_msgs/msg/Odometry",
                "rviz_default_plugins/Image": "sensor_msgs/msg/Image",
                "rviz_default_plugins/LaserScan": "sensor_msgs/msg/LaserScan",
                "rviz_default_plugins/MarkerArray": "visualization_msgs/msg/MarkerArray"}
    doc = yamlfile.safe_load(rviz_file(share).read_text(encoding="utf-8"))
    subs = []
    for display in doc["Visualization Manager"]["Displays"]:
        topic = display.get("Topic") or display.get("Description Topic")
        if not isinstance(topic, dict) or display.get("Class") not in types_of:
            continue
        # rviz's defaults: reliable, volatile (rviz_common/properties/qos_profile_property.cpp)
        qos = up.QoS(reliable=topic.get("Reliability Policy", "Reliable") == "Reliable",
                     transient_local=topic.get("Durability Policy", "Volatile") == "Transient Local")
        subs.append(Endpoint(resolve(topic["Value"], "/", namespace_remaps), types_of[display["Class"]], qos,
                             f"rviz/lab.rviz display {display.get('Name')!r}"))
    return subs


def build(share: Path, given: dict[str, str]) -> list[GraphNode]:
    """Every node the launch would start with `given` (its arguments), upstream's included."""
    from lab.bringup.full_stack import full_stack_actions, robot_names
    from lab.core.config.nodetable import expand
    from lab.core.robot.robot_files import robot_description

    robots = robot_names(given)
    gazebo = given.get("sim") == "gazebo"
    _ODOM_FRAMES.clear()
    _GZ_MANAGERS.clear()
    for robot in robots:
        root = ET.fromstring(robot_description(share, robot, gazebo=gazebo))
        for plugin in root.iter("plugin"):
            if plugin.get("name") == "gz_ros2_control::GazeboSimROS2ControlPlugin":
                _GZ_MANAGERS.append((plugin.findtext("ros/namespace", "/"), plugin.findtext("parameters", "")))
            if plugin.get("name") == "gz::sim::systems::OdometryPublisher":
                _ODOM_FRAMES[plugin.findtext("tf_topic", "")] = (plugin.findtext("odom_frame", ""),
                                                                  plugin.findtext("robot_base_frame", ""))
    with recorded_launch():
        nodes = _walk(full_stack_actions(share, given))
        if gazebo:  # Gazebo's ros2_control plugin, from each robot's description
            nodes += [_upstream_node(up.CONTROLLER_MANAGER, namespace, [params], [], f"Gazebo ({up.GZ_ROS2_CONTROL})")
                      for namespace, params in _GZ_MANAGERS]
        else:  # real robots: what the documentation asks of each robot's driver
            for robot in robots:
                driver = _upstream_node(up.DRIVER, f"/{robot}", [], [], "assumed: the robot's driver")
                driver.name = f"/{robot}/(driver)"
                driver.tf = [(f"/{robot}/tf", f"{robot}/odom", f"{robot}/base_footprint")]
                nodes.append(driver)
        nodes += _lab_nodes(share, given, expand(share / "config", given))
    return nodes


def _lab_nodes(share: Path, given: dict[str, str], specs: list) -> list[GraphNode]:
    """The node table's nodes, and the nodes their full-stack backends make in their processes."""
    from lab.backends.stack_nodes import basic_navigator_arguments, moveit_py_arguments

    gazebo = given.get("sim") == "gazebo"
    nodes = []
    for spec in specs:
        params, matched = params_for(spec.full_name, [*map(str, spec.param_files), dict(spec.parameters)])
        node = GraphNode(spec.full_name, "lab node table (config/nodes.yaml)", params, matched)
        if spec.executable == "rviz2":
            node.subs = _rviz_subs(share, list(spec.remappings))
            _listens_to_tf(node, "/", list(spec.remappings))
        nodes.append(node)
        robot = spec.namespace.strip("/")
        if spec.name == "navigator" and params.get("backend") == "nav2":
            args = basic_navigator_arguments(robot)
            nodes.append(_upstream_node(up.BASIC_NAVIGATOR, args["namespace"], [], [], "nav2 backend (BasicNavigator)"))
            nodes[-1].name = _join(args["namespace"], args["node_name"])
        if spec.name == "arm" and params.get("backend") == "moveit":
            made = up.moveit_py_node(**moveit_py_arguments(share, robot, gazebo))
            mp_params, mp_matched = params_for(made["name"], made["param_files"])
            mp = GraphNode(made["name"], "moveit backend (MoveItPy)", mp_params, mp_matched, True, up.MOVEIT_PY_NEEDS)
            namespace = made["name"].rpartition("/")[0] or "/"
            mp.services = [resolve(s, namespace) for s in made["services"]]
            mp.subs.append(Endpoint(resolve(up.JOINT_STATES.name, namespace), up.JOINT_STATES.type,
                                    up.JOINT_STATES.qos, up.JOINT_STATES.source))
            _listens_to_tf(mp, namespace, made["remappings"])
            nodes.append(mp)
    return nodes


def main(argv: list[str]) -> int:
    """`lab fullstack audit name:=value ...` (the launch's arguments; sim:=gazebo, robots:=1,
    navigation:=nav2 and arm:=moveit unless given)."""
    from lab.bringup.full_stack import robot_names
    from lab.core.config.nodetable import parse_arguments
    from lab.core.errors import ConfigError
    from lab.paths import share_dir

    given = {"sim": "gazebo", "navigation": "nav2", "arm": "moveit"}
    for arg in argv:
        name, sep, value = arg.partition(":=")
        if not sep:
            print(f"lab: fullstack audit: '{arg}' is not name:=value", file=sys.stderr)
            return 2
        given[name] = value
    try:
        parse_arguments(given)
    except ConfigError as exc:
        print(f"lab: fullstack audit: {exc}", file=sys.stderr)
        return 2
    if given["sim"] not in ("gazebo", "none"):
        print("lab: fullstack audit: the full stack is sim:=gazebo or sim:=none", file=sys.stderr)
        return 2
    nodes = build(share_dir(), given)
    findings = check(nodes, robot_names(given))
    print(report(nodes, findings))
    return 1 if findings else 0
