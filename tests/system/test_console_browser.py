"""The console in a real browser (Debian's chromium through selenium) against a lab brought up by
the test, console and all (issue 34): sign in; start a campaign, approve its batch with one
experiment edited (after an edit outside the space is refused), watch its progress on the page
while a station's injected fault calls a human (webhook and e-mail, once each); press the
e-stop and see the robot stop in the lab's own state; releasing as an operator is refused, as a
supervisor it works; the page says so when the lab manager is silent and comes back by itself.
Screenshots of the main pages go to runs/test-artefacts/console/."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, ros_available
from helpers import LAB, PHOTOCATALYSIS, Probe, lab, node_pid, set_param, spin_for, spin_until
from notices import Mailbox, free_port, serve_hook
from procs import process, wait_for

from lab.console.server import listening

pytestmark = [pytest.mark.system, pytest.mark.slow,
              pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)"),
              pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                                 reason="chromium/chromium-driver not installed (make test installs them as root)")]

PASSWORDS = {"otto": "operator-password-1", "sue": "supervisor-password-1"}
ARTEFACTS = ROOT / "runs" / "test-artefacts" / "console"
FULL_LAB = {"safety", "sim", "navigator", "traffic", "arm", "station", "lab_manager", "planner", "console"}


@pytest.fixture(scope="module")
def console_lab(tmp_path_factory):
    import rclpy
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from lab.app.commander import LabCommander

    tmp = tmp_path_factory.mktemp("console")
    for name, role in (("otto", "operator"), ("sue", "supervisor")):
        made = subprocess.run([*LAB, "users", "add", name, "--role", role, "--password-stdin"], cwd=tmp,
                              input=PASSWORDS[name] + "\n", capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
    hook, received = serve_hook()
    mailbox = Mailbox(tmp)
    (tmp / "smtp_password").write_text("mail-secret\n")
    notify = tmp / "notify.yaml"
    notify.write_text(json.dumps({
        "webhook": {"url": f"http://127.0.0.1:{hook.server_port}/hook"},
        "email": {"host": "127.0.0.1", "port": mailbox.port, "user": "lab", "password_file": str(tmp / "smtp_password"),
                  "from": "lab@localhost", "to": ["chemist@localhost"], "cafile": str(mailbox.cert)}}))
    # the campaign the chemist approves batch by batch: photocatalysis with approval: true
    campaigns = tmp / "campaigns"
    campaigns.mkdir()
    doc = yaml.safe_load((ROOT / "config" / "campaigns" / "photocatalysis.yaml").read_text())
    (campaigns / "approved.yaml").write_text(yaml.safe_dump({**doc, "name": "approved", "approval": True}))
    port = free_port()
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    with lab(tmp, ["robots:=1", "speed:=2000", "record:=false", "console:=true"], keep=FULL_LAB,
             overrides={"console": {"port": port, "notify_file": str(notify), "campaigns_dir": str(campaigns)},
                        "planner": {"campaigns_dir": str(campaigns)}}, stations=PHOTOCATALYSIS) as out:
        context = rclpy.Context()
        rclpy.init(context=context)
        cmd = LabCommander("console_test", context=context)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        driver.set_page_load_timeout(30)
        try:
            probe = Probe(cmd)
            wait_for(lambda: listening(port), 90, what=f"the console on port {port}\n{out.text(40)}")
            yield {"driver": driver, "url": f"http://127.0.0.1:{port}/", "cmd": cmd, "probe": probe, "out": out,
                   "mailbox": mailbox, "hook": received, "tmp": tmp}
        finally:
            driver.quit()
            mailbox.controller.stop()
            hook.shutdown()
            cmd.destroy_node()
            context.try_shutdown()


def _until(driver, condition, timeout: float, what: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        # an element the page drew again between finding it and reading it: looked at again
        return WebDriverWait(driver, timeout, poll_frequency=0.1,
                             ignored_exceptions=[StaleElementReferenceException]).until(lambda d: condition(d))
    except Exception as exc:  # selenium's TimeoutException: say what was awaited and what the page showed
        shot = ARTEFACTS / f"failed-{what[:40].replace(' ', '_')}.png"
        driver.save_screenshot(str(shot))
        raise AssertionError(f"{what} within {timeout} s ({type(exc).__name__}); screenshot {shot}") from None


def _click(driver, by, what: str) -> None:
    """Click an element of a part the page draws again as the lab changes (a table row's link): an
    element drawn anew between finding and clicking is found again."""
    from selenium.common.exceptions import StaleElementReferenceException

    def clicked(d) -> bool:
        try:
            d.find_element(by, what).click()
            return True
        except StaleElementReferenceException:
            return False

    _until(driver, clicked, 10, f"a click on {what}")


def _attribute(driver, css: str, name: str) -> str:
    """An attribute of an element of a part the page draws again as the lab changes (read again
    when the element went stale between finding and reading)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    got: list[str] = []

    def read(d) -> bool:
        try:
            got.append(d.find_element(By.CSS_SELECTOR, css).get_attribute(name) or "")
            return True
        except StaleElementReferenceException:
            return False

    _until(driver, read, 10, f"{name} of {css}")
    return got[-1]


def _text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text


def _sign_in(driver, url: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(url)
    _until(driver, lambda d: d.find_element(By.ID, "login").is_displayed(), 20, "the sign-in form")
    driver.find_element(By.ID, "login-name").send_keys(name)
    driver.find_element(By.ID, "login-password").send_keys(PASSWORDS[name])
    driver.find_element(By.ID, "login-button").click()
    _until(driver, lambda d: d.find_element(By.ID, "main").is_displayed(), 20, f"{name} signed in")
    assert _text(driver, "#who") == f"{name} ({'operator' if name == 'otto' else 'supervisor'})"


def _notices(lab: dict, kind: str) -> tuple[list[dict], list[str]]:
    return ([n for n in lab["hook"] if n["kind"] == kind], [m for m in lab["mailbox"].messages if f"kind: {kind}" in m])


def test_a_campaign_started_in_the_browser_is_approved_runs_and_a_station_fault_calls_a_human(console_lab) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver, url, cmd = console_lab["driver"], console_lab["url"], console_lab["cmd"]
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    _sign_in(driver, url, "otto")
    _until(driver, lambda d: _text(d, "#mode") == "idle", 60, "the lab's mode on the page")
    # the floor shows the racks where the world state has them
    _until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#floor rect[data-carrier='rack_1']"), 20,
           "rack_1 on the floor")
    # read again if the page drew the rect anew meanwhile (stale): a plain find-then-read failed a
    # clean clone
    assert _attribute(driver, "#floor rect[data-carrier='rack_1']", "data-at").startswith("rack_storage/")
    driver.save_screenshot(str(ARTEFACTS / "lab.png"))
    # the gas chromatograph's next step fails: a station fault during the campaign
    set_param(cmd, "/stations/gas_chromatograph", "fail_next", 1)
    driver.find_element(By.CSS_SELECTOR, "[data-tab=campaigns]").click()
    Select(driver.find_element(By.ID, "start-name")).select_by_value("approved")
    for field, value in (("start-budget", "8"), ("start-batch", "8"), ("start-seed", "3")):
        driver.find_element(By.ID, field).clear()
        driver.find_element(By.ID, field).send_keys(value)
    driver.find_element(By.ID, "start-button").click()
    _until(driver, lambda d: "started" in _text(d, "#message"), 30, "the campaign's start")
    row = "#campaigns tbody tr[data-status]"
    _until(driver, lambda d: d.find_element(By.CSS_SELECTOR, row).get_attribute("data-status") == "running", 10,
           "the campaign listed as running")
    campaign_id = _attribute(driver, row, "data-campaign")
    # its batch waits for a supervisor: an operator sees it and has no approve button
    _until(driver, lambda d: d.find_element(By.ID, "approval").is_displayed(), 30, "the batch awaiting approval")
    assert not driver.find_element(By.ID, "approve-button").is_displayed()
    _sign_in(driver, url, "sue")
    driver.find_element(By.CSS_SELECTOR, "[data-tab=campaigns]").click()
    _click(driver, By.LINK_TEXT, campaign_id)
    _until(driver, lambda d: d.find_element(By.ID, "approve-button").is_displayed(), 20, "the approve button")
    edited = next(r for r in driver.find_elements(By.CSS_SELECTOR, "#approval-table tbody tr")
                  if "control" not in r.text)
    index = int(edited.get_attribute("data-index"))
    box = edited.find_element(By.CSS_SELECTOR, "input.dim")
    dimension = box.get_attribute("data-dim")
    doc = yaml.safe_load((console_lab["tmp"] / "campaigns" / "approved.yaml").read_text())
    low, high = doc["space"][dimension]["low"], doc["space"][dimension]["high"]
    box.clear()
    box.send_keys(str(high * 10))  # outside the space: refused with the reason, the batch still held
    driver.find_element(By.ID, "approve-button").click()
    _until(driver, lambda d: "is outside" in _text(d, "#message"), 10, "the out-of-bounds edit refused")
    assert driver.find_element(By.ID, "approval").is_displayed()
    driver.save_screenshot(str(ARTEFACTS / "approval.png"))
    value = round(low + 0.25 * (high - low), 3)
    box.clear()
    box.send_keys(str(value))
    driver.find_element(By.ID, "approve-button").click()
    _until(driver, lambda d: "approved by sue" in _text(d, "#message"), 10, "the batch approved")
    # progress on the page: steps under way come and go on the lab page, then the count measured rises
    driver.find_element(By.CSS_SELECTOR, "[data-tab=lab]").click()
    _until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#steps li"), 60, "a step under way on the lab page")
    _until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#stations tr.busy"), 120, "a busy station")
    driver.save_screenshot(str(ARTEFACTS / "lab-running.png"))
    driver.find_element(By.CSS_SELECTOR, "[data-tab=campaigns]").click()
    _until(driver, lambda d: d.find_element(By.CSS_SELECTOR, f"tr[data-campaign='{campaign_id}']")
           .get_attribute("data-status") == "done", 300, "the campaign done on the page")
    measured = _attribute(driver, f"tr[data-campaign='{campaign_id}']", "data-measured")
    assert int(measured) == 8, measured
    _click(driver, By.LINK_TEXT, campaign_id)
    _until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#best-chart polyline.chart-ref"), 20,
           "the best-so-far chart with the real robot's curve")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#experiments tbody tr")) == 8
    driver.save_screenshot(str(ARTEFACTS / "campaign.png"))
    # the edit ran as the chemist's, and was measured there
    from lab.core.campaign.store import CampaignStore

    with CampaignStore.open(console_lab["tmp"] / "runs" / "campaigns.db") as store:
        record = next(r for r in store.experiments(campaign_id) if r.index == index)
    assert record.chosen_by == "sue (console)" and record.state == "done", record
    assert record.point[dimension] == pytest.approx(value) and record.values, record
    # the fault called once by each channel, with the station's message
    wait_for(lambda: all(_notices(console_lab, "station")), 30, what="the station fault's notices")
    time.sleep(2.0)  # a second notice of the same fault would have come by now
    hooks, mails = _notices(console_lab, "station")
    assert len(hooks) == 1 and len(mails) == 1, (hooks, mails)
    assert "gas_chromatograph fault" in hooks[0]["text"] and "text" in hooks[0], hooks
    assert console_lab["mailbox"].logins == [b"lab"] * len(console_lab["mailbox"].messages)
    # its end called once too (the console reads campaigns' ends from the store, whoever started them)
    wait_for(lambda: all(_notices(console_lab, "campaign")), 30, what="the campaign's end notices")
    hooks, mails = _notices(console_lab, "campaign")
    assert [n["key"] for n in hooks] == [f"campaign:{campaign_id}"] and len(mails) == 1, (hooks, mails)
    assert "done: 8 measured, 0 failed of 8" in hooks[0]["text"], hooks
    # the console's commands are in the audit trail, with who asked
    driver.find_element(By.CSS_SELECTOR, "[data-tab=audit]").click()
    _until(driver, lambda d: all(t in _text(d, "#audit") for t in ("run_campaign", "otto (operator)", "approve_batch",
                                                                  "sue (supervisor)")), 20, "the audit trail")
    driver.save_screenshot(str(ARTEFACTS / "audit.png"))


