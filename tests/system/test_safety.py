"""The emergency stop over DDS: the safety node, the simulation, a navigator, an arm and the
stations as processes. Whoever sent a goal, the nodes that move or run enforce the stop
themselves: running motion and processes stop, new goals are refused with who stopped the
lab and why, `lab estop --release` lifts it (no lab manager here: the stop needs none). Who
stopped or released is the kernel's word on the fast path; another user may stop but not release,
and a release over DDS is refused."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ros_available
from helpers import Probe, lab, spin_for, spin_until

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")]


@pytest.fixture(scope="module")
def safety_lab(tmp_path_factory):
    import rclpy

    from lab.app.commander import LabCommander

    tmp = tmp_path_factory.mktemp("safety")
    # the operators' group: another user in it (nobody, group nogroup) may reach the fast path
    overrides = {"navigator": {"refine": False}, "station": {"check_presence": False},
                 "safety": {"operator_group": OPERATORS}}
    with lab(tmp, ["robots:=1", "speed:=200"], keep={"safety", "sim", "navigator", "arm", "station"},
             overrides=overrides, stations=("rack_storage", "photoreactor", "sonicator")) as out:
        context = rclpy.Context()
        rclpy.init(context=context)
        cmd = LabCommander("safety_test", context=context)
        probe = Probe(cmd)
        try:
            spin_until(cmd, lambda: probe.truth is not None, 60, what="the robot's ground truth")
            yield cmd, probe, out, tmp
        finally:
            cmd.destroy_node()
            context.try_shutdown()


OPERATORS = "nogroup"


def _result(cmd, task, timeout=120.0):
    outcome = cmd.wait(task, timeout=timeout)
    return outcome, (task.result.message if task.result is not None else "")


def test_estop_stops_a_direct_navigation_goal_and_refuses_every_new_goal(safety_lab) -> None:
    from lab.app.cli import _set_sim_speed
    from lab.app.commander import TaskResult

    cmd, probe, out, _ = safety_lab
    _set_sim_speed(cmd, 2.0)  # slow enough that the drive is still going when the stop comes
    try:
        task = cmd.navigate_to_station("robot1", "gas_chromatograph")
        spin_until(cmd, lambda: task.feedback is not None and task.feedback.phase == "driving" and probe.speed > 0,
                   60, what="driving")
        ok, message = cmd.estop(reason="person in the aisle", by="test")
        assert ok, message
        outcome, why = _result(cmd, task)
        # (a name said over DDS is recorded as said: only the fast path's caller is the kernel's word)
        assert outcome is TaskResult.FAILED and "emergency stop by test (as said over DDS): person in the aisle" \
            in why, why
    finally:
        _set_sim_speed(cmd, 200.0)
    spin_for(cmd, 0.3)
    stopped_at = probe.truth
    spin_for(cmd, 0.5)
    assert probe.speed == 0.0 and probe.truth == pytest.approx(stopped_at, abs=1e-6)
    # nothing new moves or runs while stopped, whoever asks: each refusal says who and why
    for task in (cmd.navigate_to_station("robot1", "photoreactor"),
                 cmd.manipulate("robot1", "move", "", "inspect"),
                 cmd.run_station("photoreactor", "rack_1")):
        outcome, why = _result(cmd, task)
        assert outcome is TaskResult.FAILED and "refused: emergency stop by test" in why, f"{why}\n{out.text(60)}"
    spin_for(cmd, 0.3)
    assert probe.truth == pytest.approx(stopped_at, abs=1e-6)
    ok, message = cmd.estop(release=True, by="test")
    assert ok and "released" in message
    spin_for(cmd, 0.3)  # the release reaches every node (latched topic)
    outcome, why = _result(cmd, cmd.navigate_to_station("robot1", "photoreactor"))
    assert outcome is TaskResult.SUCCEEDED, (why, out.text(40))


def test_estop_ends_a_running_station_process_and_the_cli_releases_it(safety_lab) -> None:
    from lab.app.commander import TaskResult

    cmd, _, out, tmp = safety_lab
    task = cmd.run_station("photoreactor", "rack_2")  # 60 simulated minutes of illumination
    spin_until(cmd, lambda: task.feedback is not None and task.feedback.step == "illuminate", 60,
               what="the illumination to start")
    run = subprocess.run([sys.executable, "-m", "lab.app.cli", "estop", "--reason", "lamp check"], cwd=tmp,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "emergency stop by" in run.stdout, run.stdout + run.stderr
    outcome, why = _result(cmd, task)
    assert outcome is TaskResult.FAILED and why.startswith("stopped: emergency stop by") and "lamp check" in why
    assert task.result.duration < 3600.0
    released = subprocess.run([sys.executable, "-m", "lab.app.cli", "estop", "--release"], cwd=tmp,
                              capture_output=True, text=True, timeout=60)
    assert released.returncode == 0 and "released" in released.stdout, released.stdout + released.stderr
    started = time.monotonic()
    outcome, why = _result(cmd, cmd.run_station("sonicator", "rack_3"))  # 10 simulated minutes
    assert outcome is TaskResult.SUCCEEDED, (why, time.monotonic() - started, out.text(40))



def _as_nobody(op: str) -> dict:
    """The fast path's own client (lab.core.operations.safety, stdlib only) run by the system's
    Python as user nobody, group nogroup: the checkout may not be readable by nobody, so its
    source is handed over on the command line."""
    import json
    import os

    from lab.core.operations import safety

    code = Path(safety.__file__).read_text() + f"\nimport json\nprint(json.dumps(fast_path_request({op!r}, 'test')))\n"
    run = subprocess.run(["/usr/bin/python3", "-c", code], user="nobody", group=OPERATORS, capture_output=True,
                         text=True, timeout=60, env={"ROS_DOMAIN_ID": os.environ["ROS_DOMAIN_ID"]}, cwd="/")
    assert run.returncode == 0, run.stderr
    return dict(json.loads(run.stdout))


def test_another_user_may_stop_but_not_release_and_dds_may_not_release(safety_lab) -> None:
    import json
    import os
    import pwd

    from lab_interfaces.srv import SafetyCommand

    cmd, _, out, tmp = safety_lab
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody here")
    if os.getuid() != 0:
        pytest.skip("running a client as another user needs root (the test runs as an unprivileged user's peer)")

    def state() -> dict:
        return json.loads((tmp / "runs" / "safety_state.json").read_text())

    answer = _as_nobody("stop")
    assert answer["success"], answer
    recorded = state()
    assert recorded["stopped"] and recorded["by"].startswith(f"nobody (uid {pwd.getpwnam('nobody').pw_uid}, pid "), \
        recorded  # the kernel's user, not a name the caller gave
    answer = _as_nobody("release")
    assert not answer["success"] and "release refused for nobody" in answer["message"], answer
    assert state() == recorded  # nothing changed
    ok, message = cmd._call_service(SafetyCommand, "/safety/release", SafetyCommand.Request(by="safety-officer"))
    assert not ok and "release is not offered over DDS" in message, message
    assert state() == recorded
    ok, message = cmd.estop(release=True)  # this test's user is the lab's
    assert ok and "released by root (uid 0" in message, message
    assert not state()["stopped"]
    # the audit trail, in the campaign store: who (as each way could tell), how, what came of it
    from lab.core.campaign.store import CampaignStore

    with CampaignStore.open(tmp / "runs" / "campaigns.db") as store:
        trail = [(who.split(" ")[0], via, command, ok) for _, who, via, command, _, _, ok in store.commands()][-4:]
    assert trail == [("nobody", "fast path (lab estop)", "estop", True),
                     ("nobody", "fast path (lab estop)", "estop_release", False),
                     ("safety-officer", "DDS service /safety/release", "estop_release", False),
                     ("root", "fast path (lab estop)", "estop_release", True)], trail
    # one rule for what the lab writes (lab.core.persist.UMASK): nothing under runs/ is world-readable
    import stat

    exposed = [str(p) for p in (tmp / "runs").rglob("*") if p.stat().st_mode & (stat.S_IROTH | stat.S_IWOTH)]
    assert exposed == [] and any((tmp / "runs").iterdir()), exposed


def _addresses(pids: list[int]) -> dict[str, set[str]]:
    """The local addresses (IPv4 and IPv6, UDP and TCP) of every socket the processes hold, from
    /proc: each process's socket inodes, matched in its network namespace's tables."""
    import ipaddress
    import os

    found: dict[str, set[str]] = {}
    for pid in pids:
        try:
            inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")
                      if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}
        except OSError:
            continue
        for table in ("udp", "udp6", "tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if fields[9] not in inodes:
                    continue
                hex_address = fields[1].split(":")[0]
                raw = bytes.fromhex(hex_address)
                # /proc writes each 32-bit word in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.setdefault(str(ipaddress.ip_address(raw)), set()).add(str(pid))
    return found


def test_the_single_host_lab_has_no_socket_on_the_network(safety_lab) -> None:
    """deployment single (dds: local): every lab process's sockets are on loopback (or a multicast
    group Fast DDS joins there), none on 0.0.0.0 or the host's addresses (issue 33)."""
    import ipaddress

    from procs import children_of

    _, _, out, _ = safety_lab
    pids = children_of(out.proc.pid)
    assert len(pids) >= 5
    addresses = _addresses(pids)
    assert addresses, "no sockets read"
    exposed = {a: p for a, p in addresses.items()
               if not (ipaddress.ip_address(a).is_loopback or ipaddress.ip_address(a).is_multicast)}
    assert exposed == {}, exposed


