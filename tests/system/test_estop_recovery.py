"""A pause is exact, and after an emergency stop the lab knows where everything is and can go on
(the whole lab as processes, the lab manager driving a batch). A pause while a rack goes into
a station lets that transfer finish and starts nothing more until resumed. A stop during a
station's process ends that process, the batch reports its samples stopped with who stopped
the lab and why (never as measured), its rack stays where the stop left it until the operator
has released the stop and resumed the lab (resume alone is refused), then goes home, and no
station is left holding a rack. A simulation killed with a rack on the robot's deck comes back
with the rack there. A lab manager killed with a rack on the robot's deck is
restarted by bringup and brings the rack home. One bring-up for the module; each test sets up
what it needs."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import ros_available
from helpers import PHOTOCATALYSIS, lab, node_pid, spin_until

pytestmark = [pytest.mark.system, pytest.mark.slow,
              pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")]


def rack_of(world: dict[str, str]) -> set[str]:
    """The racks out of rack storage."""
    return {c for c, loc in world.items()
            if c.startswith("rack_") and "/" not in c and not loc.startswith("rack_storage/")}


class Watch:
    """The commander and what the tests read from the lab: world state, lab mode and steps, the
    robot's action goals under way."""

    def __init__(self, cmd) -> None:
        from action_msgs.msg import GoalStatusArray
        from rclpy.qos import qos_profile_action_status_default

        from lab.nodes.lab_manager import UNDER_WAY
        from lab.ros.qos import LATCHED
        from lab_interfaces.msg import LabStatus, WorldState

        self.cmd = cmd
        self.world: dict[str, str] = {}
        self.mode: dict[str, int] = {}
        self.steps: dict[str, list[str]] = {}
        self.under_way: dict[str, int] = {}
        cmd.create_subscription(WorldState, "/world_state", lambda m: self.world.update(
            dict(zip(m.objects, m.locations, strict=False))), LATCHED)

        def on_status(m: LabStatus) -> None:
            self.mode.update(mode=m.mode)
            self.steps["steps"] = list(m.active_steps)
            self.steps.setdefault("seen", []).extend(m.active_steps)

        cmd.create_subscription(LabStatus, "/lab_status", on_status, 10)
        for action in ("/robot1/manipulate", "/robot1/navigate_to_station", "/robot1/navigate_to_pose"):
            def on_goals(m: GoalStatusArray, a: str = action) -> None:
                self.under_way[a] = sum(1 for st in m.status_list if st.status in UNDER_WAY)

            cmd.create_subscription(GoalStatusArray, f"{action}/_action/status", on_goals,
                                    qos_profile_action_status_default)


@pytest.fixture(scope="module")
def recovery_lab(tmp_path_factory):
    import rclpy

    from lab.app.commander import LabCommander

    tmp = tmp_path_factory.mktemp("recovery")
    with lab(tmp, ["robots:=1", "speed:=2000", "record:=false"],
             keep={"safety", "sim", "navigator", "arm", "station", "lab_manager"}, stations=PHOTOCATALYSIS) as out:
        context = rclpy.Context()
        rclpy.init(context=context)
        cmd = LabCommander("recovery_test", context=context)
        try:
            watch = Watch(cmd)
            spin_until(cmd, lambda: "rack_1" in watch.world, 60, what="the simulated world state")
            yield watch, out
        finally:
            cmd.destroy_node()
            context.try_shutdown()


def _rack_1_on_the_deck(watch: Watch, out) -> None:
    """rack_1 put on robot1's deck by the robot's own commands, after the goals under way end (the
    arm refuses a goal while it runs one)."""
    from lab.app.commander import TaskResult

    cmd, world = watch.cmd, watch.world
    if world.get("rack_1") == "robot1/deck1":
        return
    spin_until(cmd, lambda: not any(watch.under_way.values()), 60,
               what=f"robot1's action goals under way to end ({watch.under_way})")
    drive = cmd.navigate_to_station("robot1", "rack_storage")
    assert cmd.wait(drive, timeout=120) is TaskResult.SUCCEEDED, (drive.result, out.text(60))
    moved = cmd.manipulate("robot1", "transfer", world["rack_1"], "robot1/deck1", "rack_1")
    assert cmd.wait(moved, timeout=120) is TaskResult.SUCCEEDED, moved.result
    spin_until(cmd, lambda: world.get("rack_1") == "robot1/deck1", 30, what="rack_1 on the deck")


