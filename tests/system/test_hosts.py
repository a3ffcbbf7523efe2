"""The lab across machines (issue 17): four hosts in network namespaces, DDS over a bridge.

One `lab bringup deployment:=lab3 host:=H robots:=2` per host (server, stations, robot1,
robot2), each in its own network namespace with its own address (tests/system/netns.py; no
shared memory between them), campaigns run from the server host with `lab campaign run`.

1. robot2, on its parking spot, has its host cut off for good: the lab manager marks it
   offline (LabStatus, since when), gives it no more work, and a campaign of 8 is measured by
   robot1 alone.
2. Then a photocatalysis campaign of 8 (one batch) with robot1's host cut off from the
   network for 30 s while it works (longer than DDS's 20 s participant lease, so every host
   drops it): the lab manager sees it offline and back (DDS liveliness), the step cut short is
   tried again, and the campaign measures its 8 experiments with none failed, lost or counted twice. Nodes
   that stayed up see robot1's nodes again by name (the graph heals). The server's recording
   holds topics of every host.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml
from conftest import ros_available
from helpers import LAB, ROOT, Output, table
from procs import alive, children_of, process

from lab.bench.netns import Network, network, unavailable

REASON = unavailable() if ros_available() else "rclpy/lab_interfaces not built (make test builds them)"
pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.skipif(bool(REASON), reason=REASON or "-")]

HOSTS = ("server", "stations", "robot1", "robot2")
ARGS = ["deployment:=lab3", "robots:=2", "speed:=1500"]
#: wall s a robot stays offline before its carrier goes with the other robot (default 300): more
#: than robot1's cut (robot2 is offline for good by then: robot1's carrier has nowhere else to go)
OFFLINE_WAIT = 60.0


class Lab:
    """The running hosts: each bringup's output, the watcher's lines, where the server writes."""

    def __init__(self, net: Network, base: Path) -> None:
        self.net, self.base = net, base
        self.outputs: dict[str, Output] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.watch: Output | None = None

    def lines(self, kind: str) -> list[str]:
        assert self.watch is not None
        return [line.partition(" ")[2] for line in list(self.watch.lines) if line.startswith(kind + " ")]

    def wait_line(self, kind: str, test, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for text in self.lines(kind):
                if test(text):
                    return text
            time.sleep(0.05)
        raise AssertionError(f"no {kind} line as wanted within {timeout:g} s; last: {self.lines(kind)[-3:]}\n"
                             + self.text())

    def text(self, last: int = 60) -> str:
        return "\n".join(f"--- {h}\n{o.text(last)}" for h, o in self.outputs.items())

    def campaign(self, name: str, budget: int, batch: int, seed: int) -> subprocess.Popen:
        cmd = self.net.command("server", LAB + ["campaign", "run", name, "--budget", str(budget), "--batch",
                                                str(batch), "--seed", str(seed)])
        return subprocess.Popen(cmd, cwd=self.base / "server", env=self.net.host_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def stop(self) -> None:
        """Ctrl-C to every bringup (the recorder closes its file); nothing may be left running."""
        kids = {h: children_of(p.pid) for h, p in self.procs.items()}
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for host, proc in self.procs.items():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            deadline = time.monotonic() + 10
            while alive(kids[host]) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert alive(kids[host]) == [], f"{host}: left behind: {alive(kids[host])}\n{self.text()}"


def _expected_nodes() -> set[str]:
    from lab.core.config.nodetable import expand

    return {s.full_name for s in expand(ROOT / "config", dict(a.split(":=") for a in ARGS))}


@pytest.fixture(scope="module")
def hosts(tmp_path_factory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("hosts")
    executables = {n["executable"] for n in yaml.safe_load((ROOT / "config" / "nodes.yaml").read_text())["nodes"]}
    nodes = table(base, executables, {"lab_manager": {"offline_wait": OFFLINE_WAIT}})
    with network(HOSTS) as net, ExitStack() as stack:
        lab = Lab(net, base)
        for host in HOSTS:
            (base / host).mkdir()
            cmd = net.command(host, LAB + ["bringup", *ARGS, f"host:={host}", "--table", str(nodes)])
            lab.procs[host] = stack.enter_context(process(cmd, cwd=base / host, env=net.host_env()))
            lab.outputs[host] = Output(lab.procs[host])
        watch = stack.enter_context(process(net.command("server", ["python3", str(Path(__file__).parent /
                                                                                   "lab_watch.py")]),
                                            env=net.host_env()))
        lab.watch = Output(watch)
        try:
            want = _expected_nodes()
            lab.wait_line("NODES", lambda text: want <= set(json.loads(text)), timeout=180)
            yield lab
        finally:
            watch.send_signal(signal.SIGTERM)
            try:
                lab.stop()
            finally:
                for host, out in lab.outputs.items():  # for the reader of a failure
                    (base / host / "bringup.log").write_text("\n".join(out.lines) + "\n")
                (base / "watch.log").write_text("\n".join(lab.watch.lines) + "\n")


def _rows(db: Path, campaign_id: str) -> list[dict]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("select * from experiments where campaign_id = ?", (campaign_id,))]


def _finished(proc: subprocess.Popen, timeout: float, lab: Lab) -> tuple[str, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"campaign not over in {timeout:g} s\n{out[-3000:]}\n{lab.text()}") from None
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-3000:]}\n{lab.text()}"
    done = next(line for line in out.splitlines() if line.startswith("lab: campaign ") and " done: " in line)
    return done.split()[2], done


def test_a_robot_host_that_never_comes_back_is_marked_offline_and_the_other_robot_works_on(hosts: Lab) -> None:
    lab = hosts
    # first, while robot2 still stands on its parking spot: lost while standing at a dock it would
    # block that station for every robot (seen: robot1 "blocked for 900 s ... inside robot2" at rack
    # storage, where every batch starts; the lab can only fail those batches with that reason)
    lab.net.cut("robot2")
    lab.wait_line("OFFLINE", lambda text: "robot2" in json.loads(text), timeout=60)
    marked = len(lab.lines("STEPS"))
    campaign = lab.campaign("photocatalysis", budget=8, batch=8, seed=2)
    campaign_id, summary = _finished(campaign, 600, lab)
    assert "8 experiments measured (0 failed)" in summary, summary
    rows = _rows(lab.base / "server" / "runs" / "campaigns.db", campaign_id)
    assert len(rows) == 8 and all(r["state"] == "done" for r in rows)
    steps = [step for text in lab.lines("STEPS")[marked:] for step in json.loads(text)]
    assert any(s.startswith("robot1:") for s in steps) and not any(s.startswith("robot2:") for s in steps), steps
    offline = json.loads(lab.lines("OFFLINE")[-1])
    assert offline["robot2"].startswith("offline since ") and offline["robot2"].endswith("the network lost its host")


def test_a_robot_host_cut_off_mid_campaign_and_back_loses_nothing(hosts: Lab) -> None:
    lab = hosts
    before = lab.net.bridge_bytes()
    campaign = lab.campaign("photocatalysis", budget=8, batch=8, seed=1)
    lab.wait_line("STEPS", lambda text: any(s.startswith("robot1:") for s in json.loads(text)), timeout=180)
    lab.net.cut("robot1")
    cut_at = len(lab.lines("NODES"))
    # a cut longer than DDS's participant lease (20 s), so that every host drops robot1's
    # participant: a fixed time on purpose, since what is tested is a cut of that length (the
    # graph's own view of robot1 may change sooner, and a shorter cut is another scenario)
    time.sleep(30.0)
    lab.net.heal("robot1")
    campaign_id, summary = _finished(campaign, 300, lab)
    assert "8 experiments measured (0 failed)" in summary, summary
    rows = _rows(lab.base / "server" / "runs" / "campaigns.db", campaign_id)
    assert len(rows) == 8 and all(r["state"] == "done" for r in rows)
    assert len({r["sample_id"] for r in rows}) == 8  # nothing counted twice
    server = lab.outputs["server"].text(100000)
    assert "robot1 is offline" in server and "robot1 is back after" in server, lab.text()
    offline = [json.loads(text) for text in lab.lines("OFFLINE")]
    assert any("robot1" in o and o["robot1"].startswith("offline since ") for o in offline), offline
    assert "robot1" not in offline[-1]
    # every host dropped robot1's nodes during the cut, and has them back by name afterwards
    after = [set(json.loads(text)) for text in lab.lines("NODES")[cut_at:]]
    assert any("/robot1/navigator" not in nodes for nodes in after), after
    assert {"/robot1/navigator", "/robot1/arm"} <= after[-1], after[-1]
    assert lab.net.bridge_bytes() > before  # the hosts talked over the bridge
    recording = sorted((lab.base / "server" / "runs").glob("*.mcap"))
    lab.stop()
    _the_server_recorded_every_hosts_topics(recording[-1])


def _the_server_recorded_every_hosts_topics(recording: Path) -> None:
    """Messages from the robot host (robot1's navigator's plans), the stations' host and the
    server's lab manager (robot2's host was cut off before its robot ever drove)."""
    from lab.analysis.tf_history import messages

    wanted = ["/robot1/plan", "/stations/photoreactor/status", "/lab_status"]
    counts = {topic: 0 for topic in wanted}
    for topic, _msg in messages(recording, wanted):
        counts[topic] += 1
    assert all(counts.values()), counts
