"""Campaign files (config/campaigns/*.yaml) and the search spaces they define.

A space is a set of named dimensions, each a finite grid (low..high in steps, or listed
values) as the robots dispense and print, with sum constraints (the liquids of a vial at most
5 mL; monomer fractions summing to 1) and optionally a pool of candidate points (the
crossed-barrel designs that were measured). Every point the planner proposes is on the grid
and feasible; `validate` says what is wrong with one that is not.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lab.core import yamlfile
from lab.core.campaign.objective import Objective
from lab.core.errors import ConfigError, InvalidGoal
from lab.paths import config_path, data_path

WORKFLOWS = ("photocatalysis", "crossed_barrel", "photopolymer")
Point = dict[str, float]


@dataclass(frozen=True)
class Dimension:
    name: str
    values: tuple[float, ...]   # the grid, ascending
    unit: str = ""

    @property
    def low(self) -> float:
        return self.values[0]

    @property
    def high(self) -> float:
        return self.values[-1]

    def snap(self, value: float) -> float:
        return min(self.values, key=lambda v: abs(v - value))


@dataclass(frozen=True)
class SumConstraint:
    names: tuple[str, ...]
    max: float | None = None
    equals: float | None = None

    def holds(self, point: Mapping[str, float], tol: float = 1e-6) -> bool:
        total = sum(float(point.get(n, 0.0)) for n in self.names)
        if self.max is not None and total > self.max + tol:
            return False
        return not (self.equals is not None and abs(total - self.equals) > tol)

    def describe(self) -> str:
        bound = f"<= {self.max:g}" if self.max is not None else f"= {self.equals:g}"
        return f"{' + '.join(self.names)} {bound}"


@dataclass
class Space:
    dimensions: list[Dimension]
    constraints: list[SumConstraint] = field(default_factory=list)
    pool: list[Point] | None = None

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    @property
    def units(self) -> dict[str, str]:
        return {d.name: d.unit for d in self.dimensions}

    def dim(self, name: str) -> Dimension:
        for d in self.dimensions:
            if d.name == name:
                return d
        raise KeyError(name)

    def validate(self, point: Mapping[str, Any]) -> Point:
        """The point as floats, or InvalidGoal saying what is wrong."""
        unknown = sorted(set(point) - set(self.names))
        if unknown:
            raise InvalidGoal(f"unknown dimension(s) {', '.join(unknown)}; the space has {', '.join(self.names)}")
        out = {}
        for d in self.dimensions:
            value = float(point.get(d.name, 0.0))
            if not math.isfinite(value) or value < d.low - 1e-9 or value > d.high + 1e-9:
                raise InvalidGoal(f"{d.name} = {value:g} {d.unit} is outside [{d.low:g}, {d.high:g}] {d.unit}".strip())
            out[d.name] = value
        for c in self.constraints:
            if not c.holds(out):
                raise InvalidGoal(f"constraint {c.describe()} does not hold "
                                  f"(sum {sum(out[n] for n in c.names):g})")
        return out

    def key(self, point: Mapping[str, float]) -> tuple[float, ...]:
        return tuple(round(float(point.get(n, 0.0)), 6) for n in self.names)

    def to_unit(self, points: Sequence[Mapping[str, float]]) -> np.ndarray:
        lows = np.array([d.low for d in self.dimensions])
        spans = np.array([max(d.high - d.low, 1e-12) for d in self.dimensions])
        raw = np.array([[float(p.get(n, 0.0)) for n in self.names] for p in points], dtype=float)
        return (raw.reshape(-1, len(self.names)) - lows) / spans

    def sample(self, n: int, rng: np.random.Generator) -> list[Point]:
        """n feasible points on the grid (uniform per free dimension; sparse, random-total
        mixtures within each sum constraint); drawn from the pool when there is one."""
        if self.pool is not None:
            idx = rng.choice(len(self.pool), size=min(n, len(self.pool)), replace=False)
            return [dict(self.pool[i]) for i in idx]
        out: list[Point] = []
        tries = 0
        while len(out) < n:
            tries += 1
            if tries > 100 * n + 1000:
                raise ConfigError("cannot draw feasible points from the space: are its constraints satisfiable?")
            point = {d.name: float(d.values[int(rng.integers(len(d.values)))]) for d in self.dimensions}
            for c in self.constraints:
                point.update(self._mixture(c, rng))
            if all(c.holds(point) for c in self.constraints):
                out.append(point)
        return out

    def _mixture(self, c: SumConstraint, rng: np.random.Generator) -> Point:
        dims = [self.dim(n) for n in c.names]
        step = dims[0].values[1] - dims[0].values[0] if len(dims[0].values) > 1 else 1.0
        lows = sum(d.low for d in dims)
        if c.equals is not None:
            units = round((c.equals - lows) / step)
        else:
            units = int(rng.integers(0, int(math.floor((float(c.max or 0.0) - lows) / step + 1e-9)) + 1))
        k = int(rng.integers(1, len(dims) + 1))
        chosen = rng.choice(len(dims), size=k, replace=False)
        weights = np.zeros(len(dims))
        weights[chosen] = rng.dirichlet(np.ones(k))
        counts = rng.multinomial(units, weights)
        return {d.name: round(d.low + step * int(cnt), 10) for d, cnt in zip(dims, counts, strict=True)}


@dataclass(frozen=True)
class Controls:
    per_batch: int
    point: Point


#: times an experiment is made at most when the equipment spoils it (`max_attempts` in the
#: campaign file): once more by default, so a crash or an e-stop costs no experiment while an
#: experiment that keeps failing the equipment (a formulation that clogs a dispenser) ends
DEFAULT_MAX_ATTEMPTS = 2


@dataclass
class CampaignConfig:
    name: str
    workflow: str
    specimen_kind: str
    batch_size: int
    objectives: list[Objective]
    space: Space
    controls: Controls | None = None
    log_objectives: tuple[str, ...] = ()
    reference: tuple[float, ...] = ()           # hypervolume reference point (objectives' units)
    initial_random: int = 0                     # random points before the model takes over
    max_budget: int = 0                         # the most experiments one campaign may ask for
    max_attempts: int = DEFAULT_MAX_ATTEMPTS    # times one experiment is made when the equipment fails it
    approval: bool = False                      # each batch waits for a supervisor (lab.core.campaign.approval)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


#: values a dimension's grid may hold: the planner enumerates and scores grids, and a step typed
#: a thousand times too fine should be refused with its reason, not fill the memory
MAX_GRID = 100_000
#: experiments one campaign may ask for unless its file says otherwise (`max_budget`): a budget
#: is a promise of robot time and stock, and a typo (1000000000) must not start a campaign that
#: never ends; Burger et al.'s campaign was 688 experiments
DEFAULT_MAX_BUDGET = 2000


def _dimension(name: str, body: Any, key: str) -> Dimension:
    if not isinstance(body, dict):
        raise ConfigError(f"{key}: must be a mapping (low/high/step or values)")
    unit = str(body.get("unit", ""))
    if "values" in body:
        values = body["values"]
        if not isinstance(values, list) or not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise ConfigError(f"{key}.values: must be a non-empty list of finite numbers")
        return Dimension(name, tuple(sorted(float(v) for v in values)), unit)
    try:
        low, high, step = float(body["low"]), float(body["high"]), float(body["step"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{key}: needs numbers low, high and step (or a list of values)") from None
    if not all(math.isfinite(v) for v in (low, high, step)):
        raise ConfigError(f"{key}: low, high and step must be finite numbers (got {low:g}, {high:g}, {step:g})")
    if step <= 0 or high < low:
        raise ConfigError(f"{key}: needs step > 0 and high >= low")
    count = int(math.floor((high - low) / step + 1e-9)) + 1
    if count > MAX_GRID:
        raise ConfigError(f"{key}: {count} values from low to high in this step; at most {MAX_GRID} (a coarser step)")
    return Dimension(name, tuple(round(low + i * step, 10) for i in range(count)), unit)


def parse_campaign(doc: Any, source: str) -> CampaignConfig:
    """A campaign document, validated; ConfigError names the file and key."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: must be a mapping")
    for key, kind in (("name", str), ("workflow", str), ("batch_size", int), ("objectives", list), ("space", dict)):
        if not isinstance(doc.get(key), kind):
            raise ConfigError(f"{source}: '{key}' must be a {kind.__name__}")
    if doc["workflow"] not in WORKFLOWS:
        raise ConfigError(f"{source}: workflow '{doc['workflow']}' is not one of {', '.join(WORKFLOWS)}")
    if doc["batch_size"] < 1:
        raise ConfigError(f"{source}: batch_size must be >= 1")
    dims = [_dimension(str(n), b, f"{source}: space.{n}") for n, b in doc["space"].items()]
    names = {d.name for d in dims}
    constraints = []
    for i, c in enumerate(doc.get("constraints") or []):
        key = f"{source}: constraints[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("sum"), list) or not set(c["sum"]) <= names:
            raise ConfigError(f"{key}: needs 'sum', a list of dimensions of the space")
        if ("max" in c) == ("equals" in c):
            raise ConfigError(f"{key}: needs exactly one of 'max' and 'equals'")
        group = [d for d in dims if d.name in c["sum"]]
        steps = {round(d.values[1] - d.values[0], 9) for d in group if len(d.values) > 1}
        if len(steps) > 1:
            raise ConfigError(f"{key}: the dimensions of a sum must share one step")
        constraints.append(SumConstraint(tuple(str(n) for n in c["sum"]),
                                         max=float(c["max"]) if "max" in c else None,
                                         equals=float(c["equals"]) if "equals" in c else None))
    objectives = []
    for i, o in enumerate(doc["objectives"]):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise ConfigError(f"{source}: objectives[{i}] needs a name")
        objectives.append(Objective(o["name"], bool(o.get("maximize", True)), str(o.get("unit", ""))))
    if not objectives:
        raise ConfigError(f"{source}: needs at least one objective")
    space = Space(dims, constraints)
    if doc.get("pool"):
        space.pool = _pool(str(doc["pool"]), space, source)
    controls = None
    if doc.get("controls"):
        body = doc["controls"]
        try:
            controls = Controls(int(body["per_batch"]), space.validate(body["point"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: controls: needs per_batch and a valid point ({exc})") from None
        if controls.per_batch >= doc["batch_size"]:
            raise ConfigError(f"{source}: controls.per_batch must be below batch_size")
    try:
        reference = tuple(float(v) for v in doc.get("reference", [0.0] * len(objectives)))
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: reference must be a list of numbers") from None
    if len(reference) != len(objectives) or not all(math.isfinite(v) for v in reference):
        raise ConfigError(f"{source}: reference needs one finite value per objective")
    max_budget = doc.get("max_budget", DEFAULT_MAX_BUDGET)
    if isinstance(max_budget, bool) or not isinstance(max_budget, int) or max_budget < doc["batch_size"]:
        raise ConfigError(f"{source}: max_budget must be a whole number of experiments, at least batch_size")
    max_attempts = doc.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or not 1 <= max_attempts <= 10:
        raise ConfigError(f"{source}: max_attempts must be a whole number from 1 to 10, not {max_attempts!r}")
    approval = doc.get("approval", False)
    if not isinstance(approval, bool):
        raise ConfigError(f"{source}: approval must be true or false, not {approval!r}")
    logs = tuple(str(v) for v in doc.get("log_objectives", []))
    if not set(logs) <= {o.name for o in objectives}:
        raise ConfigError(f"{source}: log_objectives must name objectives")
    return CampaignConfig(name=doc["name"], workflow=doc["workflow"], specimen_kind=str(doc.get("specimen_kind", "")),
                          batch_size=int(doc["batch_size"]), objectives=objectives, space=space, controls=controls,
                          log_objectives=logs, reference=reference,
                          initial_random=int(doc.get("initial_random") or doc["batch_size"]),
                          max_budget=max_budget, max_attempts=max_attempts, approval=approval, source=doc)


def _pool(name: str, space: Space, source: str) -> list[Point]:
    path = data_path(name)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        points = [space.validate({n: float(r[n]) for n in space.names}) for r in rows]
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{source}: pool {path}: {exc}") from None
    return points


def campaign_path(name: str, directory: Path | None = None) -> Path:
    """<campaigns folder>/<name>.yaml; InvalidGoal when absent, or when `name` is a path: a goal
    names a campaign in the planner's folder and cannot point it at any YAML file on its host
    (issue 33)."""
    if not name:
        raise InvalidGoal("the goal names no campaign")
    folder = directory or config_path("campaigns")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) or ".." in name:
        raise InvalidGoal(f"a campaign is named by its file in the planner's campaigns folder ({folder}), without "
                          f".yaml: {name!r} is not such a name (to run another file, put it in that folder)")
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise InvalidGoal(f"unknown campaign '{name}' (known: {', '.join(known)})")
    return path


def load_campaign(path: Path) -> CampaignConfig:
    try:
        doc = yamlfile.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_campaign(doc, str(path))