def test_the_estop_button_stops_the_robot_and_only_a_supervisor_releases_it(console_lab) -> None:
    from selenium.webdriver.common.by import By

    driver, url, cmd, probe = console_lab["driver"], console_lab["url"], console_lab["cmd"], console_lab["probe"]
    from lab.ros.qos import LATCHED
    from lab_interfaces.msg import SafetyState

    safety: dict = {}
    cmd.create_subscription(SafetyState, "/safety/state", lambda m: safety.update(stopped=m.stopped, by=m.by), LATCHED)
    _sign_in(driver, url, "otto")
    # at 1000x a drive across the lab is over in a few wall ms: the stop is pressed at 2x
    set_param(cmd, "/sim", "speed", 2.0)
    drive = cmd.navigate_to_station("robot1", "printer")  # across the lab
    spin_until(cmd, lambda: probe.speed > 0.05, 60, what=f"robot1 driving ({drive.result})")
    pressed = time.monotonic()
    driver.find_element(By.ID, "estop").click()
    spin_until(cmd, lambda: safety.get("stopped"), 10, what="the lab's safety state stopped")
    spin_until(cmd, lambda: probe.speed < 1e-3, 10, what="robot1 at rest")
    assert time.monotonic() - pressed < 10
    assert "otto" in safety["by"] and "console" in safety["by"], safety
    _until(driver, lambda d: d.find_element(By.ID, "banner").is_displayed() and "EMERGENCY STOP" in _text(d, "#banner"),
           10, "the e-stop banner")
    driver.save_screenshot(str(ARTEFACTS / "estop.png"))
    cmd.wait(drive, timeout=60)
    set_param(cmd, "/sim", "speed", 2000.0)
    # an operator has no release button, and the endpoint refuses them
    assert not driver.find_element(By.ID, "release").is_displayed()
    answer = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const me = await (await fetch('/api/me')).json();
        const r = await fetch('/api/release', {method: 'POST', headers: {'Content-Type': 'application/json',
                              'X-CSRF-Token': me.csrf}, body: '{"reason": "operator tries"}'});
        done([r.status, (await r.json()).detail]);""")
    assert answer[0] == 403 and "needs supervisor" in answer[1], answer
    spin_for(cmd, 1.0)
    assert safety["stopped"]
    # a supervisor releases it from the page
    _sign_in(driver, url, "sue")
    _until(driver, lambda d: d.find_element(By.ID, "release").is_displayed(), 10, "the release button")
    driver.find_element(By.ID, "release").click()
    spin_until(cmd, lambda: not safety.get("stopped"), 10, what="the e-stop released")
    _until(driver, lambda d: not d.find_element(By.ID, "banner").is_displayed(), 10, "the banner gone")
    driver.find_element(By.ID, "resume").click()  # a released lab stays paused until resumed
    # the console's call waits up to 10 s for the service and 15 s for its answer (lab.app.commander)
    _until(driver, lambda d: _text(d, "#mode") in ("idle", "running"), 30, "the lab resumed")
    # the stop called once by each channel (the release calls nobody)
    wait_for(lambda: all(_notices(console_lab, "estop")), 30, what="the e-stop's notices")
    time.sleep(1.0)
    hooks, mails = _notices(console_lab, "estop")
    assert len(hooks) == 1 and len(mails) == 1 and "EMERGENCY STOP by" in hooks[0]["text"], (hooks, mails)


def test_the_page_says_when_the_lab_manager_is_silent_and_recovers_by_itself(console_lab) -> None:
    from selenium.webdriver.common.by import By

    driver, url, out = console_lab["driver"], console_lab["url"], console_lab["out"]
    _sign_in(driver, url, "otto")
    _until(driver, lambda d: not d.find_element(By.ID, "missing").is_displayed(), 20, "nothing missing")
    # frozen, not killed: bringup would have a killed one back within the 5 s the page waits
    pid = node_pid(out, "lab_manager")
    os.kill(pid, signal.SIGSTOP)
    try:
        _until(driver, lambda d: "lab manager: not heard from" in _text(d, "#missing"), 30,
               "the lab manager said missing")
        driver.save_screenshot(str(ARTEFACTS / "lab-manager-gone.png"))
    finally:
        os.kill(pid, signal.SIGCONT)
    _until(driver, lambda d: not d.find_element(By.ID, "missing").is_displayed(), 60,
           "the page back by itself once the lab manager speaks again")
    assert _text(driver, "#mode") in ("idle", "running", "paused")


def test_lab_console_serves_https_with_secure_cookies_and_refuses_clear_text_elsewhere(tmp_path: Path) -> None:
    """`lab console` alone (no lab needed to serve): with a certificate on HTTPS, its session cookie
    Secure; on another address than the loopback without one, refused before serving."""
    import ssl
    import urllib.request

    refused = subprocess.run([*LAB, "console", "--host", "0.0.0.0", "--port", str(free_port())], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "only over HTTPS" in refused.stderr, refused.stderr[-2000:]
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=lab",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    made = subprocess.run([*LAB, "users", "add", "otto", "--role", "operator", "--password-stdin"], cwd=tmp_path,
                          input=PASSWORDS["otto"] + "\n", capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    port = free_port()
    with process([*LAB, "console", "--port", str(port), "--certfile", str(cert), "--keyfile", str(key)],
                 cwd=tmp_path) as proc:
        wait_for(lambda: listening(port), 60, what="lab console on HTTPS")
        context = ssl.create_default_context(cafile=str(cert))
        page = urllib.request.urlopen(f"https://127.0.0.1:{port}/", context=context, timeout=10)
        assert page.status == 200
        login = urllib.request.Request(f"https://127.0.0.1:{port}/api/login", method="POST",
                                       data=json.dumps({"name": "otto", "password": PASSWORDS["otto"]}).encode(),
                                       headers={"Content-Type": "application/json",
                                                "Origin": f"https://127.0.0.1:{port}"})
        answer = urllib.request.urlopen(login, context=context, timeout=10)
        cookie = answer.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie, cookie
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
