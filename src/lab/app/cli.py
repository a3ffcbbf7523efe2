"""`lab`: the operator's command.

    lab bringup [name:=value ...]           start the lab's nodes (where `ros2 launch` is absent)
    lab demo                                bring the lab up, run the demo campaign, write its report
    lab campaign run NAME [--budget N] [--batch B] [--seed S] [--speed X]
    lab campaign list | status ID | resume ID | cancel ID | report ID | approve ID [--drop N] [--set N:dim=v]
    lab estop [--release] [--reason TEXT] | pause | resume
    lab console [--port N] ...              the lab in a browser (bringup starts it: console:=true)
    lab users add NAME --role ROLE | list | role | passwd | remove
    lab bench planner|suite|campaign|cost|lab|plumbing|emulators ...
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DB = "runs/campaigns.db"


def _bringup(ns: argparse.Namespace) -> int:
    from lab.bringup import processes as bringup

    return bringup.main(ns.arguments, duration=ns.duration, table=ns.table, restarts=ns.restarts)


def _set_sim_speed(cmd, speed: float) -> None:
    """Change the embedded simulation's speed at run time (its `speed` parameter)."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    client = cmd.create_client(SetParameters, "/sim/set_parameters")
    try:
        if not client.wait_for_service(timeout_sec=5.0):
            print("lab: no /sim node (not the embedded simulation?): --speed ignored", file=sys.stderr)
            return
        request = SetParameters.Request(parameters=[Parameter(
            name="speed", value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(speed)))])
        future = client.call_async(request)
        while not future.done():
            cmd.spin_for(0.1)
        result = future.result().results[0]
        if not result.successful:
            print(f"lab: speed {speed} refused by /sim: {result.reason}", file=sys.stderr)
    finally:
        cmd.destroy_client(client)


def _count(least: int):
    """An argparse type: a whole number of at least `least` (a goal's unsigned field), checked by
    lab.app.requests.whole_number, as the console checks its forms."""
    def parse(text: str) -> int:
        from lab.app.requests import whole_number
        from lab.core.errors import InvalidGoal

        try:
            return whole_number(text, least)
        except InvalidGoal as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value: ")) from None
    return parse


