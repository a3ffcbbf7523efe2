"""The graph `lab fullstack audit` builds (lab.bringup.audit) and the checks made on it: no two
nodes of one name, every node that needs parameters gets them, every subscription has a publisher
of its type with QoS it accepts, no service offered twice, each robot's frames one tree from `map`
apart from the other robots'."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab.bringup import upstream as up


@dataclass
class Endpoint:
    topic: str
    type: str
    qos: up.QoS
    source: str
    optional: bool = False


@dataclass
class GraphNode:
    name: str                                   # fully qualified
    origin: str                                 # what starts it
    params: dict[str, Any] = field(default_factory=dict)
    matched: list[str] = field(default_factory=list)   # the parameter-file keys (or 'inline') that gave them
    uses_params_file: bool = False
    needs: tuple[tuple[str, str], ...] = ()
    pubs: list[Endpoint] = field(default_factory=list)
    subs: list[Endpoint] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    tf: list[tuple[str, str, str]] = field(default_factory=list)  # (topic, parent, child)


@dataclass
class Finding:
    check: str
    text: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.text}"


# --- the checks -------------------------------------------------------------------------------------

def check(nodes: list[GraphNode], robots: list[str], lab_topics: bool = False) -> list[Finding]:
    """Findings: duplicate names, parameters missing, subscriptions unserved, services offered twice,
    frames. `lab_topics`: also report subscriptions to the lab's own topics (not modelled)."""
    findings: list[Finding] = []
    seen: dict[str, str] = {}
    for n in nodes:
        if n.name in seen:
            findings.append(Finding("names", f"two nodes named {n.name}: {seen[n.name]} and {n.origin}"))
        seen.setdefault(n.name, n.origin)
    for n in nodes:
        if n.uses_params_file and not n.matched and n.needs:
            findings.append(Finding("parameters", f"{n.name} ({n.origin}) gets no parameters: no key of its "
                                    "parameter file matches its full name, and it needs "
                                    + "; ".join(f"{k} ({why})" for k, why in n.needs)))
            continue
        for key, why in n.needs:
            value = n.params.get(key)
            if value is None or value is False or value == "":
                findings.append(Finding("parameters", f"{n.name} has no {key}: {why}"))
    publishers: dict[str, list[tuple[GraphNode, Endpoint]]] = {}
    for n in nodes:
        for e in n.pubs:
            publishers.setdefault(e.topic, []).append((n, e))
    for n in nodes:
        for e in n.subs:
            pubs = publishers.get(e.topic, [])
            if not pubs:
                if not e.optional and (lab_topics or _full_stack_topic(e.topic, robots)):
                    findings.append(Finding("topics", f"{n.name} subscribes {e.topic} ({e.type}) and nothing "
                                            f"publishes it ({e.source})"))
                continue
            typed = [(p, pe) for p, pe in pubs if pe.type == e.type]
            if not typed:
                findings.append(Finding("topics", f"{n.name} subscribes {e.topic} as {e.type}; it is published as "
                                        + ", ".join(sorted({pe.type for _, pe in pubs}))))
                continue
            if not any(pe.qos.serves(e.qos) for _, pe in typed):
                offered = "; ".join(f"{p.name}: {pe.qos}" for p, pe in typed)
                findings.append(Finding("qos", f"{n.name} subscribes {e.topic} {e.qos} ({e.source}); no publisher "
                                        f"matches it ({offered})"))
    services: dict[str, str] = {}
    for n in nodes:
        for s in n.services:
            if s in services:
                findings.append(Finding("services", f"{s} offered by both {services[s]} and {n.name}"))
            services.setdefault(s, n.name)
    findings += _check_frames(nodes, robots)
    return findings


def _full_stack_topic(topic: str, robots: list[str]) -> bool:
    return topic in ("/tf", "/tf_static", "/clock") or any(topic.startswith(f"/{r}/") for r in robots)


def _check_frames(nodes: list[GraphNode], robots: list[str]) -> list[Finding]:
    findings: list[Finding] = []
    frames_of: dict[str, set[str]] = {}
    for robot in robots:
        topics = {f"/{robot}/tf", f"/{robot}/tf_static"}
        parent_of: dict[str, set[tuple[str, str]]] = {}
        for n in nodes:
            for topic, parent, child in n.tf:
                if topic in topics:
                    parent_of.setdefault(child, set()).add((parent, n.name))
        for child, parents in sorted(parent_of.items()):
            if len({p for p, _ in parents}) > 1 or len(parents) > 1:
                findings.append(Finding("tf", f"{child} on {robot}'s tf has more than one publisher of its parent: "
                                        + ", ".join(f"{p} by {who}" for p, who in sorted(parents))))
        frames = set(parent_of) | {p for ps in parent_of.values() for p, _ in ps}
        if not frames:
            findings.append(Finding("tf", f"nothing publishes {robot}'s transforms on /{robot}/tf"))
            continue
        roots = {f for f in frames if f not in parent_of}
        if roots != {"map"}:
            findings.append(Finding("tf", f"{robot}'s frames do not form one tree from map: roots {sorted(roots)}"))
        frames_of[robot] = frames - {"map"}
    for i, a in enumerate(robots):
        for b in robots[i + 1:]:
            shared = frames_of.get(a, set()) & frames_of.get(b, set())
            if shared:
                findings.append(Finding("tf", f"{a} and {b} share frames {sorted(shared)}"))
    return findings


def report(nodes: list[GraphNode], findings: list[Finding]) -> str:
    lines = []
    for n in sorted(nodes, key=lambda n: n.name):
        lines.append(f"{n.name}  [{n.origin}]")
        if n.matched:
            lines.append(f"  parameters from: {', '.join(n.matched)} ({len(n.params)} keys)")
        elif n.uses_params_file:
            lines.append("  parameters: none matched (it runs on its defaults)")
        for e in n.pubs:
            lines.append(f"  pub {e.topic} {e.type} ({e.qos})")
        for e in n.subs:
            lines.append(f"  sub {e.topic} {e.type} ({e.qos})")
        for s in n.services:
            lines.append(f"  service {s}")
        for topic, parent, child in n.tf:
            lines.append(f"  tf {parent} -> {child} on {topic}")
    lines.append("")
    lines.append(f"{len(nodes)} nodes; {len(findings)} finding(s)")
    lines += [str(f) for f in findings]
    return "\n".join(lines)
