"""Where the robot's simulated time goes (issue 37, item 1): an account of each robot leg of a
campaign (the store's intervals: 'rack_2 -> liquid_dispenser/rack') from the lab's recording.

Within each leg, simulated time is split into the base moving (its odometry pose changing between
two messages), the arm moving (its joint positions changing), and neither. 'Neither' is time in
which the robot did not move: the robot's nodes computing or waiting for one another (the lab
manager deciding and sending the next goal, goals' round trips, docking refinement). The lockstep
clock (lab.ros.clock) holds for a node computing only while that node holds it; when a station's
process waits on the clock meanwhile, the clock runs at full speed through the robot's compute,
and that time is charged to the robot's leg. The account says how much of 'neither' fell while
some station's process ran.

    lab bench robot-time [--db runs/campaigns.db] [--recording runs/lab_*.mcap] [--campaign ID]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Leg:
    start: float
    end: float
    what: str
    base: float = 0.0       # simulated s the base moved
    arm: float = 0.0        # simulated s the arm moved
    neither_station: float = 0.0  # simulated s neither moved while a station's process ran

    @property
    def total(self) -> float:
        return self.end - self.start

    @property
    def neither(self) -> float:
        return max(0.0, self.total - self.base - self.arm)


def changing(samples: Sequence[tuple[float, tuple]]) -> list[tuple[float, float]]:
    """The spans (start, end) between consecutive samples (time, value) whose value changed: what moved."""
    ordered = sorted(s for s in samples if s[0] > 0.0)  # a recording's stamp-0 messages are from before /clock
    return [(t0, t1) for (t0, v0), (t1, v1) in zip(ordered, ordered[1:], strict=False) if v0 != v1]


def overlap(spans: Sequence[tuple[float, float]], a: float, b: float) -> float:
    return sum(max(0.0, min(b, e) - max(a, s)) for s, e in spans)


def account(legs: Sequence[tuple[float, float, str]], base: Sequence[tuple[float, float]],
            arm: Sequence[tuple[float, float]], stations: Sequence[tuple[float, float]]) -> list[Leg]:
    """Each leg with its base-moving, arm-moving and station-running-while-still times."""
    out = []
    for a, b, what in legs:
        moved = overlap(base, a, b) + overlap(arm, a, b)
        still = [(s, e) for s, e in stations if e > a and s < b]
        # station time within the leg, less what the robot spent moving (an upper bound on its share
        # of the still time; exact when the robot's motions and the stations' processes do not overlap)
        neither_station = min(max(0.0, (b - a) - moved), overlap(_merge(still), a, b))
        out.append(Leg(a, b, what, overlap(base, a, b), overlap(arm, a, b), neither_station))
    return out


def _merge(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def read(db: Path, recording: Path, campaign: str = "", robot: str = "robot1") -> list[Leg]:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    with sqlite3.connect(db) as conn:
        campaign = campaign or conn.execute("SELECT id FROM campaigns ORDER BY created DESC").fetchone()[0]
        legs = conn.execute("SELECT start, end, what FROM intervals WHERE campaign_id = ? AND resource = ? "
                            "ORDER BY start", (campaign, robot)).fetchall()
        stations = conn.execute("SELECT start, end FROM intervals WHERE campaign_id = ? AND resource NOT LIKE "
                                "'robot%'", (campaign,)).fetchall()
    poses, joints = [], []
    with open(recording, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for _schema, channel, _msg, msg in reader.iter_decoded_messages(
                topics=[f"/{robot}/odom", f"/{robot}/joint_states"]):
            t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            if channel.topic.endswith("odom"):
                p, q = msg.pose.pose.position, msg.pose.pose.orientation
                poses.append((t, (round(p.x, 3), round(p.y, 3), round(q.z, 3), round(q.w, 3))))
            else:
                joints.append((t, tuple(round(v, 4) for v in msg.position)))
    return account(legs, changing(poses), changing(joints), stations)


def report(legs: Sequence[Leg], top: int = 8) -> str:
    total = sum(leg.total for leg in legs) or 1.0
    base, arm = sum(leg.base for leg in legs), sum(leg.arm for leg in legs)
    neither, lost = sum(leg.neither for leg in legs), sum(leg.neither_station for leg in legs)
    lines = [f"{len(legs)} legs, {total:.0f} simulated s: base moving {base:.0f} s ({base / total:.0%}), "
             f"arm moving {arm:.0f} s ({arm / total:.0%}), neither {neither:.0f} s ({neither / total:.0%}), "
             f"of which {lost:.0f} s ({lost / total:.0%}) while a station's process ran the clock"]
    for leg in sorted(legs, key=lambda g: -g.total)[:top]:
        lines.append(f"  {leg.total:7.0f} s  base {leg.base:6.0f}  arm {leg.arm:6.0f}  neither {leg.neither:6.0f} "
                     f"(station ran {leg.neither_station:6.0f})  {leg.what}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab bench robot-time", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=Path("runs/campaigns.db"))
    parser.add_argument("--recording", type=Path, default=None, help="default: the newest runs/lab_*.mcap")
    parser.add_argument("--campaign", default="", help="default: the newest campaign in the store")
    ns = parser.parse_args(argv)
    recording = ns.recording or max(ns.db.parent.glob("lab_*.mcap"), key=lambda p: p.stat().st_mtime, default=None)
    if recording is None or not ns.db.is_file():
        print("lab bench robot-time: needs the campaign store and the lab's recording (record:=true)", file=sys.stderr)
        return 2
    print(report(read(ns.db, recording, ns.campaign)))
    return 0
