"""The console's web application (FastAPI): pages, the live stream, and the operator's commands.

Every route but the page itself, its static files and sign-in needs a session; every
state-changing one also needs the session's CSRF token and a role (lab.console.accounts.ROLES),
checked by the `role(...)` dependency; every command is recorded in the campaign store's audit
trail (who, what, with what, what came of it), refused ones too. Commands go to the lab through
lab.console.lab_link (the CLI's LabCommander) and the safety node's fast path on this host,
with the same checks as the `lab` command (lab.app.requests).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from lab.console.accounts import ROLES, Account, Accounts, may
from lab.console.auth import COOKIE, CSRF_HEADER, Sessions, Throttle, load_secret
from lab.core.errors import LabError

STATIC = Path(__file__).parent / "static"
#: wall s between two pushes of the live view when nothing changed (keeps proxies from closing it)
KEEPALIVE = 10.0
#: wall s between checks for a change to push: a robot's pose changes with every /lab_status (1 s)
PUSH_CHECK = 0.05


@dataclass
class ConsoleConfig:
    users_db: Path
    secret_file: Path
    campaign_db: Path
    campaigns_dir: Path | None = None   # None: the package's config/campaigns (the planner's default)
    reports_dir: Path = Path("runs/console/reports")
    session_hours: float = 8.0
    secure_cookie: bool = False          # served over HTTPS (directly or behind a proxy): cookies Secure
    safety_socket: str = ""              # the safety node's operator_socket ('' its default)
    login_delay: float = 1.0             # s after the first failed sign-in, doubling with each next


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Login(_Strict):
    name: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class CampaignForm(_Strict):
    name: str = Field(max_length=128)
    budget: Any = 64
    batch: Any = 0
    seed: Any = 0


class Reason(_Strict):
    reason: str = Field("", max_length=500)


class Approval(_Strict):
    batch: str = Field("", max_length=200)           # the batch the page showed ('' any)
    drop: list[int] = Field(default_factory=list, max_length=1000)
    edits: dict[int, dict[str, float]] = Field(default_factory=dict)


class NewAccount(_Strict):
    name: str = Field(max_length=64)
    role: str
    password: str = Field(max_length=1024)


class RoleChange(_Strict):
    role: str


def create_app(config: ConsoleConfig, link: Any) -> FastAPI:
    """The console for the lab `link` reaches (lab.console.lab_link.LabLink, or any object with its
    methods: state, start_campaign, call, estop)."""
    accounts = Accounts(config.users_db)
    sessions = Sessions(load_secret(config.secret_file), config.session_hours)
    throttle = Throttle(config.login_delay)
    app = FastAPI(title="lab console", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def signed_in_first(request: Request, call_next: Callable) -> Response:
        # a session before anything else: a request without one learns nothing, not even whether
        # its body would have been valid (FastAPI checks bodies before route dependencies)
        path = request.url.path
        if path.startswith("/api/") and path != "/api/login" and sessions.read(request.cookies.get(COOKIE)) is None:
            return JSONResponse({"detail": "sign in first (no session, or it expired)"}, status_code=401)
        response = await call_next(request)
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    def audit(account: Account | None, command: str, params: dict[str, Any], outcome: str, ok: bool) -> None:
        from lab.core.campaign.store import record_command

        who = f"{account.name} ({account.role})" if account else "not signed in"
        record_command(config.campaign_db, who, "console", command, params, outcome, ok)

    def session_of(request: Request) -> tuple[Account, str]:
        data = sessions.read(request.cookies.get(COOKIE))
        account = accounts.get(data["u"]) if data else None
        if account is None:
            raise HTTPException(401, "sign in first (no session, or it expired)")
        return account, data["c"]  # type: ignore[index]

    def viewer(request: Request) -> Account:
        return session_of(request)[0]

    def role(needed: str) -> Callable[[Request], Account]:
        def check(request: Request) -> Account:
            account, csrf = session_of(request)
            if request.headers.get(CSRF_HEADER) != csrf:
                audit(account, request.url.path, {}, "refused: no or wrong CSRF token", False)
                raise HTTPException(403, "refused: this request lacks the page's CSRF token (reload the page)")
            if not may(account.role, needed):
                audit(account, request.url.path, {}, f"refused: needs the {needed} role", False)
                raise HTTPException(403, f"refused: {account.name} is {account.role}; this needs {needed}")
            return account
        return check

    def answer(account: Account, command: str, params: dict[str, Any], ok: bool, message: str,
               status: int = 409, **extra: Any) -> JSONResponse:
        audit(account, command, params, message, ok)
        return JSONResponse({"ok": ok, "message": message, **extra}, status_code=200 if ok else status)

    # --- pages and sign-in ---------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_SECURITY_HEADERS)

    @app.post("/api/login")
    async def login(body: Login, request: Request, response: Response) -> dict[str, Any]:
        if not _same_origin(request):
            raise HTTPException(403, "refused: sign-in from another site's page")
        client = request.client.host if request.client else "?"
        account = await asyncio.to_thread(accounts.verify, body.name, body.password)
        if account is None:
            delay = throttle.delay(f"name:{body.name}", f"addr:{client}")
            await asyncio.sleep(delay)
            hint = "" if accounts.list() else (" (this lab has no accounts yet: on the lab host, "
                                               "`lab users add NAME --role supervisor`)")
            raise HTTPException(401, f"wrong name or password{hint}")
        throttle.succeeded(f"name:{body.name}")
        cookie, csrf = sessions.issue(account.name)
        response.set_cookie(COOKIE, cookie, max_age=sessions.max_age, httponly=True, samesite="strict",
                            secure=config.secure_cookie, path="/")
        return {"name": account.name, "role": account.role, "csrf": csrf}

    @app.post("/api/logout")
    def logout(response: Response, account: Account = Depends(role("viewer"))) -> dict[str, Any]:
        response.delete_cookie(COOKIE, path="/")
        return {"ok": True}

    @app.get("/api/me")
    def me(request: Request) -> dict[str, Any]:
        account, csrf = session_of(request)
        return {"name": account.name, "role": account.role, "csrf": csrf, "roles": list(ROLES)}

    # --- what the lab is doing -----------------------------------------------------------------
    @app.get("/api/state")
    def state(account: Account = Depends(viewer)) -> dict[str, Any]:
        return link.state()

    @app.get("/api/stream")
    async def stream(request: Request, account: Account = Depends(viewer)) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            seen, last = -1, 0.0
            while not await request.is_disconnected():
                now = time.monotonic()
                if link.version != seen or now - last > KEEPALIVE:
                    snapshot = link.state()
                    seen, last = snapshot["version"], now
                    yield f"data: {json.dumps(snapshot, default=_plain)}\n\n"
                await asyncio.sleep(PUSH_CHECK)
        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/api/layout")
    def layout(account: Account = Depends(viewer)) -> dict[str, Any]:
        return _layout()

    @app.get("/api/campaign_files")
    def campaign_files(account: Account = Depends(viewer)) -> list[dict[str, Any]]:
        return _campaign_files(config.campaigns_dir)

    @app.get("/api/campaigns")
    def campaigns(account: Account = Depends(viewer)) -> list[dict[str, Any]]:
        from lab.console.views import campaign_list

        return campaign_list(config.campaign_db)

    @app.get("/api/campaigns/{campaign_id}")
    def campaign(campaign_id: str, account: Account = Depends(viewer)) -> dict[str, Any]:
        from lab.console.views import campaign_detail

        try:
            return campaign_detail(config.campaign_db, campaign_id)
        except LabError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/api/campaigns/{campaign_id}/report/{name}")
    def report(campaign_id: str, name: str, account: Account = Depends(viewer)) -> FileResponse:
        from lab.console.views import report_file

        try:
            return FileResponse(report_file(config.campaign_db, config.reports_dir, campaign_id, name))
        except LabError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/api/audit")
    def audit_trail(account: Account = Depends(viewer)) -> list[dict[str, Any]]:
        from lab.core.campaign.store import CampaignStore

        if not config.campaign_db.is_file():
            return []
        with CampaignStore.open(config.campaign_db) as store:
            rows = store.commands(300)
        return [{"time": t, "who": w, "via": v, "command": c, "params": p, "outcome": o, "ok": k}
                for t, w, v, c, p, o, k in reversed(rows)]

    # --- commands ----------------------------------------------------------------------------
    @app.post("/api/campaigns")
    def start_campaign(form: CampaignForm, account: Account = Depends(role("operator"))) -> JSONResponse:
        from lab.app.requests import campaign_request

        params = form.model_dump()
        try:
            goal = campaign_request(form.name, form.budget, form.batch, form.seed, config.campaigns_dir)
        except LabError as exc:
            return answer(account, "run_campaign", params, False, f"refused: {exc}", status=422)
        try:
            ok, message, campaign_id = link.start_campaign(goal["name"], goal["budget"], goal["batch"], goal["seed"],
                                                           requested_by=_who(account))
        except TimeoutError as exc:
            return answer(account, "run_campaign", params, False, str(exc), status=504)
        return answer(account, "run_campaign", params, ok, message, campaign_id=campaign_id)

    @app.post("/api/campaigns/{campaign_id}/resume")
    def resume_campaign(campaign_id: str, account: Account = Depends(role("operator"))) -> JSONResponse:
        from lab.core.campaign.store import CampaignStore

        params = {"campaign_id": campaign_id}
        try:
            with CampaignStore.open(config.campaign_db) as store:
                info = store.campaign_info(campaign_id)
            ok, message, _ = link.start_campaign(info.name, info.budget, info.batch_size, info.seed,
                                                 requested_by=_who(account), resume_id=campaign_id)
        except LabError as exc:
            return answer(account, "resume_campaign", params, False, f"refused: {exc}", status=404)
        except TimeoutError as exc:
            return answer(account, "resume_campaign", params, False, str(exc), status=504)
        return answer(account, "resume_campaign", params, ok, message, campaign_id=campaign_id)

    @app.post("/api/campaigns/{campaign_id}/approve")
    def approve_batch(campaign_id: str, body: Approval, account: Account = Depends(role("supervisor"))) -> JSONResponse:
        from lab.core.campaign.approval import approve
        from lab.core.campaign.store import CampaignStore

        params = {"campaign_id": campaign_id, **body.model_dump()}
        try:
            with CampaignStore.open(config.campaign_db) as store:
                message = approve(store, campaign_id, f"{account.name} (console)", body.drop, body.edits, body.batch)
        except LabError as exc:
            return answer(account, "approve_batch", params, False, f"refused: {exc}", status=422)
        return answer(account, "approve_batch", params, True, message)

    @app.post("/api/campaigns/{campaign_id}/cancel")
    def cancel_campaign(campaign_id: str, account: Account = Depends(role("operator"))) -> JSONResponse:
        return _service(account, "cancel_campaign", {"campaign_id": campaign_id}, campaign_id)

    @app.post("/api/pause")
    def pause(account: Account = Depends(role("operator"))) -> JSONResponse:
        return _service(account, "pause", {})

    @app.post("/api/resume")
    def resume(account: Account = Depends(role("operator"))) -> JSONResponse:
        return _service(account, "resume", {})

    def _service(account: Account, what: str, params: dict[str, Any], *args: Any) -> JSONResponse:
        try:
            ok, message = link.call(what, *args)
        except TimeoutError as exc:
            return answer(account, what, params, False, str(exc), status=504)
        return answer(account, what, params, ok, message)

    @app.post("/api/estop")
    def estop(body: Reason, account: Account = Depends(role("operator"))) -> JSONResponse:
        ok, message = link.estop(False, body.reason, _who(account), config.safety_socket)
        return answer(account, "estop", {"reason": body.reason}, ok, message, status=503)

    @app.post("/api/release")
    def release(body: Reason, account: Account = Depends(role("supervisor"))) -> JSONResponse:
        ok, message = link.estop(True, body.reason, _who(account), config.safety_socket)
        return answer(account, "estop_release", {"reason": body.reason}, ok, message, status=503)

    # --- accounts (supervisors) --------------------------------------------------------------
    @app.get("/api/users")
    def users(account: Account = Depends(role("supervisor"))) -> list[dict[str, Any]]:
        return [{"name": a.name, "role": a.role, "created": a.created} for a in accounts.list()]

    @app.post("/api/users")
    def add_user(body: NewAccount, account: Account = Depends(role("supervisor"))) -> JSONResponse:
        params = {"name": body.name, "role": body.role}
        try:
            accounts.add(body.name, body.role, body.password)
        except LabError as exc:
            return answer(account, "add_account", params, False, f"refused: {exc}", status=422)
        return answer(account, "add_account", params, True, f"{body.name} ({body.role}) added")

    @app.post("/api/users/{name}/role")
    def set_role(name: str, body: RoleChange, account: Account = Depends(role("supervisor"))) -> JSONResponse:
        params = {"name": name, "role": body.role}
        try:
            accounts.set_role(name, body.role)
        except LabError as exc:
            return answer(account, "set_role", params, False, f"refused: {exc}", status=422)
        return answer(account, "set_role", params, True, f"{name} is {body.role} now")

    @app.post("/api/users/{name}/remove")
    def remove_user(name: str, account: Account = Depends(role("supervisor"))) -> JSONResponse:
        if name == account.name:
            return answer(account, "remove_account", {"name": name}, False, "refused: you cannot remove yourself",
                          status=422)
        try:
            accounts.remove(name)
        except LabError as exc:
            return answer(account, "remove_account", {"name": name}, False, f"refused: {exc}", status=404)
        return answer(account, "remove_account", {"name": name}, True, f"{name} removed")

    return app


#: the page runs only its own scripts and talks only to its own origin; no framing (clickjacking)
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _who(account: Account) -> str:
    import socket

    return f"{account.name} (console on {socket.gethostname()})"


def _same_origin(request: Request) -> bool:
    """Whether a request without a session comes from the console's own page: its Origin (or, when a
    browser sends none, its Referer) names the host the request was sent to."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return False
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _layout() -> dict[str, Any]:
    from lab.core.robot.world import load_stations
    from lab.paths import config_path

    stations = load_stations(config_path("stations.yaml"))
    return {"floor": [7.3, 11.0],  # config/stations.yaml: the lab of Burger et al. 2020 is 7.3 m x 11 m
            "stations": [{"name": s.name, "kind": s.kind, "x": s.pose.x, "y": s.pose.y, "yaw": s.pose.yaw,
                          "depth": s.size[0], "width": s.size[1]} for s in stations.stations.values()]}


def _campaign_files(directory: Path | None) -> list[dict[str, Any]]:
    from lab.core.campaign.space import load_campaign
    from lab.paths import config_path

    folder = directory or config_path("campaigns")
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            c = load_campaign(path)
        except LabError as exc:
            out.append({"name": path.stem, "error": str(exc)})
            continue
        out.append({"name": path.stem, "workflow": c.workflow, "batch_size": c.batch_size,
                    "max_budget": c.max_budget, "objectives": [o.name for o in c.objectives]})
    return out