def test_pause_is_exact_and_a_batch_stopped_by_the_estop_goes_home_after_release_and_resume(recovery_lab) -> None:
    from lab.app.cli import _set_sim_speed
    from lab.app.commander import TaskResult
    from lab_interfaces.msg import Formulation, LabStatus

    watch, out = recovery_lab
    cmd, world, mode, steps = watch.cmd, watch.world, watch.mode, watch.steps
    rack = [Formulation(sample_id=f"v{i}", specimen_kind="vial", components=["P10-MIX1"], amounts=[2.0],
                        units=["mg"]) for i in range(2)]
    # an exact pause: paused while the rack goes into the solid dispenser, that transfer
    # finishes and the dispenser does not start until the lab is resumed
    _set_sim_speed(cmd, 5.0)  # the transfer into the dispenser (~18 simulated s) lasts ~4 wall s
    task = cmd.run_batch("photocatalysis", rack)
    spin_until(cmd, lambda: any("-> solid_dispenser/" in step for step in steps.get("steps", [])), 180,
               what="the rack on its way into the solid dispenser")
    ok, message = cmd.pause()
    assert ok and message.startswith("paused: "), message
    steps.clear()
    try:
        spin_until(cmd, lambda: world.get(next(iter(rack_of(world))), "").startswith("solid_dispenser/")
                   and not any("-> solid_dispenser/" in step for step in steps.get("steps", [])),
                   60, what="the transfer under way at the pause to finish")
    except TimeoutError as exc:  # failed once in CI, cause not known: what the lab said
        pytest.fail(f"{exc}; world {world}; steps {steps.get('steps')}\n{out.text(80)}")
    cmd.spin_for(4.0)  # the dispenser would have started at once, and runs 90 simulated s (18 wall s)
    started = [step for step in steps.get("seen", []) if step.startswith("solid_dispenser:")]
    assert not started and mode.get("mode") == LabStatus.PAUSED, (started, out.text(40))
    assert cmd.resume()[0]
    # the dispensing (2 x 90 simulated s) lasts 36 wall s at 5x: time to stop it. At 20x (9 wall s)
    # one CI run stopped it too late: the batch went on and failed at the liquid dispenser instead
    _set_sim_speed(cmd, 5.0)
    try:
        spin_until(cmd, lambda: task.feedback is not None and task.feedback.phase.startswith(
            "solid_dispenser: dispense_solid"), 120, what="the solid dispenser to be dispensing")
    except TimeoutError:
        pytest.fail(f"never dispensing: {task.feedback}\n{out.text(400)}")
    carrier = next(c for c, loc in world.items() if loc.startswith("solid_dispenser/"))
    assert cmd.estop(reason="spill", by="test")[0]
    spin_until(cmd, lambda: mode.get("mode") == LabStatus.ESTOPPED, 30, what="the lab manager to stop")
    ok, message = cmd.resume()
    assert not ok and "release first" in message, message
    assert cmd.estop(release=True, by="test")[0]
    spin_until(cmd, lambda: mode.get("mode") == LabStatus.PAUSED, 30, what="paused after the release")
    assert not task.done.is_set() and world[carrier].startswith("solid_dispenser/")  # nothing moved yet
    assert cmd.resume()[0]
    _set_sim_speed(cmd, 2000.0)
    outcome = cmd.wait(task, timeout=300)
    result = task.result
    assert outcome is TaskResult.FAILED, (result.message if result else "", out.text(40))
    reasons = {m.failure_reason for m in result.measurements}
    assert reasons == {"solid_dispenser: stopped: emergency stop by test (as said over DDS): spill"}, \
        (reasons, out.text(60))
    spin_until(cmd, lambda: world.get(carrier, "").startswith("rack_storage/"), 60, what="the rack home")
    stations = ("solid_dispenser", "liquid_dispenser", "photoreactor", "gas_chromatograph")
    assert not [c for c, loc in world.items() if loc.partition("/")[0] in stations]


def test_a_simulation_killed_with_a_rack_on_the_deck_comes_back_with_it_there(recovery_lab) -> None:
    """Bringup restarts it, and it takes the world back as it was (a fresh one would put rack_1 in
    rack storage, where the configuration starts it)."""
    watch, out = recovery_lab
    cmd, world = watch.cmd, watch.world
    _rack_1_on_the_deck(watch, out)
    os.kill(node_pid(out, "sim"), signal.SIGKILL)
    spin_until(cmd, lambda: "restarted /sim" in out.text(400), 60, what="bringup to restart the sim")
    world.clear()
    spin_until(cmd, lambda: "rack_1" in world, 60, what="the restarted simulation's world state")
    assert world["rack_1"] == "robot1/deck1", (world, out.text(60))
    assert "world taken back from runs/sim_world.json" in out.text(400)


def test_a_lab_manager_killed_with_a_rack_on_the_deck_is_restarted_and_brings_it_home(recovery_lab) -> None:
    """The new lab manager, finding the rack away from home with no batch to own it, brings it home."""
    watch, out = recovery_lab
    cmd, world = watch.cmd, watch.world
    _rack_1_on_the_deck(watch, out)
    os.kill(node_pid(out, "lab_manager"), signal.SIGKILL)
    try:
        spin_until(cmd, lambda: world.get("rack_1", "").startswith("rack_storage/"), 180,
                   what="the restarted lab manager to bring rack_1 home")
    except TimeoutError as exc:
        pytest.fail(f"{exc}: {world}\n{out.text(150)}")
    assert "restarted /lab_manager" in out.text(400)
    assert "rack_1 is at robot1/deck1, away from home, with no batch" in out.text(400)
