"""A gate in front of a local WebSocket server that refuses browser pages of other origins.

A web page the operator opens can open a WebSocket to 127.0.0.1 and read whatever the server
sends: browsers do not apply the same-origin rule to WebSockets, they only send the page's origin
in the handshake's `Origin` header for the server to judge. The Foxglove SDK's server does not
judge it, so the bridge serves on a private port and this gate listens on the public one: a
handshake whose Origin is not allowed is answered 403 and closed; one with an allowed Origin, or
none (not a browser page: a desktop client, a script), is passed through byte for byte.
"""

from __future__ import annotations

import socket
import threading

#: the most a handshake's head may take before the gate gives up on it
MAX_HEAD = 16384


def origin_of(head: bytes) -> str | None:
    """The `Origin` header of an HTTP request head, None when there is none."""
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"origin":
            return value.strip().decode("latin-1")
    return None


class OriginGate:
    def __init__(self, host: str, port: int, target_port: int, allowed: list[str]) -> None:
        self.allowed = set(allowed)
        self.target_port = target_port
        self.refused: list[str] = []  # origins refused, for the log and the tests
        self._sock = socket.create_server((host, port))
        self.port = self._sock.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="origin-gate").start()

    def close(self) -> None:
        self._closed = True
        self._sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            client.settimeout(10.0)
            head = b""
            try:
                while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
                    chunk = client.recv(4096)
                    if not chunk:
                        return
                    head += chunk
            except OSError:
                return
            origin = origin_of(head)
            if origin is not None and origin not in self.allowed:
                self.refused.append(origin)
                body = (f"cross-origin connection refused: {origin} is not in the bridge's allowed_origins\n").encode()
                try:
                    client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                                   + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                except OSError:
                    pass
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5.0)
            except OSError:
                return
            with upstream:
                upstream.settimeout(None)
                upstream.sendall(head)
                other = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
                other.start()
                _pump(client, upstream)
                other.join(timeout=5.0)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass
