"""Every node's parameters: one model per node executable, each default written once, here.

The nodes declare their ROS parameters from these models (lab.ros.params), the bringup
(lab.core.config.nodetable.expand) validates each node's parameter files and settings against them
before any node starts, and a node validates a parameter changed at run time the same way.
The YAML files under config/params/ hold only what a lab sets differently from these
defaults. pydantic does the checking: types, bounds, unknown keys.

Where is the default for X? In the model of the node that has X, below.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lab.core.errors import ConfigError
from lab.core.robot.traffic import CLEARANCE

#: m above a slot's point where tool0 holds a rack: the arm and the simulation must agree
GRASP_HEIGHT = 0.06
#: parameters every rclpy node has; not part of any model
ROS_OWN = frozenset({"use_sim_time"})


#: simulated s an action server keeps a finished goal's result for a client that asks late (a lab
#: manager restarted meanwhile, or one that was cut off from the server by the network): rclpy
#: counts its `result_timeout` on the node's clock, and its default (900 s) is 0.6 wall s at 1500x
RESULT_KEEP = 7 * 86400.0


class NodeParams(BaseModel):
    """A node's parameters: unknown names are refused, values checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SimParams(NodeParams):
    """Tunable physics of the embedded simulation (lab.core.robot.simworld); stated assumptions, not
    measurements."""

    physics_step: float = Field(0.1, gt=0)           # s of simulated time per integration step
    # localisation drift while driving (typical of a lidar-localised base)
    drift_per_metre: float = Field(0.012, ge=0)      # m (1 sd) per metre driven
    yaw_drift_per_metre: float = Field(0.0105, ge=0)  # rad (0.6 deg) per metre
    max_drift: float = Field(0.06, ge=0)             # m: localisation is never worse than this
    max_yaw_drift: float = Field(0.052, ge=0)        # rad (3 deg)
    # battery: state of charge per simulated hour (KMR-class base; assumptions, not KUKA figures)
    battery_drain_idle: float = Field(0.02, ge=0)
    battery_drain_driving: float = Field(0.25, ge=0)
    battery_drain_arm: float = Field(0.10, ge=0)
    battery_charge_rate: float = Field(0.60, ge=0)
    charger_radius: float = Field(0.15, gt=0)        # m from the charger's dock pose counts as on it
    grasp_tolerance: float = Field(0.015, gt=0)      # m: a grasp/release further than this from the slot misses
    grasp_height: float = Field(GRASP_HEIGHT, gt=0)
    cmd_vel_timeout: float = Field(0.5, gt=0)        # s: a velocity command stops mattering after this


