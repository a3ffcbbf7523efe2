"""`planner`: action `~/run_campaign`, the closed loop (propose a batch, run it, learn).

The loop's logic is lab.core.campaign.closed_loop.CampaignRunner (scikit-optimize inside, every
proposal and result in SQLite as it happens); this node turns its batches into
`/lab_manager/run_batch` goals, keeps `batches_in_flight` of them running at once (so the
lab prepares the next rack while one is under the lamp; the planner accounts for the
pending points), records what comes back, and reports progress.

A planner killed at any moment and started again (bringup restarts it) takes up the campaign it
was running by itself (`take_up_within`); a goal with `resume: true` and that campaign's id
follows it (its feedback and result), which is what `lab campaign run` sends when its goal was
lost with the planner. A campaign left longer ago is continued by `lab campaign resume`.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from pathlib import Path

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from lab.core.campaign.closed_loop import CampaignRunner
from lab.core.campaign.eta import BatchTimes, seconds_left
from lab.core.campaign.formulation import EQUIPMENT, Formulation, MeasurementData
from lab.core.campaign.space import campaign_path, load_campaign
from lab.core.campaign.store import CampaignStore, record_command
from lab.core.config.params import PlannerParams
from lab.core.errors import ConfigError, InvalidGoal
from lab.core.operations.workflow import load_workflows, workflow
from lab.core.stations.station import load_kinds, step_seconds
from lab.ros.actions import ActionClient, call_action
from lab.ros.clock import sim_now
from lab.ros.conversions import formulation_to_msg, measurement_to_msg, msg_to_measurement
from lab.ros.main import node_main
from lab.ros.markers import text_marker
from lab.ros.node import LabNode
from lab.ros.params import declare_params, file_or_default
from lab.ros.qos import LATCHED
from lab_interfaces.action import RunBatch, RunCampaign
from lab_interfaces.msg import Measurement
from lab_interfaces.srv import CancelCampaign

#: wall s between a running campaign's marks in the record that its planner is alive (CampaignStore.touch)
TOUCH_PERIOD = 5.0
#: wall s between two looks at the store for the approval of a batch held for one
APPROVAL_LOOK = 0.5


class _Campaign:
    """The campaign this planner runs: the goals that follow it (the one that started it, if any,
    and those that resumed it while it ran), and its result once it ends."""

    def __init__(self, campaign_id: str = "") -> None:
        self.campaign_id = campaign_id  # '' while a new one is being set up
        self.followers: list = []       # goal handles
        self.joined: dict[int, float] = {}  # id() of a follower -> monotonic s it was accepted
        self.seen: set[str] = set()     # client nodes seen in the graph
        self.result: RunCampaign.Result | None = None
        self.cancelled = False
        self.ended = threading.Event()

    def cancel_requested(self) -> bool:
        return any(g.is_cancel_requested for g in list(self.followers))


#: wall s a goal's client counts as following before the planner's graph has shown its node: the
#: node's name comes by discovery, which can lag the goal itself (a clean-clone CI run at 2-core
#: load listed a campaign as 'no client follows it' while `lab campaign run` waited on it)
CLIENT_DISCOVERY = 30.0


def following(goals: list, present: set[str], seen: set[str] | None = None,
              young: set[int] | None = None) -> int:
    """Goals following a campaign whose client node is in the graph (`present`: full node names).
    A goal that does not name its client counts while it is active: the action server cannot tell
    its client left (a client that dies leaves its goal active). A client not in the graph counts
    while its node was never `seen` there and its goal is `young` (id() of goals accepted less than
    CLIENT_DISCOVERY s ago): not discovered yet is not gone."""
    seen, young = seen or set(), young or set()

    def follows(g) -> bool:
        client = g.request.client_node
        return not client or client in present or (client not in seen and id(g) in young)

    return sum(1 for g in goals if g.is_active and follows(g))


class _BatchClock:
    """When (simulated s) each batch in flight started and how long the finished ones took: what
    the estimate of time left goes by (lab.core.campaign.eta)."""

    def __init__(self) -> None:
        self.started: dict[str, tuple[float, int]] = {}  # batch id -> (simulated s, experiments), oldest first
        self.durations: list[float] = []
        self.last_finish: float | None = None  # simulated s the last batch finished

    def start(self, batch_id: str, now: float, size: int) -> None:
        self.started[batch_id] = (now, size)

    def finish(self, batch_id: str, now: float, measured: bool) -> None:
        began, _ = self.started.pop(batch_id, (now, 0))
        if measured:  # a batch refused or cut short says nothing of what a batch takes
            self.durations.append(now - began)
            self.last_finish = now

    @property
    def experiments(self) -> int:
        return sum(size for _, size in self.started.values())

    def elapsed(self, now: float) -> list[float]:
        return [now - began for began, _ in self.started.values()]


class PlannerNode(LabNode):
    def __init__(self) -> None:
        super().__init__("planner")
        self.params = params = declare_params(self, PlannerParams)
        self.database = Path(params.database)
        self.database.parent.mkdir(parents=True, exist_ok=True)
        group = ReentrantCallbackGroup()
        self.batch_client = ActionClient(self, RunBatch, "/lab_manager/run_batch", callback_group=group)
        self.recording = ""
        self.create_subscription(String, "/recorder/path", lambda m: setattr(self, "recording", m.data), LATCHED,
                                 callback_group=group)
        self._lock = threading.Lock()
        self._campaign: _Campaign | None = None  # the one running ('' id while it is set up)
        self._cancels: set[str] = set()  # campaign ids the operator cancelled (~/cancel_campaign)
        self._times: dict[tuple[str, int], BatchTimes] = {}  # (workflow, samples) -> what a batch should take
        # every goal is accepted and a refused one aborted with its reason: an action's
        # rejection carries none
        ActionServer(self, RunCampaign, "~/run_campaign", execute_callback=self._execute,
                     goal_callback=lambda _: GoalResponse.ACCEPT,
                     cancel_callback=lambda _: CancelResponse.ACCEPT, callback_group=group)
        self.create_service(CancelCampaign, "~/cancel_campaign", self._srv_cancel, callback_group=group)
        # RViz: the campaign's progress as a text in the map, outside the lab by default
        self.progress_pub = self.create_publisher(MarkerArray, "/campaign_markers", LATCHED)
        self._show("no campaign running")
        self.get_logger().info(f"campaign database {self.database}")
        threading.Thread(target=self._take_up, daemon=True, name="take_up").start()

    def _config_dir(self) -> Path | None:
        value = self.params.campaigns_dir
        return Path(value) if value else None

    def _srv_cancel(self, request, response):
        running = self._campaign.campaign_id if self._campaign is not None else ""
        if not running or request.campaign_id not in (running, ""):
            response.success = False
            response.message = (f"campaign '{request.campaign_id}' is not running here " +
                                (f"(running: {running})" if running else "(no campaign is running)"))
        else:
            self._cancels.add(running)
            response.success = True
            response.message = (f"cancelling {running}: its batches in flight are cancelled; "
                                f"resume it with `lab campaign resume {running}`")
        record_command(self.database, "not said", "DDS service /planner/cancel_campaign", "cancel_campaign",
                       {"campaign_id": request.campaign_id}, response.message, response.success, self.get_logger())
        return response

    def _audit(self, request, result) -> None:
        """The goal in the audit trail: who its client said it was, what it asked, what came of it."""
        record_command(self.database, request.requested_by or "not said", "DDS action /planner/run_campaign",
                       "resume_campaign" if request.resume else "run_campaign",
                       {"campaign": request.campaign, "budget": int(request.budget),
                        "batch_size": int(request.batch_size), "seed": int(request.seed),
                        "campaign_id": request.campaign_id or result.campaign_id},
                       result.message, bool(result.success), self.get_logger())

    def _claim(self, campaign_id: str = "") -> _Campaign | None:
        """This planner's campaign from now on, or None when one runs already."""
        with self._lock:
            if self._campaign is not None:
                return None
            self._campaign = _Campaign(campaign_id)
            return self._campaign

    def _release(self, campaign: _Campaign, result: RunCampaign.Result) -> None:
        with self._lock:
            campaign.result = result
            self._cancels.discard(campaign.campaign_id)
            self._campaign = None
        campaign.ended.set()

    def _execute(self, goal_handle):
        request = goal_handle.request
        result = RunCampaign.Result(database=str(self.database))
        with self._lock:
            running = self._campaign
            if running is not None and request.resume and request.campaign_id and \
                    request.campaign_id == running.campaign_id:
                running.followers.append(goal_handle)
                running.joined[id(goal_handle)] = time.monotonic()
        if running is not None and goal_handle in running.followers:
            # the campaign runs already (taken up by this planner after a restart): followed, not run twice
            self.get_logger().info(f"a resume of {running.campaign_id}, which runs: the goal follows it")
            running.ended.wait()
            return self._answer(goal_handle, running)
        campaign = self._claim()
        if campaign is None:
            result.success = False
            result.message = (f"refused: campaign {running.campaign_id if running else '(starting)'} is running on "
                              f"this lab; one campaign at a time (`lab campaign cancel "
                              f"{running.campaign_id if running else ''}` ends it)")
            self.get_logger().warning(result.message)
            goal_handle.abort()
            self._audit(request, result)
            return result
        campaign.followers.append(goal_handle)
        campaign.joined[id(goal_handle)] = time.monotonic()
        try:
            with CampaignStore.open(self.database) as store:
                runner = self._runner(store, request)
                result.campaign_id = campaign.campaign_id = runner.campaign_id
                self._loop(campaign, runner, result)
        except (InvalidGoal, ConfigError) as exc:
            result.success, result.message = False, str(exc)
            self.get_logger().warning(f"campaign refused: {exc}")
        finally:
            self._release(campaign, result)
        answer = self._answer(goal_handle, campaign)
        self._audit(request, answer)
        return answer

    def _answer(self, goal_handle, campaign: _Campaign) -> RunCampaign.Result:
        """End a goal that followed `campaign` as the campaign ended."""
        result = campaign.result or RunCampaign.Result(database=str(self.database), success=False,
                                                       message="the campaign ended without a result")
        if result.success:
            goal_handle.succeed()
        elif campaign.cancelled and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        return result

    def _take_up(self) -> None:
        """At start-up: the campaign a previous process of this planner was running when it died,
        taken up by itself when that was within `take_up_within` s (else left to the operator)."""
        try:
            with CampaignStore.open(self.database) as store:
                left = store.left_running()
        except Exception as exc:  # a database that cannot be read: goals will say why
            self.get_logger().error(f"cannot read {self.database} for a campaign to take up: {exc}")
            return
        if not left:
            return
        campaign_id, active = left[0]
        ago = time.time() - active
        within = self.params.take_up_within
        if ago > within:
            for old, _ in left:
                self.get_logger().warning(f"campaign {old} was left running when its planner stopped: "
                                          f"`lab campaign resume {old}` continues it")
            return
        campaign = self._claim(campaign_id)
        if campaign is None:
            return  # a goal came first
        self.get_logger().warning(f"taking up campaign {campaign_id}, which this planner was running {ago:.0f} s "
                                  "ago when its process stopped")
        result = RunCampaign.Result(database=str(self.database), campaign_id=campaign_id)
        try:
            with CampaignStore.open(self.database) as store:
                runner = CampaignRunner.resume(store, campaign_id, config_dir=self._config_dir())
                self._loop(campaign, runner, result)
        except (InvalidGoal, ConfigError) as exc:
            result.success, result.message = False, f"cannot take up {campaign_id}: {exc}"
            self.get_logger().error(result.message)
        finally:
            self._release(campaign, result)

    def _following(self, campaign: _Campaign) -> int:
        present = {f"{ns.rstrip('/')}/{name}" for name, ns in self.get_node_names_and_namespaces()}
        goals = list(campaign.followers)
        campaign.seen |= {g.request.client_node for g in goals} & present
        now = time.monotonic()
        young = {id(g) for g in goals if now - campaign.joined.get(id(g), now) < CLIENT_DISCOVERY}
        return following(goals, present, campaign.seen, young)

    def _runner(self, store, request) -> CampaignRunner:
        if request.resume:
            if not request.campaign_id:
                raise InvalidGoal("resume needs the campaign_id to resume")
            return CampaignRunner.resume(store, request.campaign_id, config_dir=self._config_dir())
        config = load_campaign(campaign_path(request.campaign, self._config_dir()))
        batch = int(request.batch_size) or config.batch_size
        flow = workflow(load_workflows(file_or_default(self.params.workflows_file, "config/workflows.yaml")),
                        config.workflow)
        return CampaignRunner.start(store, config, int(request.budget), batch, int(request.seed),
                                    capacity=flow.capacity, started_by=request.requested_by)

    def _loop(self, campaign: _Campaign, runner: CampaignRunner, result) -> None:
        started = sim_now(self)
        batches = _BatchClock()
        finished: queue.Queue = queue.Queue()
        in_flight: dict[str, threading.Thread] = {}
        stop = threading.Event()
        workflow = runner.config.workflow
        specimen = runner.config.specimen_kind
        limit = self.params.batches_in_flight
        self.get_logger().info(f"campaign {runner.campaign_id}: {runner.progress().budget} experiments")
        last_feedback = last_touch = next_look = 0.0
        awaiting = None  # the batch held for approval
        watched = False  # a client followed it at the last touch
        while True:
            while not finished.empty():
                batch_id, measurements, message = finished.get()
                in_flight.pop(batch_id).join()
                batches.finish(batch_id, sim_now(self), measured=not message and not stop.is_set())
                if stop.is_set():
                    continue  # cancelled: the batch stays 'running' in the record; a resume runs it again
                runner.record(batch_id, [msg_to_measurement(m) for m in measurements])
                if message:
                    self.get_logger().warning(f"{batch_id}: {message}")
            if campaign.cancel_requested() or runner.campaign_id in self._cancels:
                stop.set()
            if stop.is_set():
                if not in_flight:
                    break
            elif len(in_flight) < limit and not runner.done and time.monotonic() >= next_look:
                batch = awaiting or runner.next_batch()
                if batch is not None and batch.awaiting:
                    # held for a supervisor (lab.core.campaign.approval): the store is read again every
                    # APPROVAL_LOOK s until it is decided; everything dropped: the next proposal
                    if awaiting is None:
                        self._show(f"{batch.batch_id}: {len(batch.experiments)} experiments await approval "
                                   f"(the console, or `lab campaign approve {runner.campaign_id}`)")
                    awaiting, batch = batch, runner.approved(batch)
                    next_look = time.monotonic() + APPROVAL_LOOK
                    if batch is not None:
                        awaiting, next_look = None, 0.0
                        batch = batch if batch.experiments else None
                if batch is not None:
                    units = runner.config.space.units
                    formulations = [formulation_to_msg(Formulation(e.sample_id, dict(e.point), units, specimen))
                                    for e in batch.experiments]
                    thread = threading.Thread(target=self._run_batch, daemon=True,
                                              args=(batch.batch_id, workflow, formulations, finished, stop))
                    in_flight[batch.batch_id] = thread
                    batches.start(batch.batch_id, sim_now(self), len(formulations))
                    thread.start()
            if runner.done and not in_flight:
                break
            if time.monotonic() - last_feedback > 0.5:
                last_feedback = time.monotonic()
                self._feedback(campaign, runner, started, batches)
            if time.monotonic() - last_touch > TOUCH_PERIOD:
                last_touch = time.monotonic()
                following = self._following(campaign)
                if following == 0 and watched:
                    self.get_logger().warning(
                        f"campaign {runner.campaign_id}: no client follows it any more (the one that sent it left "
                        f"the graph); it runs on to its budget: `lab campaign cancel {runner.campaign_id}` stops it")
                watched = following > 0
                runner.store.touch(runner.campaign_id, following)
            time.sleep(0.02)
        self._feedback(campaign, runner, started, batches)
        progress = runner.progress()
        result.experiments_done, result.experiments_failed = progress.done, progress.failed
        result.experiments_made_again = progress.made_again
        result.hypervolume = float(progress.hypervolume or 0.0)
        result.recording = self.recording
        units = runner.config.space.units
        objective_units = {o.name: o.unit for o in runner.config.objectives}
        for point, values in runner.best():
            result.best.append(formulation_to_msg(Formulation("", dict(point), units, specimen)))
            result.best_measurements.append(measurement_to_msg(MeasurementData(
                "", True, dict(values), units={k: objective_units.get(k, "") for k in values})))
        by_client = campaign.cancel_requested()
        if by_client or runner.campaign_id in self._cancels:
            runner.cancel()
            campaign.cancelled = True
            by = "" if by_client else " by the operator (lab campaign cancel)"
            result.success = False
            result.message = f"cancelled{by}; resume with `lab campaign resume {runner.campaign_id}`"
        else:
            result.success = True
            again = f", {progress.made_again} made again" if progress.made_again else ""
            result.message = f"{progress.done} experiments ({progress.failed} failed{again}); {progress.best_summary}"
        self.get_logger().info(f"campaign {runner.campaign_id}: {result.message}")
        self._show(f"{runner.campaign_id}: {result.message}")

    def _run_batch(self, batch_id: str, workflow: str, formulations, finished: queue.Queue,
                   stop: threading.Event) -> None:
        goal = RunBatch.Goal(batch_id=batch_id, workflow=workflow, formulations=formulations)
        limit = self._batch_limit(workflow, len(formulations))
        outcome = call_action(self.batch_client, goal, timeout=limit, cancel=stop.is_set,
                              waiting_for=f"batch {batch_id} (what it should take, with margin)")
        while outcome.lost and not stop.is_set():
            # the lab manager died or was restarted: the new one has the batch's record and goes on
            # with it; the same goal, sent again, is answered with that batch's result
            wait = self.params.reattach_timeout
            self.get_logger().warning(f"{batch_id}: the lab manager went away during the batch; waiting up to "
                                      f"{wait:g} s for it to come back to send the batch again")
            if not self._server_back(wait, stop):
                outcome.reason = (f"the lab manager went away during the batch and did not come back within "
                                  f"{wait:g} s")
                break
            outcome = call_action(self.batch_client, goal, timeout=limit, cancel=stop.is_set,
                                  waiting_for=f"batch {batch_id} (what it should take, with margin)")
        measurements = list(outcome.result.measurements) if outcome.result is not None else []
        if len(measurements) != len(formulations):
            # the batch never ran (no lab manager, refused): every sample failed, with the reason,
            # and none was measured (the equipment's failure: they can be made again)
            reason = outcome.message or "the batch did not run"
            measurements = [Measurement(sample_id=f.sample_id, valid=False, failure_reason=reason,
                                        failure_kind=EQUIPMENT, as_dispensed=f) for f in formulations]
        finished.put((batch_id, measurements, "" if outcome.succeeded else outcome.message))

    def _batch_times(self, workflow_name: str, samples: int) -> BatchTimes:
        """What a batch of `samples` should take through its workflow's steps (simulated s). Kept
        per (workflow, samples): the feedback asks twice a second, and the files are read-only
        parameters (they cannot change while the node runs)."""
        key = (workflow_name, samples)
        if key not in self._times:
            params = self.params
            flow = load_workflows(file_or_default(params.workflows_file, "config/workflows.yaml"))[workflow_name]
            kinds = load_kinds(file_or_default(params.processes_file, "config/station_processes.yaml"))
            self._times[key] = BatchTimes(step_seconds([(step.kind, step.process) for step in flow.steps], kinds,
                                                       samples), params.leg_seconds)
        return self._times[key]

    def _batch_limit(self, workflow_name: str, samples: int) -> float:
        """How long (s) to wait for a batch: `batch_timeout`, or from what it should take."""
        params = self.params
        if params.batch_timeout > 0:
            return params.batch_timeout
        expected = self._batch_times(workflow_name, samples).chain
        return params.margin_factor * expected * params.batches_in_flight + params.margin_seconds

    def _server_back(self, seconds: float, stop: threading.Event) -> bool:
        """Whether /lab_manager/run_batch is served again within `seconds` (wall)."""
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            if self.batch_client.server_is_ready():
                return True
            time.sleep(0.2)
        return False

    def _show(self, text: str) -> None:
        x, y, z = self.params.progress_marker_xyz
        self.progress_pub.publish(MarkerArray(markers=[
            text_marker("campaign", 0, (x, y, z), text, self.get_clock().now().to_msg(), height=0.3)]))

    def _feedback(self, campaign: _Campaign, runner: CampaignRunner, started: float, batches: _BatchClock) -> None:
        p = runner.progress()
        again = f", {p.made_again} made again" if p.made_again else ""
        self._show(f"{runner.campaign_id}: {p.done}/{p.budget} ({p.failed} failed{again}), {p.best_summary}")
        now = sim_now(self)
        elapsed = now - started
        # from the steps still to run (lab.core.campaign.eta); NaN: no workflow figures to go by
        try:
            times = self._batch_times(runner.config.workflow, runner.batch_size)
        except (KeyError, ConfigError):
            left = math.nan
        else:
            to_start = max(0, p.budget - p.done - p.failed - batches.experiments)
            left = seconds_left(times, self.params.batches_in_flight, runner.batch_size, to_start,
                                batches.elapsed(now), batches.durations,
                                None if batches.last_finish is None else now - batches.last_finish)
        feedback = RunCampaign.Feedback(
            campaign_id=runner.campaign_id, experiments_done=p.done, experiments_running=p.running,
            experiments_failed=p.failed, experiments_made_again=p.made_again, budget=p.budget,
            best_value=float(p.best_value or 0.0),
            hypervolume=float(p.hypervolume or 0.0), best_summary=p.best_summary, sim_time=float(elapsed),
            estimated_time_left=float(left))
        for goal_handle in list(campaign.followers):
            if goal_handle.is_active:
                goal_handle.publish_feedback(feedback)


def main(args: list[str] | None = None) -> None:
    node_main(PlannerNode, "planner")


if __name__ == "__main__":
    main()
