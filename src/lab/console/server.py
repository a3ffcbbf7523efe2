"""The console's process: the `console` node of the node table (bringup console:=true) and
`lab console` for a lab already up. A ROS node named `console` (its parameters:
lab.core.config.params.ConsoleParams) and uvicorn serving lab.console.app in the same process.

It runs on the lab host as a local operator: it reads the campaign store, reaches the safety
node's fast path (its Unix socket) and sends goals like the `lab` command (docs/security.md).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


def serve(ros_args: list[str] | None = None) -> int:
    import uvicorn

    from lab.console.app import ConsoleConfig, create_app
    from lab.console.lab_link import LabLink
    from lab.core.config.params import ConsoleParams
    from lab.core.errors import LabError
    from lab.core.persist import apply_umask
    from lab.ros.params import declare_params

    apply_umask()
    link = LabLink("console")
    link.start(ros_args)
    try:
        try:
            params = declare_params(link.cmd, ConsoleParams)
        except LabError as exc:
            print(f"console: {exc}", file=sys.stderr)
            return 2
        link.database = Path(params.database)
        config = ConsoleConfig(users_db=Path(params.users_db), secret_file=Path(params.secret_file),
                               campaign_db=Path(params.database),
                               campaigns_dir=Path(params.campaigns_dir) if params.campaigns_dir else None,
                               reports_dir=Path(params.reports_dir), session_hours=params.session_hours,
                               secure_cookie=bool(params.certfile) or params.behind_proxy)
        notifier = None
        if params.notify_file:
            from lab.console.notify import Notifier

            try:
                notifier = Notifier.from_file(Path(params.notify_file), Path(params.database), link.cmd.get_logger())
            except LabError as exc:
                print(f"console: notify_file: {exc}", file=sys.stderr)
                return 2
            link.listeners.append(notifier.on_event)
        app = create_app(config, link)
        server = uvicorn.Server(uvicorn.Config(
            app, host=params.host, port=params.port, ssl_certfile=params.certfile or None,
            ssl_keyfile=params.keyfile or None, log_level="warning", proxy_headers=params.behind_proxy,
            timeout_graceful_shutdown=3, lifespan="off"))
        scheme = "https" if params.certfile else "http"
        accounts = "" if config.users_db.is_file() else (f"; no accounts yet in {config.users_db}: "
                                                          "`lab users add NAME --role supervisor`")
        link.cmd.get_logger().info(f"the console on {scheme}://{params.host}:{params.port}{accounts}")
        # uvicorn shuts down on SIGINT/SIGTERM and then raises the signal again for the handler that
        # was there before it: ours, so that the process ends through `finally` (the node destroyed)
        # with status 0, as bringup's other nodes do
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        if notifier is not None:
            notifier.close()
        return 0 if server.started else 1
    finally:
        link.stop()


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on host:port (the console, once it serves)."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """The node table's `console` executable (its --ros-args from the bringup)."""
    sys.exit(serve(None))


def cli(argv: list[str]) -> int:
    """`lab console [--port N] [--host H] ...`: the console for a lab already up, on this host."""
    from lab.core.config.params import ConsoleParams

    fields = ConsoleParams.model_fields
    parser = argparse.ArgumentParser(prog="lab console", description="The lab in a browser, for a lab already up "
                                     "(bringup console:=true starts it with the lab). Accounts: lab users add.")
    for name in ("host", "port", "users_db", "database", "campaigns_dir", "certfile", "keyfile", "notify_file"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                            help=f"(default {fields[name].default!r})")
    parser.add_argument("--behind-proxy", action="store_true", help="an HTTPS reverse proxy on this host serves it")
    ns = parser.parse_args(argv)
    ros = ["lab_console", "--ros-args", "-r", "__node:=console"]
    for name, value in vars(ns).items():
        if value is not None and value is not False:
            ros += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
    return serve(ros)
