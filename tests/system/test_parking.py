"""Two robots through the lab manager, over DDS: an idle robot standing on the dock a batch
needs is driven to its parking spot, and the batch completes. Its own module: two labs must
not run at once (test_traffic's lab lives as long as its module).
"""

from __future__ import annotations

import time

import pytest
from conftest import ros_available
from helpers import lab, spin_until

pytestmark = [pytest.mark.system, pytest.mark.slow,
              pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")]


def test_the_lab_manager_parks_an_idle_robot_that_stands_on_a_needed_dock(tmp_path) -> None:
    import rclpy

    from lab.app.commander import LabCommander, TaskResult
    from lab_interfaces.action import RunBatch
    from lab_interfaces.msg import Formulation

    # robot1 idles at the solid dispenser, robot2 stands at rack storage: robot2 (nearest the
    # rack) carries it to the solid dispenser, so robot1 must make way. One batch straight to the
    # lab manager (the planner adds nothing here; the scheduling itself is tests/unit/test_scheduler.py's)
    starts = [1.35, 3.2, 3.1416, 1.35, 1.6, 3.1416]
    keep = {"sim", "navigator", "arm", "station", "lab_manager", "traffic"}
    # the batch: the solid dispenser (where robot1 stands, so what is tested), then a measurement
    # (a batch no station measures fails); the whole photocatalysis workflow is test_campaigns'
    flows = tmp_path / "workflows.yaml"
    flows.write_text("workflows:\n  dispense:\n    carrier: rack\n    capacity: 16\n    home: rack_storage\n"
                     "    steps:\n      - {kind: solid_dispenser}\n      - {kind: gas_chromatograph}\n")
    with lab(tmp_path, ["robots:=2", "speed:=1500", "record:=false"], keep=keep,
             overrides={"sim": {"start_poses": starts}, "lab_manager": {"workflows_file": str(flows)}},
             stations=("rack_storage", "solid_dispenser", "gas_chromatograph")) as out:
        context = rclpy.Context()
        rclpy.init(context=context)
        cmd = LabCommander("parking_test", context=context)
        try:
            client = cmd._client(RunBatch, "/lab_manager/run_batch")
            spin_until(cmd, client.server_is_ready, 120, what="the lab manager's action server")
            rack = [Formulation(sample_id=f"v{i}", specimen_kind="vial", components=["P10-MIX1", "L-Cysteine-100gL"],
                                amounts=[2.0, 0.5], units=["mg", "mL"]) for i in range(2)]
            task = cmd.run_batch("dispense", rack)  # (the lab manager's workflows_file above)
            deadline = time.monotonic() + 240
            while not cmd.is_task_complete(task, wait=0.1):
                assert time.monotonic() < deadline, out.text(80)
            assert cmd.get_result(task) is TaskResult.SUCCEEDED, (
                task.result.message if task.result else "", [m.failure_reason for m in task.result.measurements]
                if task.result else [], out.text(80))
            assert [m.valid for m in task.result.measurements] == [True, True], task.result.measurements
        finally:
            cmd.destroy_node()
            context.try_shutdown()
    assert "robot1 stands idle at solid_dispenser, where robot2 must go: parking it at (6.5, 10.3)" in out.text(2000)
    assert "stopped against" not in out.text(2000)
