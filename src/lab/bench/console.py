"""`lab bench console`: how soon the console's page shows what the lab does, and how soon its
e-stop button stops the robot.

Brings up the whole embedded lab with its console (a supervisor account made for the run, with
a random password), opens the page in headless chromium (selenium), signs in, and runs a
photocatalysis campaign from the bench's own commander. Two latencies are taken over the
campaign, both on this host's wall clock:

- status to page: from the lab manager's /lab_status message reaching a ROS subscriber (the
  bench's own, beside the console's) to the page having drawn it (the page notes the time and
  the message's stamp after each render: window.labShown);
- station to page: from a station's own status saying it changed state (/stations/*/status) to
  the page first showing that state. This includes the lab manager gathering station states
  into /lab_status once per status_period (1 wall s): the figure a chemist watching sees.

Then `--stops` times: the simulation slowed to 2x, a drive across the lab, the e-stop button
clicked at a random moment of it, and the wall time until the simulation's ground truth shows
the base at rest; released and resumed through the page's API as the supervisor.

    lab bench console [--budget 16] [--batch 8] [--speed 500] [--stops 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from lab.bench import free_port, print_figures, write_json
from lab.console.server import listening


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab bench console", description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--speed", type=float, default=500.0)
    parser.add_argument("--stops", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    ns = parser.parse_args(argv)
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        print("lab bench console: needs chromium and chromedriver (apt install chromium chromium-driver)",
              file=sys.stderr)
        return 2
    home = Path.cwd()
    run_dir = (Path("runs") / ("bench-console-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(run_dir)  # the lab's state files and the console's accounts are this run's own
    try:
        figures = _run(ns, run_dir)
    finally:
        os.chdir(home)
    print_figures(figures)
    write_json(figures, ns.json)
    return 0 if figures["passed"] else 1


def _run(ns: argparse.Namespace, run_dir: Path) -> dict:
    from dataclasses import replace

    from nav_msgs.msg import Odometry
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from lab.app.session import lab_session
    from lab.bringup.processes import plan
    from lab.console.accounts import Accounts
    from lab.ros.qos import LATCHED
    from lab_interfaces.msg import LabStatus, SafetyState, StationStatus

    password = secrets.token_urlsafe(18)
    Accounts(run_dir / "runs" / "console" / "users.db").add("bench", "supervisor", password)
    port = free_port()
    specs = plan({"sim": "embedded", "robots": "1", "speed": f"{ns.speed:g}", "record": "false", "console": "true"})
    specs = [replace(s, parameters={**s.parameters, "port": port}) if s.executable == "console" else s for s in specs]
    stations = [s.name for s in specs if s.executable == "station"]
    rng = random.Random(ns.seed)
    heard: dict[float, float] = {}            # /lab_status stamp -> wall s the bench heard it
    changes: list[tuple[float, str, str]] = []  # (wall s, station, state) of a station's own status changing
    last: dict[str, str] = {}
    seen: dict[str, float | bool] = {"speed": 0.0, "stopped": False}

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    with lab_session(specs, run_dir / "nodes.log", "console_bench") as (lab, cmd):
        def on_status(msg: LabStatus) -> None:
            heard[round(msg.stamp.sec + msg.stamp.nanosec * 1e-9, 6)] = time.time()

        def on_station(name: str, msg: StationStatus) -> None:
            if last.get(name) != msg.state_text:
                if name in last:  # the first (latched) status is no change
                    changes.append((time.time(), name, msg.state_text))
                last[name] = msg.state_text

        def on_truth(msg: Odometry) -> None:
            t = msg.twist.twist
            seen["speed"] = abs(t.linear.x) + abs(t.linear.y) + abs(t.angular.z)

        cmd.create_subscription(LabStatus, "/lab_status", on_status, 10)
        cmd.create_subscription(SafetyState, "/safety/state", lambda m: seen.__setitem__("stopped", m.stopped),
                                LATCHED)
        cmd.create_subscription(Odometry, "/robot1/ground_truth", on_truth, 10)
        for name in stations:
            cmd.create_subscription(StationStatus, f"/stations/{name}/status",
                                    lambda m, n=name: on_station(n, m), LATCHED)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            _wait(cmd, lambda: listening(port), 120, "the console")
            driver.get(f"http://127.0.0.1:{port}/")
            WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "login").is_displayed())
            driver.find_element(By.ID, "login-name").send_keys("bench")
            driver.find_element(By.ID, "login-password").send_keys(password)
            driver.find_element(By.ID, "login-button").click()
            WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "main").is_displayed())
            _wait(cmd, lambda: heard and driver.execute_script("return window.labShown.length") > 0, 120,
                  "the page showing the lab")
            for name in stations:  # full stocks: a campaign from a known start
                cmd.refill_stock(name, timeout=60.0)
            started = time.monotonic()
            task = cmd.run_campaign("photocatalysis", budget=ns.budget, batch_size=ns.batch, seed=ns.seed)
            while not cmd.is_task_complete(task, wait=0.1):
                if time.monotonic() - started > 1800:
                    raise SystemExit("lab bench console: the campaign did not end within 1800 s")
            campaign_s = time.monotonic() - started
            shown = driver.execute_script("return window.labShown")
            stops = [_stop(cmd, driver, seen, rng) for _ in range(ns.stops)]
        finally:
            driver.quit()
    first: dict[float, float] = {}  # a status is pushed again with every other change: its first showing counts
    for t_page, stamp, _ in shown:
        first.setdefault(round(stamp, 6), t_page / 1000.0)
    status_ms = [1000.0 * (t - heard[stamp]) for stamp, t in first.items() if stamp in heard]
    station_ms, unseen = [], 0
    for i, (t, name, state) in enumerate(changes):
        # shown before the station changed again; a state shorter than the status period may never be
        until = next((c[0] for c in changes[i + 1:] if c[1] == name), float("inf"))
        page = next((p[0] / 1000.0 for p in shown if t <= p[0] / 1000.0 < until + 0.05 and p[2].get(name) == state),
                    None)
        if page is None:
            unseen += 1
        else:
            station_ms.append(1000.0 * (page - t))
    write_json({"status_to_page_ms": status_ms, "station_to_page_ms": station_ms, "shown": shown,
                "heard": sorted(heard.items()), "changes": changes}, run_dir / "samples.json")
    result = task.result
    figures = {
        "budget": ns.budget, "speed": ns.speed, "campaign": result.message if result is not None else "no result",
        "campaign_wall_s": round(campaign_s, 1),
        "status_to_page_n": len(status_ms),
        "status_to_page_p50_ms": round(_quantile(status_ms, 0.5), 1),
        "status_to_page_p99_ms": round(_quantile(status_ms, 0.99), 1),
        "station_to_page_n": len(station_ms),
        "station_to_page_p50_ms": round(_quantile(station_ms, 0.5), 1),
        "station_to_page_p99_ms": round(_quantile(station_ms, 0.99), 1),
        "station_changes_never_shown": unseen,
        "estop_click_to_rest_n": len([s for s in stops if s is not None]),
        "estop_click_to_rest_median_s": round(_quantile([s for s in stops if s is not None], 0.5), 3),
        "estop_click_to_rest_max_s": round(max([s for s in stops if s is not None], default=float("nan")), 3),
    }
    figures["passed"] = bool(result is not None and result.success and status_ms and station_ms
                             and figures["estop_click_to_rest_n"] == ns.stops)
    return figures


def _stop(cmd, driver, seen: dict, rng: random.Random) -> float | None:
    """One e-stop from the page's button during a drive at 2x; the wall s until the base is at rest."""
    from selenium.webdriver.common.by import By

    from lab.app.cli import _set_sim_speed

    _set_sim_speed(cmd, 2.0)
    target = rng.choice(["printer", "photoreactor", "rack_storage", "gas_chromatograph"])
    drive = cmd.navigate_to_station("robot1", target)
    moving = _wait(cmd, lambda: seen["speed"] > 0.05, 30, f"robot1 driving to {target}", fail=False)
    if not moving:  # docked there already: nothing to stop
        cmd.wait(drive, timeout=60)
        return _stop(cmd, driver, seen, rng)
    _wait(cmd, lambda: False, rng.uniform(0.2, 1.5), "", fail=False)
    clicked = time.monotonic()
    driver.find_element(By.ID, "estop").click()
    at_rest = _wait(cmd, lambda: seen["stopped"] and seen["speed"] < 1e-3, 10, "the base at rest", fail=False)
    took = time.monotonic() - clicked if at_rest else None
    cmd.wait(drive, timeout=60)
    for path in ("/api/release", "/api/resume"):
        driver.execute_async_script(f"""
            const done = arguments[arguments.length - 1];
            const me = await (await fetch('/api/me')).json();
            const r = await fetch('{path}', {{method: 'POST', headers: {{'Content-Type': 'application/json',
                                  'X-CSRF-Token': me.csrf}}, body: '{{}}'}});
            done(r.status);""")
    _wait(cmd, lambda: not seen["stopped"], 10, "the release")
    return took


def _wait(cmd, predicate, timeout: float, what: str, fail: bool = True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        cmd.spin_for(0.01)
    if fail:
        raise SystemExit(f"lab bench console: {what} not within {timeout:g} s")
    return False
