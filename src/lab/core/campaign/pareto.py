"""Pareto fronts and hypervolume (every objective maximised; flip signs before calling)."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_mask(points: Sequence[tuple[float, ...]]) -> list[bool]:
    """True for the points no other point dominates (all objectives maximised)."""
    return [not any(all(q >= p for q, p in zip(other, point, strict=True)) and tuple(other) != tuple(point)
                    for other in points) for point in points]


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume dominated by `points` and bounded below by `reference` (exact, by slicing
    along the last objective; fine for the few hundred points of a campaign's front)."""
    ref = tuple(float(r) for r in reference)
    pts = [tuple(float(v) for v in p) for p in points if all(v > r for v, r in zip(p, ref, strict=True))]
    if not pts:
        return 0.0
    front = [p for p, keep in zip(pts, pareto_mask(pts), strict=True) if keep]
    front = sorted(set(front), key=lambda p: p[-1], reverse=True)
    if len(ref) == 1:
        return front[0][0] - ref[0]
    volume = 0.0
    for i, p in enumerate(front):
        below = front[i + 1][-1] if i + 1 < len(front) else ref[-1]
        if p[-1] > below:
            volume += (p[-1] - below) * hypervolume([q[:-1] for q in front[: i + 1]], ref[:-1])
    return volume