class SimNodeParams(SimParams):
    """lab.nodes.sim: the embedded simulation. `speed` and `robots` come from the bringup."""

    speed: float = Field(60.0, gt=0, le=100000)      # simulated s per wall s at most
    robots: list[str] = ["robot1"]
    world_file: str = ""                             # "" = worlds/lab.sdf of the package
    stations_file: str = ""                          # "" = config/stations.yaml
    urdf_file: str = ""                              # "" = urdf/kmr_iiwa.urdf.xacro
    srdf_file: str = ""                              # "" = urdf/kmr_iiwa.srdf
    start_poses: list[float] = [0.0]                 # x, y, yaw per robot; [0.0]: robot1 at the charger,
    #                                                  the others on their parking spots
    objects: list[str] = [                           # what the lab starts with: '<id>@<station>/<slot>';
        "rack_1@rack_storage/slot1", "rack_2@rack_storage/slot2",  # ids starting 'tray' are trays
        "rack_3@rack_storage/slot3", "rack_4@rack_storage/slot4",
        "tray_1@rack_storage/slot5", "tray_2@rack_storage/slot6"]
    clock_rate: float = Field(100.0, gt=0)           # wall Hz of physics steps (and of /clock free-running)
    # wall Hz of /clock at most (lockstep): every node with use_sim_time wakes for each message;
    # a tick that lands on a time some node waits for, brings a robot to rest or after which
    # the clock holds goes out at once (lab.core.robot.publishing.clock_due)
    clock_publish_rate: float = Field(20.0, gt=0)
    # lockstep: /clock runs only while a robot moves or a node waits on it (ClockWait on
    # /sim/clock_waits), so time the nodes spend computing between motions costs no simulated
    # time. false: free-running at `speed` (each wall ms of a node's latency costs speed x 1 ms)
    lockstep: bool = True
    publish_rate: float = Field(100.0, gt=0)         # wall Hz of odometry, joint states, battery
    # wall Hz of a robot's state while it is unchanged and the clock holds: the same message
    # again is news to nobody, and ten stations' and four nodes' callbacks on it kept 1.5 cores
    # of an idle lab busy; a change goes out at once (at most publish_rate). Also the rate of the
    # lockstep loop while its clock rests (nothing moves, the clock held): every arrival that can
    # start the clock wakes the loop at once
    idle_publish_rate: float = Field(10.0, gt=0)
    tf_rate: float = Field(30.0, gt=0)               # wall Hz of /<robot>/tf at most (with odometry's stamp)
    camera_rate: float = Field(10.0, gt=0)           # wall Hz of rendered images, only while subscribed
    compressed_rate: float = Field(2.0, gt=0)        # wall Hz of the JPEG stream (recordings), likewise
    camera_range: float = Field(1.0, gt=0)           # m: rendered only while a marker panel is this close
    max_step: float = Field(20.0, gt=0)              # simulated s per tick at most
    seed: int = 0
    # the world as it was (time, robots, racks and trays) survives the simulation's process: saved
    # here (relative to the working folder) on every grasp and release and every `save_period`
    # wall s, and taken back at start-up. "" = start from `objects`/`start_poses` every time. The
    # restarted clock resumes up to speed x save_period simulated s later than it stopped (never
    # earlier: nodes that saw a later time would wait for it again)
    state_file: str = "runs/sim_world.json"
    save_period: float = Field(0.1, gt=0)

    @field_validator("objects")
    @classmethod
    def _objects(cls, value: list[str]) -> list[str]:
        for entry in value:
            obj, sep, loc = entry.partition("@")
            if not obj or not sep or "/" not in loc:
                raise ValueError(f"entry '{entry}' is not '<id>@<owner>/<slot>'")
        return value


class NavigatorParams(NodeParams):
    """lab.nodes.navigator (and its backend). `backend`, `robot_name`, `robots` come from the bringup."""

    backend: str = "embedded"
    robot_name: str = "robot1"
    robots: list[str] = []                           # every robot of the lab (the others are obstacles)
    world_file: str = ""
    stations_file: str = ""
    urdf_file: str = ""                              # the wrist camera's kinematics
    max_speed: float = Field(0.7, gt=0)              # m/s, for time estimates (the base controller's limit)
    goal_tolerance: float = Field(0.02, gt=0)        # m: arrived when this close and the base stopped
    refine: bool = True                              # refine the docked pose from the station's marker
    camera_timeout: float = Field(10.0, gt=0)        # wall s to wait for a camera image
    inspect_pose: str = "inspect"                    # SRDF configuration that shows the camera the marker
    max_correction: float = Field(0.2, gt=0)         # m: a refined pose further than this is rejected
    max_correction_yaw: float = Field(0.17, gt=0)    # rad (10 deg), likewise
    refine_attempts: int = Field(3, ge=1)            # fresh images tried before the refinement fails
    # several robots (embedded backend): margin around another robot's footprint: both robots'
    # drift (0.09 m at a corner, each) and the follower cutting a corner (0.1 m)
    robot_margin: float = Field(0.3, ge=0)
    traffic_timeout: float = Field(900.0, gt=0)      # simulated s to wait for the way to clear
    # wall s of DDS liveliness lease on the robot's presence (lab.ros.presence): the lab manager
    # learns the robot's host is cut off this long after the last sign of life
    presence_lease: float = Field(2.0, gt=0)
    # wall s without a sign of the safety node (DDS liveliness) after which the robot stops as for an
    # emergency stop until it hears it again; at least the safety node's presence_lease; 0 = never
    safety_timeout: float = Field(3.0, ge=0)