def _with_commander(fn):
    def wrapped(ns: argparse.Namespace) -> int:
        import rclpy
        from rclpy.signals import SignalHandlerOptions

        from lab.app.commander import LabCommander

        # Ctrl-C is the command's to handle (a campaign is cancelled, not left running): rclpy's
        # own handler would shut the context down under it, and nothing could be sent any more
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        # a name of its own: the planner tells a campaign's client left by its name leaving the graph
        cmd = LabCommander(f"lab_commander_{os.getpid()}")
        try:
            return int(fn(cmd, ns) or 0)
        except TimeoutError as exc:
            print(f"lab: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("lab: interrupted", file=sys.stderr)
            return 130
        finally:
            cmd.destroy_node()
            rclpy.try_shutdown()

    return wrapped


def _exit_code(code: int, result: object) -> int:
    """A campaign that ended with failed experiments says so and exits non-zero."""
    failed = int(getattr(result, "experiments_failed", 0) or 0)
    if code == 0 and failed:
        total = failed + int(result.experiments_done)  # type: ignore[attr-defined]
        print(f"lab: {failed} of {total} experiments failed "
              f"(why: lab campaign status {result.campaign_id})", file=sys.stderr)  # type: ignore[attr-defined]
        return 1
    return code


def _planner_campaigns_dir(cmd) -> Path:
    """The planner's campaigns folder, as its `campaigns_dir` parameter says (--file works on the
    planner's host). Not the package's own folder ('' ): the operator's files do not go into the
    installed package; LabError saying how to give the planner a folder of one's own."""
    from rcl_interfaces.srv import GetParameters

    from lab.core.errors import LabError

    client = cmd.create_client(GetParameters, "/planner/get_parameters")
    try:
        if not client.wait_for_service(timeout_sec=10.0):
            raise TimeoutError("no /planner within 10 s: is the lab up?")
        future = client.call_async(GetParameters.Request(names=["campaigns_dir"]))
        deadline = time.monotonic() + 10.0
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError("/planner did not say its campaigns_dir within 10 s")
            cmd.spin_for(0.1)
        value = future.result().values[0].string_value
    finally:
        cmd.destroy_client(client)
    if not value:
        raise LabError("--file: the planner reads the package's own campaigns folder (campaigns_dir ''); give it a "
                       "folder of yours (the node table's planner entry: campaigns_dir: /path) and run --file again")
    return Path(value)


@_with_commander
def _campaign_run(cmd, ns: argparse.Namespace) -> int:
    from lab.app.campaign_info import install_campaign_file
    from lab.core.errors import LabError

    if (ns.name is None) == (ns.file is None):
        print("lab campaign run: give a campaign NAME (config/campaigns) or --file PATH, one of them", file=sys.stderr)
        return 2
    name = ns.name
    if ns.file is not None:
        try:
            folder = _planner_campaigns_dir(cmd)
            name = install_campaign_file(Path(ns.file), folder)
        except LabError as exc:
            print(f"lab: {exc}", file=sys.stderr)
            return 2
        print(f"lab: campaign file {ns.file} is campaign '{name}' in {folder}")
    if ns.speed is not None:
        _set_sim_speed(cmd, ns.speed)
    from lab.app.session import run_campaign_with_progress

    return _exit_code(*run_campaign_with_progress(cmd, name, ns.budget, ns.batch, ns.seed))


@_with_commander
def _campaign_resume(cmd, ns: argparse.Namespace) -> int:
    from lab.core.campaign.store import CampaignStore

    with CampaignStore.open(Path(ns.db)) as store:
        info = store.campaign_info(ns.campaign_id)
    from lab.app.session import run_campaign_with_progress

    return _exit_code(*run_campaign_with_progress(cmd, info.name, info.budget, info.batch_size, info.seed,
                                                  resume=True, campaign_id=ns.campaign_id))


@_with_commander
def _campaign_cancel(cmd, ns: argparse.Namespace) -> int:
    from lab.app.commander import ServiceNotThere, requester

    try:
        ok, message = cmd.cancel_campaign(ns.campaign_id)
    except ServiceNotThere as exc:  # (a planner that is there and does not answer is never worked around)
        from lab.app.campaign_info import cancel_left_running

        ok, message = cancel_left_running(Path(ns.db), ns.campaign_id, requester())
        if not ok:
            message = f"{exc}; and the record: {message}"
    print(f"lab campaign cancel: {message}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


@_with_commander
def _operator(cmd, ns: argparse.Namespace) -> int:
    ok, message = {"pause": cmd.pause, "resume": cmd.resume}[ns.command]()
    print(f"lab {ns.command}: {message}")
    return 0 if ok else 1


def _campaign_list(ns: argparse.Namespace) -> int:
    from lab.app.campaign_info import list_campaigns

    return list_campaigns(Path(ns.db))


def _campaign_status(ns: argparse.Namespace) -> int:
    from lab.app.campaign_info import campaign_status

    return campaign_status(Path(ns.db), ns.campaign_id)


def _campaign_approve(ns: argparse.Namespace) -> int:
    """`lab campaign approve ID [--drop N] [--set N:dimension=value]`: the batch awaiting approval
    (lab.core.campaign.approval), as the console approves it; recorded in the audit trail."""
    from lab.app.commander import requester
    from lab.core.campaign.approval import approve
    from lab.core.campaign.store import CampaignStore
    from lab.core.errors import LabError

    edits: dict[int, dict[str, str]] = {}
    for item in ns.set:
        index, _, assignment = item.partition(":")
        name, eq, value = assignment.partition("=")
        if not (index.isdigit() and eq and name):
            print(f"lab campaign approve: --set {item!r}: give N:dimension=value", file=sys.stderr)
            return 2
        edits.setdefault(int(index), {})[name] = value
    who = requester()
    params = {"campaign_id": ns.campaign_id, "drop": ns.drop, "edits": edits}
    if not Path(ns.db).is_file():
        print(f"lab: no campaign database at {ns.db}", file=sys.stderr)
        return 1
    with CampaignStore.open(Path(ns.db)) as store:
        try:
            message, ok = approve(store, ns.campaign_id, who, ns.drop, edits), True
        except LabError as exc:
            message, ok = f"refused: {exc}", False
        store.record_command(who, "lab campaign approve", "approve_batch", params, message, ok)
    print(f"lab campaign approve: {message}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def _campaign_report(ns: argparse.Namespace) -> int:
    from lab.app.campaign_info import campaign_report

    return campaign_report(Path(ns.db), ns.campaign_id, Path(ns.out) if ns.out else None,
                           Path(ns.recording) if ns.recording else None)


def _demo(ns: argparse.Namespace) -> int:
    from lab.app.demo import main as demo_main

    return demo_main(budget=ns.budget, batch=ns.batch, seed=ns.seed, speed=ns.speed, robots=ns.robots,
                     instruments=ns.instruments)


def _audit(ns: argparse.Namespace) -> int:
    import json
    from datetime import datetime

    from lab.core.campaign.store import CampaignStore

    if not Path(ns.db).is_file():
        print(f"lab: no campaign database at {ns.db}", file=sys.stderr)
        return 1
    with CampaignStore.open(Path(ns.db)) as store:
        rows = store.commands(ns.last)
    for when, who, via, command, params, outcome, ok in rows:
        stamp = datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp}  {'ok     ' if ok else 'refused'}  {command:<16} by {who} via {via} "
              f"{json.dumps(params, sort_keys=True)}: {outcome}")
    if not rows:
        print(f"no commands recorded in {ns.db}")
    return 0


def _console(rest: list[str]) -> int:
    from lab.console.server import cli

    return cli(rest)


def _instrument(rest: list[str]) -> int:
    if rest[:1] != ["serve"]:
        print("usage: lab instrument serve KIND [--port N] [--name NAME] [--cert F --key F | --insecure] "
              "[--cert-out F] [--discovery] [--time-scale X]", file=sys.stderr)
        return 2
    from lab.instruments.server import main as serve

    return serve(rest[1:])


def _users(rest: list[str]) -> int:
    from lab.console.accounts import main as users_main

    return users_main(rest)


def _security(rest: list[str]) -> int:
    from lab.app.security import main as security_main

    return security_main(rest)


def _fullstack(ns: argparse.Namespace) -> int:
    from lab.bringup.audit import main as audit_main

    return audit_main(ns.arguments)


def _bench(ns: argparse.Namespace) -> int:
    return _bench_main(ns.rest)


def _bench_main(rest: list[str]) -> int:
    from lab.bench import main as bench_main

    return bench_main(rest)


def build_parser() -> argparse.ArgumentParser:
    from lab.core.config.nodetable import ARGUMENTS

    parser = argparse.ArgumentParser(prog="lab", description="The mobile robotic chemist's operator command.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("bringup", help="start the lab's nodes as processes (like ros2 launch lab bringup.launch.py)",
                       description="Arguments as for ros2 launch: " + "; ".join(
                           f"{a.name} (default {a.default}): {a.description}" for a in ARGUMENTS.values()))
    p.add_argument("arguments", nargs="*", metavar="name:=value")
    p.add_argument("--duration", type=float, default=None, help="stop after this many wall seconds")
    p.add_argument("--table", default="nodes.yaml", help="node table under config/ (default nodes.yaml)")
    p.add_argument("--restarts", type=_count(0), default=3,
                   help="times a node that dies is started again within 10 min (default 3; 0: never)")
    p.set_defaults(func=_bringup)

    p = sub.add_parser("demo", help="bring the lab up, run a photocatalysis campaign, write its report")
    p.add_argument("--budget", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--speed", type=float, default=400.0, help="simulated seconds per wall second")
    p.add_argument("--robots", type=int, default=1)
    p.add_argument("--instruments", choices=("default", "sila"), default="default",
                   help="sila: the stations drive their emulated instruments over SiLA 2 (docs/instruments.md)")
    p.set_defaults(func=_demo)

    camp = sub.add_parser("campaign", help="run and inspect campaigns").add_subparsers(dest="verb", required=True)
    p = camp.add_parser("run", help="run a campaign (config/campaigns/NAME.yaml) on the running lab")
    p.add_argument("name", nargs="?", help="a campaign in the planner's campaigns folder")
    p.add_argument("--file", default=None,
                   help="your own campaign file: checked, put in the planner's campaigns folder, run by its name "
                        "(on the planner's host)")
    p.add_argument("--budget", type=_count(1), default=64, help="measured experiments, controls included")
    p.add_argument("--batch", type=_count(0), default=0, help="batch size (0: the campaign file's)")
    p.add_argument("--seed", type=_count(0), default=0)
    p.add_argument("--speed", type=float, default=None, help="set the embedded simulation's speed first")
    p.set_defaults(func=_campaign_run)
    for verb, helptext, fn in (("status", "one campaign's progress", _campaign_status),
                               ("resume", "continue a stopped campaign on the running lab", _campaign_resume),
                               ("cancel", "end the running campaign (resumable), as Ctrl-C on its run does",
                                _campaign_cancel),
                               ("report", "write a campaign's plots and HTML page", _campaign_report)):
        p = camp.add_parser(verb, help=helptext)
        p.add_argument("campaign_id")
        p.add_argument("--db", default=DEFAULT_DB)
        if verb == "report":
            p.add_argument("--out", default=None, help="folder (default: beside the database)")
            p.add_argument("--recording", default=None,
                           help="the lab's MCAP recording for the top-down picture (default: the newest "
                                "lab_*.mcap beside the database that covers the campaign)")
        p.set_defaults(func=fn)
    p = camp.add_parser("approve", help="approve the batch a campaign with approval: true holds for you")
    p.add_argument("campaign_id")
    p.add_argument("--drop", type=_count(0), action="append", default=[], metavar="N",
                   help="leave experiment N out (its place goes to a later proposal)")
    p.add_argument("--set", action="append", default=[], metavar="N:DIMENSION=VALUE",
                   help="run experiment N with this value instead (checked against the campaign's space)")
    p.add_argument("--db", default=DEFAULT_DB)
    p.set_defaults(func=_campaign_approve)
    p = camp.add_parser("list", help="campaigns in the database")
    p.add_argument("--db", default=DEFAULT_DB)
    p.set_defaults(func=_campaign_list)

    p = sub.add_parser("estop", help="emergency stop: every motion and process stops now (--release lifts it)",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda ns: _estop(ns.rest))
    for name, helptext in (("pause", "finish current steps, start nothing new"),
                           ("resume", "leave pause (not an emergency stop: release that with lab estop --release)")):
        sub.add_parser(name, help=helptext).set_defaults(func=_operator)

    p = sub.add_parser("audit", help="every command the lab was given: who, how, what, what came of it")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--last", type=_count(0), default=50, help="the last N (0: all)")
    p.set_defaults(func=_audit)

    p = sub.add_parser("fullstack", help="the full stack's graph, checked without ROS (docs/ros2_users.md)")
    p.add_argument("verb", choices=["audit"])
    p.add_argument("arguments", nargs="*", metavar="name:=value",
                   help="the launch's arguments (default sim:=gazebo robots:=1 navigation:=nav2 arm:=moveit)")
    p.set_defaults(func=_fullstack)

    p = sub.add_parser("security", help="SROS2: a policy from the running lab, a keystore (docs/security.md)",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda ns: _security(ns.rest))

    p = sub.add_parser("console", help="the lab in a browser, for a lab already up (docs/console.md)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda ns: _console(ns.rest))

    p = sub.add_parser("users", help="the console's accounts: add NAME --role ROLE | list | role | passwd | remove",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda ns: _users(ns.rest))

    p = sub.add_parser("instrument", help="serve KIND: a station kind's emulated instrument as a SiLA 2 server "
                       "(docs/instruments.md)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda ns: _instrument(ns.rest))

    p = sub.add_parser("bench", help="benchmarks (see BENCHMARKS.md)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_bench)
    return parser


def _estop(rest: list[str]) -> int:
    from lab.app.estop import main as estop_main

    return estop_main(rest)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    os.umask(0o027)  # lab.core.persist.UMASK: what the command and the nodes it starts write is not world-readable
    if args[:1] == ["estop"]:  # the fast path: no parser of the whole command, no lab imports
        return _estop(args[1:])
    # commands with parsers of their own, whose options may come first (argparse's REMAINDER
    # refuses a leading --option)
    own = {"console": _console, "users": _users, "security": _security, "bench": lambda rest: _bench_main(rest)}
    if args[:1] and args[0] in own:
        return int(own[args[0]](args[1:]) or 0)
    parser = build_parser()
    ns = parser.parse_args(args)
    return int(ns.func(ns) or 0)


if __name__ == "__main__":
    sys.exit(main())
