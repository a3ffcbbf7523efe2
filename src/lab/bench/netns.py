"""Several hosts on one machine, for the multi-host tests and `lab bench hosts`: Linux network
namespaces joined by a bridge.

Each host is a network namespace with its own loopback and one interface (a veth pair whose
other end is on a bridge in the test's namespace), with its own address on a test subnet, so
DDS discovery and traffic between hosts go over the bridge (multicast discovery, unicast
data), never over a shared loopback. Fast DDS's shared-memory transport, which would carry
data between processes of one machine whatever the network does, is switched off
(FASTDDS_BUILTIN_TRANSPORTS=UDPv4): a host cut off by `cut()` is then really cut off, as a
separate computer would be. Needs root (CAP_NET_ADMIN) and iproute2; `unavailable()` says why
not otherwise.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def unavailable() -> str:
    """'' when namespaces can be made here; else why not (the reason a test is skipped with)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, a bridge)"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip`"
    probe = f"labprobe{secrets.token_hex(2)}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "delete", probe, check=False)
    return ""


class Network:
    """Hosts on one bridge. `host_env()` is the environment for their processes."""

    def __init__(self, hosts: Sequence[str]) -> None:
        tag = secrets.token_hex(2)
        self.bridge = f"lb{tag}"
        self.subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
        self.hosts = {h: f"lab{tag}-{h}" for h in hosts}
        self.links = {h: f"v{tag}{i}" for i, h in enumerate(hosts)}
        self.addresses = {h: f"{self.subnet}.{i + 1}" for i, h in enumerate(hosts)}

    def up(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("link", "set", self.bridge, "up")
        for host, ns in self.hosts.items():
            link = self.links[host]
            _ip("netns", "add", ns)
            _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", link, "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{self.addresses[host]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            # DDS discovery is multicast: without a route for it, sends fail (no default route here)
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")

    def down(self) -> None:
        for ns in self.hosts.values():
            _ip("netns", "delete", ns, check=False)  # its end of the veth pair goes with it
        for link in self.links.values():
            _ip("link", "delete", link, check=False)
        _ip("link", "delete", self.bridge, check=False)

    def cut(self, host: str) -> None:
        """The host's link goes down: nothing reaches it, nothing leaves it."""
        _ip("link", "set", self.links[host], "down")

    def heal(self, host: str) -> None:
        _ip("link", "set", self.links[host], "up")

    def bridge_bytes(self) -> int:
        return int(Path(f"/sys/class/net/{self.bridge}/statistics/rx_bytes").read_text())

    def command(self, host: str, cmd: Sequence[str]) -> list[str]:
        """`cmd` run on `host` (ip netns exec execs it: the pid is the command's own)."""
        return ["ip", "netns", "exec", self.hosts[host], *cmd]

    @staticmethod
    def host_env() -> dict[str, str]:
        env = dict(os.environ)
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"   # the tests' default is LOCALHOST
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "UDPv4"       # no shared memory between "hosts"
        return env


@contextmanager
def network(hosts: Sequence[str]) -> Iterator[Network]:
    net = Network(hosts)
    try:
        net.up()
        yield net
    finally:
        net.down()