class ArmParams(NodeParams):
    """lab.nodes.arm. `backend` and `robot_name` come from the bringup."""

    backend: str = "embedded"
    robot_name: str = "robot1"
    world_file: str = ""
    stations_file: str = ""
    urdf_file: str = ""
    srdf_file: str = ""                              # named configurations
    grasp_height: float = Field(GRASP_HEIGHT, gt=0)
    approach_height: float = Field(0.12, ge=0)       # m above the grasp for approach and retreat
    speed_scale: float = Field(0.5, gt=0, le=1)      # fraction of the joints' velocity limits
    dock_tolerance: float = Field(0.15, gt=0)        # m: a station slot is used only when docked there
    park_pose: str = "stow"                          # configuration for driving
    safety_timeout: float = Field(3.0, ge=0)         # as NavigatorParams.safety_timeout


class StationParams(NodeParams):
    """lab.nodes.station. `station_name` and `kind` come from the bringup."""

    station_name: str = ""                           # "" = the node's name
    kind: str = ""                                   # "" = the station's kind in stations.yaml
    backend: str = "simulated"                       # instrument backend: simulated | sila (lab.instruments)
    # backend sila (docs/instruments.md): the SiLA 2 server, by address and port, or by its server
    # name through SiLA discovery when sila_address is ""; TLS trusting sila_ca (the server's
    # certificate or its CA; "" = the system's trust store); no TLS only when sila_insecure is true
    sila_address: str = ""
    sila_port: int = Field(50052, ge=1, le=65535)
    sila_server_name: str = ""
    sila_ca: str = ""
    sila_insecure: bool = False
    sila_grace: float = Field(30.0, gt=0)            # wall s an instrument may run past its own estimate
    sila_discovery_timeout: float = Field(10.0, gt=0)  # wall s to find the server by name
    # wall s one SiLA call (a request and its answer) may take: sila2's client sets no gRPC
    # deadline, so a server that keeps its connection and never answers (a wedged instrument PC)
    # would block the station, and the lab's clock it holds through its steps, for ever
    sila_call_timeout: float = Field(10.0, gt=0)
    # how long a finished goal's result is kept for a lab manager restarted meanwhile to fetch.
    # rclpy counts it on the node's clock, simulated time in the simulation: its default (900 s)
    # is 0.6 wall s at 1500x, shorter than a restart. A week of simulated time.
    result_keep: float = Field(RESULT_KEEP, gt=0)
    presence_lease: float = Field(2.0, gt=0)         # wall s: the station's presence (lab.ros.presence)
    stations_file: str = ""
    processes_file: str = ""                         # "" = config/station_processes.yaml
    workflows_file: str = ""                         # "" = config/workflows.yaml (carrier capacities)
    seed: int = 0                                    # 0 = derived from the station's name
    fault_probability: float = Field(0.0, ge=0, le=1)  # chance that a step fails (fault injection)
    fail_next: int = Field(0, ge=0)                  # the next N steps fail (fault injection)
    hang_next: int = Field(0, ge=0)                  # the next N processes hang until cancelled (fault injection)
    fault_recovery: float = Field(600.0, ge=0)       # simulated s in fault after a failed step
    status_period: float = Field(1.0, gt=0)          # wall s between status messages
    check_presence: bool = True                      # refuse a goal whose rack is not in a slot here
    presence_wait: float = Field(3.0, ge=0)          # wall s to wait for /world_state to show the rack
    # what must outlive the process (stock levels, the process under way: a restart mid-process
    # reports it); "{station}" is replaced by the station's name; "" = nothing kept
    state_file: str = "runs/stations/{station}.json"