def test_an_sros2_policy_is_read_from_the_running_lab(safety_lab, tmp_path: Path) -> None:
    """lab.app.security: one enclave per lab node with what the graph shows it uses (issue 33)."""
    import xml.etree.ElementTree as ET

    from lab.app.security import policy_xml, read_graph

    cmd, _, _, _ = safety_lab
    wanted = {"/safety", "/sim", "/robot1/navigator", "/robot1/arm", "/stations/photoreactor"}
    spin_until(cmd, lambda: wanted <= {f"{ns.rstrip('/')}/{n}" for n, ns in cmd.get_node_names_and_namespaces()},
               30, what="the lab's nodes in the graph")
    root = ET.fromstring(policy_xml(read_graph(cmd, settle=2.0)))
    assert root.get("version") == "0.2.0"
    enclaves = {e.get("path"): e for e in root.iter("enclave")}
    assert {"/lab/safety", "/lab/sim", "/lab/robot1/navigator", "/lab/robot1/arm"} <= set(enclaves), sorted(enclaves)
    assert "/lab/safety_test" not in enclaves, sorted(enclaves)  # the reader is no lab node

    def allowed(path: str, rule: str) -> set[str]:
        return {t.text for g in enclaves[path].iter() if g.get(rule) == "ALLOW" for t in g}

    assert {"/safety/stop", "/safety/release"} <= allowed("/lab/safety", "reply")
    assert "/safety/state" in allowed("/lab/safety", "publish")
    assert "/safety/state" in allowed("/lab/robot1/navigator", "subscribe")
    assert "/robot1/navigate_to_station/_action/send_goal" in allowed("/lab/robot1/navigator", "reply")
    profile = enclaves["/lab/robot1/navigator"].find("profiles/profile")
    assert (profile.get("ns"), profile.get("node")) == ("/robot1", "navigator")
