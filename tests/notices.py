"""Local receivers of the lab's notices (lab.console.notify) for the tests: a webhook endpoint and an
SMTP server (aiosmtpd) that wants STARTTLS with a certificate made here and a login."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hook(BaseHTTPRequestHandler):
    """POSTs received, JSON-decoded, in `received` (one list per server: serve_hook())."""

    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class Mailbox:
    """aiosmtpd on loopback with STARTTLS (a certificate made here) and LOGIN required."""

    def __init__(self, folder: Path) -> None:
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.cert, key = folder / "smtp.pem", folder / "smtp.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=lab",
                        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(self.cert)],
                       check=True, capture_output=True)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        self.messages: list[str] = []
        self.logins: list[bytes] = []
        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                box.messages.append(envelope.content.decode())
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            box.logins.append(auth_data.login)
            return AuthResult(success=auth_data.login == b"lab" and auth_data.password == b"mail-secret")

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, tls_context=context,
                                     require_starttls=True, authenticator=authenticate, auth_require_tls=True)
        self.controller.start()




def serve_hook() -> tuple[ThreadingHTTPServer, list[dict]]:
    """A webhook endpoint on loopback and the list its POSTs land in."""
    received: list[dict] = []
    handler = type("OneHook", (Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received