class LabManagerParams(NodeParams):
    """lab.nodes.lab_manager. `robots` and `carriers` come from the bringup."""

    robots: list[str] = ["robot1"]
    carriers: list[str] = []                         # '<id>@<station>/<slot>', as the simulation starts
    stations_file: str = ""
    workflows_file: str = ""                         # "" = config/workflows.yaml
    database: str = "runs/campaigns.db"
    max_retries: int = Field(1, ge=0)                # a failed step is tried this many times more
    fault_wait: float = Field(1800.0, ge=0)          # simulated s a retry waits for a station in fault to recover
    battery_low: float = Field(0.25, ge=0, le=1)     # state of charge that sends a robot to charge
    battery_resume: float = Field(0.9, ge=0, le=1)   # ... and that it charges up to
    # an idle robot below this charges while no batch waits for it, and leaves the charger when
    # one does (0: never): charging at battery_low just before a transport kept the gas
    # chromatograph waiting 70 simulated min, twice in the 688-experiment campaign (issue 37)
    battery_top_up: float = Field(0.6, ge=0, le=1)
    processes_file: str = ""                         # "" = config/station_processes.yaml (expected durations)
    keep_results: float = Field(7 * 86400.0, gt=0)   # wall s a finished batch's result waits to be asked for
    # every goal's limit follows from what it should take (simulated s): a station's process as
    # station_processes.yaml gives it for the samples, a drive as its straight-line length at
    # `nominal_speed`, an arm operation `arm_seconds`; the limit is margin_factor x that + margin_seconds
    # (+ the navigator's traffic wait for a drive), counted in wall seconds (an upper bound when the
    # simulation runs at 1x or faster; real hardware runs at 1x)
    margin_factor: float = Field(2.0, ge=1)
    margin_seconds: float = Field(300.0, ge=0)
    nominal_speed: float = Field(0.5, gt=0)          # m/s of a drive, detours included (max 0.7)
    arm_seconds: float = Field(120.0, gt=0)          # simulated s of a pick, place or transfer (~60 measured)
    traffic_wait: float = Field(900.0, ge=0)         # simulated s a drive may wait for the way (navigator)
    # presence (lab.ros.presence): DDS liveliness of each robot's and station's presence writer. The
    # requested lease must be at least every writer's `presence_lease` (or DDS does not match them)
    presence_timeout: float = Field(5.0, gt=0)       # wall s
    # wall s a robot offline (its host cut off) is waited for before its carrier goes with another
    # robot (or, left on it, fails its batch); a goal under way on it counts as lost only after this
    offline_wait: float = Field(300.0, ge=0)

    @model_validator(mode="after")
    def _battery(self) -> LabManagerParams:
        if self.battery_resume <= self.battery_low:
            raise ValueError(f"battery_resume ({self.battery_resume}) must be above battery_low "
                             f"({self.battery_low})")
        if self.battery_top_up > self.battery_resume:
            raise ValueError(f"battery_top_up ({self.battery_top_up}) must be at most battery_resume "
                             f"({self.battery_resume})")
        return self


