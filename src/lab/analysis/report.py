"""Campaign reports: PNG plots and one HTML page holding them.

Input is plain data (what the campaign store holds), so reports are made the same way from a
running campaign, a finished one, or a benchmark. Plots: best-so-far against experiments
(with the real robot's campaign for photocatalysis), Pareto fronts for multi-objective
campaigns, station utilisation and robot time, and the mechanical tester's curves.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lab.core.campaign.objective import Objective
from lab.core.campaign.pareto import pareto_mask

# Best hydrogen evolution rate (umol/h) the real robot had reached after N experiments, from
# the Cooper group's published optimiser records of Burger et al., Nature 583, 237 (2020).
BURGER2020_BEST_SO_FAR: tuple[tuple[int, float], ...] = (
    (16, 2.74), (100, 11.35), (200, 16.05), (400, 20.37), (677, 21.05))


@dataclass(frozen=True)
class ExperimentRow:
    """One finished (or failed) experiment as the report needs it."""

    index: int
    valid: bool
    values: dict[str, float]
    formulation: dict[str, float]
    is_control: bool = False
    failure_reason: str = ""
    curves: list[dict[str, Any]] = field(default_factory=list)
    earlier: tuple[str, ...] = ()  # the earlier attempts the equipment failed: "<sample id>: <reason>"


@dataclass(frozen=True)
class Interval:
    """A resource (station or robot) busy from start to end (simulated s) doing `what`."""

    resource: str
    start: float
    end: float
    what: str = ""


def best_so_far(rows: Sequence[ExperimentRow], objective: Objective) -> list[float]:
    """Best valid value after each experiment (NaN until the first valid one)."""
    best = math.nan
    out = []
    for row in sorted(rows, key=lambda r: r.index):
        value = row.values.get(objective.name) if row.valid else None
        if value is not None and math.isfinite(value):
            if math.isnan(best) or (value > best if objective.maximize else value < best):
                best = value
        out.append(best)
    return out


def utilisation(intervals: Sequence[Interval], horizon: float) -> dict[str, float]:
    """Fraction of [0, horizon] each resource was busy (overlaps merged)."""
    if horizon <= 0:
        raise ValueError("horizon must be positive")
    by_resource: dict[str, list[tuple[float, float]]] = {}
    for iv in intervals:
        by_resource.setdefault(iv.resource, []).append((max(0.0, iv.start), min(horizon, iv.end)))
    result = {}
    for resource, spans in by_resource.items():
        spans.sort()
        busy, cur_start, cur_end = 0.0, None, None
        for start, end in spans:
            if end <= start:
                continue
            if cur_end is None or start > cur_end:
                if cur_end is not None and cur_start is not None:
                    busy += cur_end - cur_start
                cur_start, cur_end = start, end
            else:
                cur_end = max(cur_end, end)
        if cur_end is not None and cur_start is not None:
            busy += cur_end - cur_start
        result[resource] = busy / horizon
    return result


def _plot_best(rows: Sequence[ExperimentRow], objective: Objective, workflow: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    best = best_so_far(rows, objective)
    ax.plot(range(1, len(best) + 1), best, label="this campaign", color="C0", lw=2)
    xs = [r.index + 1 for r in rows if r.valid and objective.name in r.values]
    ys = [r.values[objective.name] for r in rows if r.valid and objective.name in r.values]
    ax.scatter(xs, ys, s=8, color="C0", alpha=0.35, label="measurements")
    if workflow == "photocatalysis":
        rx, ry = zip(*BURGER2020_BEST_SO_FAR, strict=True)
        ax.step(rx, ry, where="post", color="C3", lw=1.5, ls="--",
                label="real robot, Burger et al. 2020 (best so far)")
    ax.set_xlabel("experiments")
    ax.set_ylabel(f"{objective.name} ({objective.unit})" if objective.unit else objective.name)
    ax.set_title(f"best {objective.name} so far")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_pareto(rows: Sequence[ExperimentRow], objectives: Sequence[Objective], path: Path) -> None:
    a, b = objectives[0], objectives[1]
    pts = [(r.values[a.name], r.values[b.name]) for r in rows
           if r.valid and a.name in r.values and b.name in r.values]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if pts:
        signs = (1.0 if a.maximize else -1.0, 1.0 if b.maximize else -1.0)
        mask = pareto_mask([(x * signs[0], y * signs[1]) for x, y in pts])
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=14, color="0.6", label="measured")
        front = sorted(p for p, m in zip(pts, mask, strict=True) if m)
        ax.plot([p[0] for p in front], [p[1] for p in front], "o-", color="C3", label="Pareto front")
    ax.set_xlabel(f"{a.name} ({a.unit})" if a.unit else a.name)
    ax.set_ylabel(f"{b.name} ({b.unit})" if b.unit else b.name)
    ax.set_title("Pareto front")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_utilisation(intervals: Sequence[Interval], horizon: float, path: Path) -> None:
    util = utilisation(intervals, horizon)
    names = sorted(util)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, max(3.0, 0.35 * len(names) + 1.2)),
                                   gridspec_kw={"width_ratios": [3, 1]})
    for i, name in enumerate(names):
        spans = [(iv.start / 3600.0, (iv.end - iv.start) / 3600.0) for iv in intervals if iv.resource == name]
        ax1.broken_barh(spans, (i - 0.4, 0.8), color="C1" if name.startswith("robot") else "C0")
    ax1.set_yticks(range(len(names)), names, fontsize=8)
    ax1.set_xlabel("simulated time (h)")
    ax1.set_title("station and robot time")
    ax2.barh(range(len(names)), [100 * util[n] for n in names], color="C2")
    ax2.set_yticks(range(len(names)), [""] * len(names))
    ax2.set_xlabel("busy (%)")
    ax2.set_xlim(0, 100)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_curves(rows: Sequence[ExperimentRow], path: Path, limit: int = 12) -> bool:
    curves = [(r.index, c) for r in rows for c in r.curves if c.get("x")]
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for index, curve in curves[:limit]:
        ax.plot(curve["x"], curve["y"], lw=1, label=f"#{index + 1}")
    first = curves[0][1]
    ax.set_xlabel(f"{first.get('x_label', 'x')} ({first.get('x_unit', '')})")
    ax.set_ylabel(f"{first.get('y_label', 'y')} ({first.get('y_unit', '')})")
    ax.set_title("mechanical tester curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(out_dir: Path, title: str, workflow: str, objectives: Sequence[Objective],
                 rows: Sequence[ExperimentRow], intervals: Sequence[Interval] = (),
                 horizon: float | None = None, facts: dict[str, str] | None = None,
                 extra: Sequence[tuple[str, str]] = ()) -> Path:
    """Write the PNGs and index.html into out_dir (with `extra` (file, caption) pictures already
    there); return the HTML path."""
    if not objectives:
        raise ValueError("a report needs at least one objective")
    out_dir.mkdir(parents=True, exist_ok=True)
    images: list[tuple[str, str]] = []
    for obj in objectives:
        name = f"best_{obj.name}.png"
        _plot_best(rows, obj, workflow, out_dir / name)
        images.append((name, f"Best {obj.name} so far"))
    if len(objectives) >= 2:
        for i in range(len(objectives)):
            for j in range(i + 1, len(objectives)):
                name = f"pareto_{objectives[i].name}_{objectives[j].name}.png"
                _plot_pareto(rows, (objectives[i], objectives[j]), out_dir / name)
                images.append((name, f"Pareto front: {objectives[i].name} vs {objectives[j].name}"))
    if intervals:
        end = horizon or max(iv.end for iv in intervals)
        if end > 0:
            _plot_utilisation(intervals, end, out_dir / "utilisation.png")
            images.append(("utilisation.png", "Station utilisation and robot time"))
    if _plot_curves(rows, out_dir / "curves.png"):
        images.append(("curves.png", "Mechanical tester curves"))
    images += list(extra)
    failed = [r for r in rows if not r.valid]
    body = [f"<h1>{html.escape(title)}</h1>", "<table>"]
    for key, value in (facts or {}).items():
        body.append(f"<tr><th style='text-align:left'>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>")
    again = sum(len(r.earlier) for r in rows)
    body.append(f"<tr><th style='text-align:left'>experiments</th><td>{len(rows)} ({len(failed)} failed"
                + (f", {again} made again after equipment failures or emergency stops" if again else "")
                + ")</td></tr>")
    body.append("</table>")
    for name, caption in images:
        body.append(f"<figure><img src='{name}' alt='{html.escape(caption)}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if failed:
        body.append("<h2>Failed experiments</h2><ul>")
        body += [f"<li>#{r.index + 1}: {html.escape(r.failure_reason)}</li>" for r in failed[:50]]
        body.append("</ul>")
    remade = [r for r in rows if r.earlier]
    if remade:
        body.append("<h2>Experiments made again</h2><ul>")
        body += [f"<li>#{r.index + 1} ({'measured' if r.valid else 'failed'} on attempt {len(r.earlier) + 1}): "
                 + html.escape("; ".join(r.earlier)) + "</li>" for r in remade[:50]]
        body.append("</ul>")
    if workflow == "photocatalysis":
        body.append("<p>Dashed line: the real robot's best-so-far (Burger et al., Nature 583, 237 (2020)). "
                    "The simulated stations answer from a model fitted to that campaign's data: a model of the "
                    "real lab, not the lab.</p>")
    page = out_dir / "index.html"
    page.write_text("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title)
                    + "</title><style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
                    "img{max-width:100%}</style></head><body>" + "\n".join(body) + "</body></html>\n")
    return page
