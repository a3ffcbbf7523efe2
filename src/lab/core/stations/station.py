"""What a station of a given kind does (config/station_processes.yaml), without ROS.

StationCore plans a process (its steps and their simulated durations for the samples on the
carrier), checks a goal against the station's bounds and stocks before anything happens,
dispenses with a realistic error, and answers measurements from the emulators fitted to
real data (lab.core.stations.emulators). The station node drives it step by step in simulated time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lab.core import yamlfile
from lab.core.campaign.formulation import Formulation, MeasurementData
from lab.core.errors import ConfigError, InvalidGoal
from lab.core.stations.emulators import (
    BARREL_GRID,
    HER_COMPONENTS,
    POLYMER_COMPONENTS,
    POLYMER_PROPERTIES,
    CrossedBarrelEmulator,
    HerEmulator,
    PhotopolymerEmulator,
    force_curve,
    stress_strain_curve,
)
from lab.paths import config_path

MEASURES = ("her", "mechanical")


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float       # for this carrier (per-sample steps already multiplied)


@dataclass
class Stock:
    name: str
    level: float
    capacity: float
    unit: str


@dataclass(frozen=True)
class KindSpec:
    kind: str
    default: str = ""
    processes: Mapping[str, tuple[tuple[str, float, bool], ...]] = field(default_factory=dict)  # (name, s, per sample)
    dispense_step: str = ""
    components: Mapping[str, tuple[float, float, str]] = field(default_factory=dict)
    max_total: float | None = None
    stocks: Mapping[str, tuple[float, str]] = field(default_factory=dict)
    dispense_error: tuple[float, float] = (0.0, 0.0)
    measures: str = ""
    prints: bool = False


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: must be a number, not {value!r}")
    return float(value)


def parse_kinds(doc: Any, source: str) -> dict[str, KindSpec]:
    """Validate config/station_processes.yaml; ConfigError names the file and key."""
    if not isinstance(doc, dict) or not isinstance(doc.get("kinds"), dict):
        raise ConfigError(f"{source}: needs a mapping 'kinds'")
    kinds = {}
    for kind, body in doc["kinds"].items():
        key = f"{source}: kinds.{kind}"
        if not isinstance(body, dict):
            raise ConfigError(f"{key}: must be a mapping")
        processes = {}
        for pname, steps in (body.get("processes") or {}).items():
            if not isinstance(steps, list) or not steps:
                raise ConfigError(f"{key}.processes.{pname}: must be a non-empty list of steps")
            parsed = []
            for i, step in enumerate(steps):
                skey = f"{key}.processes.{pname}[{i}]"
                if not isinstance(step, dict) or not isinstance(step.get("name"), str):
                    raise ConfigError(f"{skey}: needs a name")
                seconds = _number(step.get("seconds"), f"{skey}.seconds")
                if seconds < 0:
                    raise ConfigError(f"{skey}.seconds: must be >= 0")
                per = step.get("per", "carrier")
                if per not in ("carrier", "sample"):
                    raise ConfigError(f"{skey}.per: 'carrier' or 'sample', not {per!r}")
                parsed.append((step["name"], seconds, per == "sample"))
            processes[str(pname)] = tuple(parsed)
        default = str(body.get("default", ""))
        if processes and default not in processes:
            raise ConfigError(f"{key}.default: {default!r} is not one of its processes ({', '.join(processes)})")
        components = {}
        for comp, spec in (body.get("components") or {}).items():
            if not (isinstance(spec, list) and len(spec) == 3):
                raise ConfigError(f"{key}.components.{comp}: must be [low, high, unit]")
            low, high = _number(spec[0], f"{key}.components.{comp}"), _number(spec[1], f"{key}.components.{comp}")
            if low > high:
                raise ConfigError(f"{key}.components.{comp}: low {low} above high {high}")
            components[str(comp)] = (low, high, str(spec[2]))
        stocks = {}
        for comp, spec in (body.get("stocks") or {}).items():
            if not (isinstance(spec, list) and len(spec) == 2) or comp not in components:
                raise ConfigError(f"{key}.stocks.{comp}: must be [capacity, unit] of one of its components")
            stocks[str(comp)] = (_number(spec[0], f"{key}.stocks.{comp}"), str(spec[1]))
        error = body.get("dispense_error") or {}
        measures = str(body.get("measures", ""))
        if measures and measures not in MEASURES:
            raise ConfigError(f"{key}.measures: one of {', '.join(MEASURES)}, not {measures!r}")
        step = str(body.get("dispense_step", ""))
        if step and not any(step == s[0] for steps in processes.values() for s in steps):
            raise ConfigError(f"{key}.dispense_step: no step named {step!r}")
        kinds[str(kind)] = KindSpec(
            kind=str(kind), default=default, processes=processes, dispense_step=step, components=components,
            max_total=None if body.get("max_total") is None else _number(body["max_total"], f"{key}.max_total"),
            stocks=stocks, dispense_error=(float(error.get("relative", 0.0)), float(error.get("absolute", 0.0))),
            measures=measures, prints=bool(body.get("prints", False)))
    return kinds


def expected_seconds(spec: KindSpec, process: str, samples: int) -> float:
    """Simulated s `process` ('' = the kind's default) takes for `samples` samples: the sum of its
    steps (what StationCore.plan gives); 0 for a kind or process with no steps."""
    n = max(1, samples)
    return float(sum(seconds * (n if per_sample else 1)
                     for _, seconds, per_sample in spec.processes.get(process or spec.default, ())))


def load_kinds(path: Path | None = None) -> dict[str, KindSpec]:
    path = path or config_path("station_processes.yaml")
    try:
        doc = yamlfile.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_kinds(doc, str(path))


def untouched(record: Mapping[str, Any]) -> bool:
    """Whether the interrupted process had not yet acted on its samples (its record says
    `touched: false`; a record without the key counts as touched)."""
    return record.get("touched") is False


def interruption(record: Mapping[str, Any]) -> tuple[str, str]:
    """(goal id, what happened) for the record of a process a station was running when its process
    died (see lab.nodes.station): what the station reports after its restart. InvalidGoal when the
    record is malformed."""
    try:
        goal, rack, process, step = (str(record[k]) for k in ("goal", "rack", "process", "step"))
        progress, samples = float(record["progress"]), list(record["samples"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidGoal(f"not a record of a process in progress ({exc!r})") from None
    if len(goal) != 32 or any(c not in "0123456789abcdef" for c in goal):
        raise InvalidGoal(f"not a goal id: {goal!r}")
    if untouched(record):
        return goal, (f"{process} on {rack} was interrupted by a restart of the station before it acted on its "
                      f"{len(samples)} samples: they can run it again")
    return goal, (f"{process} on {rack} was interrupted by a restart of the station at {step} "
                  f"({progress:.0%} done): its {len(samples)} samples cannot be measured")


class StationCore:
    """One station's state and behaviour: bounds, stocks, dispensing, measuring."""

    def __init__(self, name: str, spec: KindSpec, seed: int = 0, capacity: int | None = None,
                 lab_components: set[str] | None = None) -> None:
        """`capacity`: samples the largest carrier visiting this station holds (a goal with more
        is refused); `lab_components`: every component some station of the lab dispenses (a
        dispensing station refuses a sample naming any other)."""
        self.name, self.spec = name, spec
        self.capacity, self.lab_components = capacity, lab_components
        self.rng = np.random.default_rng(seed)
        self.stocks = {c: Stock(c, cap, cap, unit) for c, (cap, unit) in spec.stocks.items()}

    # ------------------------------------------------------------------ planning
    def plan(self, process: str, formulations: Sequence[Formulation]) -> list[Step]:
        """The steps of `process` for these samples; InvalidGoal (nothing changed) when the
        process is unknown or a sample is outside the station's bounds or stocks."""
        spec = self.spec
        if not spec.processes:
            raise InvalidGoal(f"{self.name} ({spec.kind}) runs no process")
        process = process or spec.default
        if process not in spec.processes:
            raise InvalidGoal(f"{self.name} has no process {process!r}; it has {', '.join(spec.processes)}")
        if (spec.components or spec.measures or spec.prints) and not formulations:
            raise InvalidGoal(f"{self.name}: {process} needs the samples' formulations")
        if self.capacity is not None and len(formulations) > self.capacity:
            raise InvalidGoal(f"{self.name}: {len(formulations)} samples do not fit one carrier "
                              f"(it holds {self.capacity})")
        ids = [f.sample_id for f in formulations]
        if len(set(ids)) != len(ids):
            repeated = sorted({i for i in ids if ids.count(i) > 1})
            raise InvalidGoal(f"{self.name}: sample ids repeat: {', '.join(repeated)}")
        self.check_samples(formulations)
        self.check_stocks(formulations)
        n = max(1, len(formulations))
        return [Step(name, seconds * (n if per_sample else 1)) for name, seconds, per_sample in spec.processes[process]]

    def check_samples(self, formulations: Sequence[Formulation]) -> None:
        """InvalidGoal (nothing changed) when a sample is outside this station's bounds."""
        for f in formulations:
            self._check(f)

    def _check(self, f: Formulation) -> None:
        spec = self.spec
        if spec.components and self.lab_components is not None:
            unknown = sorted(c for c in f.amounts if c not in self.lab_components)
            if unknown:
                raise InvalidGoal(f"{self.name}: sample {f.sample_id}: unknown component(s) {', '.join(unknown)} "
                                  f"(the lab dispenses {', '.join(sorted(self.lab_components))})")
        for comp, (_low, _high, unit) in spec.components.items():
            given = f.units.get(comp, "")
            if given and given != unit:
                raise InvalidGoal(f"{self.name}: sample {f.sample_id}: {comp} is given in {given}; "
                                  f"this station dispenses it in {unit}")
        mine = {c: float(f.amounts.get(c, 0.0)) for c in spec.components}
        for comp, value in mine.items():
            low, high, unit = spec.components[comp]
            if not np.isfinite(value) or value < low - 1e-9 or value > high + 1e-9:
                raise InvalidGoal(f"{self.name}: sample {f.sample_id}: {comp} {value:g} {unit} is outside "
                                  f"[{low:g}, {high:g}] {unit}")
        if spec.max_total is not None and sum(mine.values()) > spec.max_total + 1e-6:
            raise InvalidGoal(f"{self.name}: sample {f.sample_id}: the components add up to "
                              f"{sum(mine.values()):.3f}, above the {spec.max_total:g} the vial holds")
        if spec.prints or spec.measures == "mechanical":
            self._check_specimen(f)

    def _check_specimen(self, f: Formulation) -> None:
        if f.specimen_kind == "crossed_barrel":
            for key, grid in BARREL_GRID.items():
                if key not in f.amounts:
                    raise InvalidGoal(f"{self.name}: specimen {f.sample_id} lacks the design parameter {key}")
                value = float(f.amounts[key])
                if not min(grid) - 1e-9 <= value <= max(grid) + 1e-9:
                    raise InvalidGoal(f"{self.name}: specimen {f.sample_id}: {key} {value:g} is outside "
                                      f"[{min(grid):g}, {max(grid):g}]")
        elif f.specimen_kind == "photopolymer":
            PhotopolymerEmulator.vector(f.amounts)
        else:
            raise InvalidGoal(f"{self.name}: cannot print or test a specimen of kind {f.specimen_kind!r} "
                              "(crossed_barrel or photopolymer)")

    def check_stocks(self, formulations: Sequence[Formulation]) -> None:
        for comp, stock in self.stocks.items():
            need = sum(float(f.amounts.get(comp, 0.0)) for f in formulations)
            if need > stock.level + 1e-9:
                raise InvalidGoal(f"{self.name}: stock {comp} is low: the rack needs {need:.3g} {stock.unit}, "
                                  f"{stock.level:.3g} {stock.unit} left; refill it (~/refill_stock)")

    # ------------------------------------------------------------------ doing
    def dispense(self, formulations: Sequence[Formulation]) -> dict[str, dict[str, float]]:
        """Dispense every sample's components; returns sample -> as dispensed; stocks drop."""
        rel, absolute = self.spec.dispense_error
        out = {}
        for f in formulations:
            done = {}
            for comp in self.spec.components:
                want = float(f.amounts.get(comp, 0.0))
                got = want if want <= 0 else max(0.0, want * (1 + self.rng.normal(0, rel))
                                                 + self.rng.normal(0, absolute))
                got = round(got, 4)  # the balance's resolution; the stock loses exactly what is recorded
                if comp in self.stocks:
                    got = min(got, self.stocks[comp].level)
                    self.stocks[comp].level -= got
                done[comp] = got
            out[f.sample_id] = done
        return out

    def refill(self, stock: str, amount: float) -> None:
        """`amount` added to the stock (or every stock), up to its capacity; 0 or less fills it up."""
        if not math.isfinite(amount):
            raise InvalidGoal(f"{self.name}: refill amount {amount!r} is not a finite number")
        if stock and stock not in self.stocks:
            raise InvalidGoal(f"{self.name} has no stock {stock!r}" +
                              (f"; it has {', '.join(self.stocks)}" if self.stocks else "; it holds no stocks"))
        for s in ([self.stocks[stock]] if stock else list(self.stocks.values())):
            s.level = s.capacity if amount <= 0 else min(s.capacity, s.level + amount)

    def stock_levels(self) -> dict[str, float]:
        return {name: float(stock.level) for name, stock in self.stocks.items()}

    def restore_stocks(self, levels: Mapping[str, Any]) -> None:
        """Stock levels as saved by a previous process (`stock_levels`), all or nothing: InvalidGoal
        (nothing changed) for a stock this station does not have, or a level that is not a number
        between 0 and the stock's capacity. A stock the saved levels lack keeps its level."""
        checked = {}
        for name, level in levels.items():
            if name not in self.stocks:
                raise InvalidGoal(f"{self.name} has no stock {name!r} (it has {', '.join(self.stocks) or 'none'})")
            cap = self.stocks[name].capacity
            if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 <= level <= cap + 1e-9:
                raise InvalidGoal(f"{self.name}: stock {name} level {level!r} is not a number in [0, {cap:g}]")
            checked[name] = min(float(level), cap)
        for name, level in checked.items():
            self.stocks[name].level = level

    def results(self, formulations: Sequence[Formulation],
                dispensed: Mapping[str, Mapping[str, float]]) -> list[MeasurementData]:
        """What the station reports per sample after its process."""
        out = []
        for f in formulations:
            m = MeasurementData(sample_id=f.sample_id, valid=True, station=self.name,
                                as_dispensed=dict(dispensed.get(f.sample_id, {})))
            if self.spec.prints:
                m.as_dispensed.update(self.printed(f))
            if self.spec.measures == "her":
                self._measure_her(f, m)
            elif self.spec.measures == "mechanical":
                self._measure_mechanical(f, m)
            out.append(m)
        return out

    def prepare(self) -> None:
        """Fit the emulators this station answers from now, not at its first sample (seconds of
        work: a served instrument does it before it listens, so that no command waits on it)."""
        if self.spec.measures == "her":
            HerEmulator.fitted()
        if self.spec.measures == "mechanical" or self.spec.prints:
            CrossedBarrelEmulator.fitted()
            PhotopolymerEmulator.fitted()

    def printed(self, f: Formulation) -> dict[str, float]:
        if f.specimen_kind == "crossed_barrel":
            return dict(zip(BARREL_GRID, CrossedBarrelEmulator.fitted().snap(f.amounts), strict=True))
        return {c: float(f.amounts.get(c, 0.0)) for c in POLYMER_COMPONENTS}

    def _measure_her(self, f: Formulation, m: MeasurementData) -> None:
        emulator = HerEmulator.fitted()
        amounts = {k: v for k, v in f.amounts.items() if k in HER_COMPONENTS}
        value, sd = emulator.measure(amounts, self.rng)
        m.values[emulator.objective], m.uncertainties[emulator.objective] = value, sd
        m.units[emulator.objective] = emulator.unit

    def _measure_mechanical(self, f: Formulation, m: MeasurementData) -> None:
        if f.specimen_kind == "crossed_barrel":
            barrel = CrossedBarrelEmulator.fitted()
            value, sd = barrel.measure(f.amounts, self.rng)
            m.values["toughness"], m.uncertainties["toughness"], m.units["toughness"] = value, sd, barrel.unit
            m.curves.append(force_curve(value))
        else:
            props = PhotopolymerEmulator.fitted().measure(f.amounts, self.rng)
            for prop, (value, sd) in props.items():
                m.values[prop], m.uncertainties[prop] = value, sd
                m.units[prop] = POLYMER_PROPERTIES[prop][0]
            m.curves.append(stress_strain_curve(props["Young_Mod"][0], props["Peak_Stress"][0],
                                                props["Peak_Strain"][0]))


def batch_seconds(steps: Sequence[tuple[str, str]], kinds: Mapping[str, KindSpec], samples: int,
                  leg_seconds: float) -> float:
    """Simulated s a batch of `samples` should take through `steps` ((station kind, process) in
    order): each step's process plus a carrier move to it, and the move home."""
    return sum(step_seconds(steps, kinds, samples)) + leg_seconds * (len(steps) + 1)


def step_seconds(steps: Sequence[tuple[str, str]], kinds: Mapping[str, KindSpec], samples: int) -> list[float]:
    """Simulated s each of `steps` ((station kind, process)) takes for `samples` samples (0 for a
    kind with no processes file entry)."""
    return [expected_seconds(kinds[kind], process, samples) if kind in kinds else 0.0 for kind, process in steps]