class PlannerParams(NodeParams):
    """lab.nodes.planner."""

    database: str = "runs/campaigns.db"
    campaigns_dir: str = ""                          # "" = config/campaigns
    batches_in_flight: int = Field(2, ge=1)          # batches kept running at once
    # where RViz shows the campaign's progress (map frame, m): below the map's origin, outside any lab
    progress_marker_xyz: list[float] = Field([0.0, -0.8, 0.5], min_length=3, max_length=3)
    # s a batch may take at most; 0 = from what it should take: every step's process for the batch
    # (config/station_processes.yaml) plus `leg_seconds` per carrier move, times margin_factor, times
    # the batches in flight (a batch may wait for the others), + margin_seconds (simulated s; counted
    # in wall s, at least as many whenever the simulation runs at 1x or faster)
    batch_timeout: float = Field(0.0, ge=0)
    processes_file: str = ""                         # "" = config/station_processes.yaml
    leg_seconds: float = Field(600.0, gt=0)          # a carrier move: a drive and two transfers, generously
    margin_factor: float = Field(2.0, ge=1)
    margin_seconds: float = Field(3600.0, ge=0)      # charging on the way, a retried step
    workflows_file: str = ""                         # "" = config/workflows.yaml (a batch must fit its carrier)
    # wall s to wait for a lab manager that went away during a batch (died, restarted) to come back
    # before the batch is sent to it again (it goes on with the batch from its record) or, past it,
    # recorded as failed: the bringup's restart back-off (<= 30 s) + start-up + DDS discovery
    reattach_timeout: float = Field(120.0, gt=0)
    # wall s: a planner started finds a campaign it was running within the last `take_up_within` s
    # (its process died: bringup restarted it) and takes it up by itself; one left longer ago (the
    # lab shut down under it) waits for `lab campaign resume`. 0 = never by itself
    take_up_within: float = Field(600.0, ge=0)


def _regular_expressions(value: list[str]) -> list[str]:
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r}: {exc}") from None
    return value


class RecorderParams(NodeParams):
    """lab.nodes.recorder."""

    output_dir: str = "runs"                         # MCAP files go here, beside the campaign database
    file_name: str = ""                              # "" = lab_<UTC time>.mcap
    topics: list[str] = [                            # regular expressions of the topics recorded
        r"^/clock$", r"^/lab_status$", r"^/world_state$", r"^/experiments$", r"^/stations/[^/]+/status$",
        r"^/robot\d+/(odom|robot_status|joint_states|plan|tf|tf_static|robot_description)$", r"^/measurements$",
        r"^/(lab|lab_status|campaign)_markers$", r"^/robot\d+/wrist_camera/image/compressed$"]
    discovery_period: float = Field(1.0, gt=0)       # wall s between scans for new topics
    # browser pages allowed to connect (their Origin header); a client that sends none (not a page)
    # is let through. Foxglove's web app by default; the desktop app sends none
    allowed_origins: list[str] = ["https://app.foxglove.dev"]

    @field_validator("topics")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return _regular_expressions(value)


class FoxgloveParams(NodeParams):
    """lab.nodes.foxglove_bridge (bringup viz:=foxglove)."""

    host: str = "127.0.0.1"                          # 0.0.0.0 to let other machines connect
    port: int = Field(8765, ge=0, le=65535)          # Foxglove's default; 0 = any free port
    topics: list[str] = [                            # regular expressions of the topics served
        r"^/clock$", r"^/lab_status$", r"^/world_state$", r"^/experiments$", r"^/stations/[^/]+/status$",
        r"^/robot\d+/(odom|robot_status|joint_states|plan|tf|tf_static|robot_description|map|battery_state)$",
        r"^/robot\d+/wrist_camera/image(/compressed)?$", r"^/measurements$", r"^/(lab|lab_status|campaign)_markers$",
        r"^/safety/state$"]
    discovery_period: float = Field(1.0, gt=0)       # wall s between scans for new topics
    # browser pages allowed to connect (their Origin header); a client that sends none (not a page)
    # is let through. Foxglove's web app by default; the desktop app sends none
    allowed_origins: list[str] = ["https://app.foxglove.dev"]

    @field_validator("topics")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return _regular_expressions(value)


class TrafficParams(NodeParams):
    """lab.nodes.traffic."""

    clearance: float = Field(CLEARANCE, gt=0)        # m between reserved paths (lab.core.robot.traffic)


class SafetyParams(NodeParams):
    """lab.nodes.safety."""

    state_file: str = "runs/safety_state.json"       # the stop survives a restart of the safety node
    database: str = "runs/campaigns.db"              # the store whose audit trail records each stop and release
    # the operator's fast path (lab.core.operations.safety): a Unix socket on this host, '' = one
    # per ROS domain (/tmp/lab-safety-<domain>/estop.sock), 'off' = none (DDS: stop only)
    operator_socket: str = ""
    # a group whose members may use the fast path (stop; release only if in release_users);
    # '' = the lab's own user alone
    operator_group: str = ""
    # users besides the lab's own who may release the stop through the fast path
    release_users: list[str] = Field(default_factory=list)
    presence_lease: float = Field(1.0, gt=0)         # wall s: its presence for the movers (safety_timeout)


class ConsoleParams(NodeParams):
    """lab.console (bringup console:=true; `lab console`): the operator's console in a browser."""

    host: str = "127.0.0.1"                          # loopback; another address only with certfile and keyfile
    port: int = Field(8080, ge=0, le=65535)
    users_db: str = "runs/console/users.db"          # the accounts (`lab users add NAME --role ROLE`)
    secret_file: str = "runs/console/secret"         # the session-signing key (made on first start, 0600)
    database: str = "runs/campaigns.db"              # the campaign store (its campaigns and audit trail)
    campaigns_dir: str = ""                          # the planner's campaigns folder ('' = the package's)
    reports_dir: str = "runs/console/reports"
    certfile: str = ""                               # HTTPS: the server's certificate (PEM) ...
    keyfile: str = ""                                # ... and its private key
    behind_proxy: bool = False                       # an HTTPS reverse proxy on this host serves it: cookies Secure
    session_hours: float = Field(8.0, gt=0, le=24 * 14)
    notify_file: str = ""                            # where the lab calls a human (lab.console.notify); '' = nobody

    @model_validator(mode="after")
    def _no_passwords_in_clear(self) -> ConsoleParams:
        import ipaddress

        if bool(self.certfile) != bool(self.keyfile):
            raise ValueError("certfile and keyfile go together (HTTPS needs both)")
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = self.host == "localhost"
        if not loopback and not self.certfile:
            raise ValueError(f"host {self.host}: the console serves another address than the loopback only over "
                             "HTTPS (certfile and keyfile), so that passwords never cross a network in clear; or "
                             "keep it on 127.0.0.1 behind a reverse proxy with HTTPS (docs/security.md)")
        return self


#: parameters a running node refuses to change (issue 33): those that point it at other files,
#: folders or hosts, or say who it is; and ROS's use_sim_time (a clock switched under a running
#: lab would make every wait wrong). Set them in the parameter file and restart the node.
READ_ONLY = frozenset({"database", "state_file", "operator_socket", "operator_group", "release_users", "host",
                       "port", "robot_name", "station_name", "kind", "backend", "robots", "file_name",
                       "users_db", "use_sim_time"})


def read_only(name: str) -> bool:
    return name in READ_ONLY or name.endswith(("_file", "_dir"))


#: executable (config/nodes.yaml) -> its parameters
NODE_PARAMS: dict[str, type[NodeParams]] = {
    "sim": SimNodeParams, "navigator": NavigatorParams, "arm": ArmParams, "station": StationParams,
    "lab_manager": LabManagerParams, "planner": PlannerParams, "recorder": RecorderParams,
    "traffic": TrafficParams, "safety": SafetyParams, "foxglove_bridge": FoxgloveParams,
    "console": ConsoleParams,
}


def explain(exc: ValidationError) -> str:
    """pydantic's errors as 'key: reason (given value)', one per problem, joined by '; '."""
    parts = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "parameters"
        message = error["msg"].removeprefix("Value error, ")
        given = error.get("input")
        parts.append(f"{key}: {message}" + ("" if error["type"] == "extra_forbidden" or isinstance(given, dict)
                                           else f" (given {given!r})"))
    return "; ".join(parts)


def validate(model: type[NodeParams], values: dict[str, object], where: str) -> NodeParams:
    """The model of `values` (parameter name -> value); ConfigError naming `where` and the key."""
    try:
        return model.model_validate({k: v for k, v in values.items() if k not in ROS_OWN})
    except ValidationError as exc:
        raise ConfigError(f"{where}: {explain(exc)}") from None
