"""A study's declared protocol and the verdicts it allows.

A sweep file declares, before it runs, the ``protocol`` its verdicts follow (the config key ``protocol``; each
job records it in ``results.json``):

.. code-block:: yaml

    protocol:
      seeds: [0, 1, 2, 3, 4]        # verdicts wait until every declared seed of every compared arm finished
      split: test                   # verdicts are read from this split only (tuning reads validation)
      min_eval_size: 512            # and only from jobs that scored at least this many problems
      family:                       # the comparisons, Holm-adjusted together
        equal_steps:
          treatment: {strategy: blockwise}
          control: {strategy: classical, weighting: mean_masked}
        matched_decode:
          treatment: {strategy: blockwise}
          control: {strategy: classical, decode: 64}   # decode: the accuracy at that decoding block length
          seeds: [0, 1, 2, 3, 4]                        # a comparison may declare fewer seeds than the study

An arm is the runs whose report fields (``runs.normalize_run``) equal every value of its filter; ``decode``
picks the accuracy at that decoding block length instead of the run's primary one. Treatment and control are
paired by seed; each comparison gets its raw 95% t-interval, its family-wise (Bonferroni, 95% over the family)
interval, its two-sided paired t-test p-value and that p-value Holm-adjusted over the family. Verdict: Holm p
below ``ALPHA`` -> ``treatment better`` or ``control better``, else ``no difference shown``; ``pending`` while
fewer than the declared seeds have both arms; ``no verdict`` when the jobs scored another split or too few
problems. Pairs whose two runs ran on different CPU kernels (``kernel_isa``) are counted and marked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from experiments.reporting.runs import Run, completed
from experiments.reporting.stats import holm_adjust, interval, mean_std, paired_t_test

ALPHA = 0.05
TREATMENT_BETTER, CONTROL_BETTER, NO_DIFFERENCE = "treatment better", "control better", "no difference shown"
PENDING, NO_VERDICT = "pending", "no verdict"


class ProtocolError(ValueError):
    """A declared protocol that cannot be read, or runs of one study declaring different protocols."""


@dataclass(frozen=True)
class Arm:
    """Runs whose fields equal ``filters``, scored at decoding block length ``decode`` (None: the primary)."""

    filters: tuple[tuple[str, Any], ...]
    decode: int | None = None

    @classmethod
    def parse(cls, raw: Any, where: str) -> Arm:
        if not isinstance(raw, dict) or not raw:
            raise ProtocolError(f"{where}: expected a mapping of run fields to values, got {raw!r}")
        filters = {key: value for key, value in raw.items() if key != "decode"}
        decode = raw.get("decode")
        if decode is not None and (not isinstance(decode, int) or isinstance(decode, bool) or decode < 1):
            raise ProtocolError(f"{where}.decode: expected a decoding block length (int >= 1), got {decode!r}")
        return cls(tuple(sorted(filters.items())), decode)

    def matches(self, run: Run) -> bool:
        return all(_same(run.get(key), value) for key, value in self.filters)

    def metric(self, run: Run) -> float | None:
        return run.get("accuracy") if self.decode is None else run["accuracy_by_decode_block"].get(self.decode)

    def label(self) -> str:
        parts = [f"{key}={value}" for key, value in self.filters]
        return ", ".join(parts + ([f"decode {self.decode}"] if self.decode is not None else []))


def _same(observed: Any, declared: Any) -> bool:
    if isinstance(declared, int | float) and not isinstance(declared, bool) and isinstance(observed, int | float):
        return float(observed) == float(declared)
    return observed == declared


@dataclass(frozen=True)
class Comparison:
    name: str
    treatment: Arm
    control: Arm
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class Protocol:
    seeds: tuple[int, ...]
    split: str
    min_eval_size: int
    family: tuple[Comparison, ...]

    @classmethod
    def parse(cls, raw: Any) -> Protocol:
        """A protocol from its config mapping; ``ProtocolError`` naming the key for a malformed one."""
        if not isinstance(raw, dict):
            raise ProtocolError(f"protocol: expected a mapping, got {raw!r}")
        seeds = _seeds(raw.get("seeds"), "protocol.seeds")
        split = raw.get("split", "test")
        if split not in ("validation", "test"):
            raise ProtocolError(f"protocol.split: expected validation or test, got {split!r}")
        min_eval_size = raw.get("min_eval_size", 512)
        if not isinstance(min_eval_size, int) or min_eval_size < 1:
            raise ProtocolError(f"protocol.min_eval_size: expected an int >= 1, got {min_eval_size!r}")
        family = raw.get("family") or {}
        if not isinstance(family, dict):
            raise ProtocolError(f"protocol.family: expected a mapping of comparison names, got {family!r}")
        comparisons = []
        for name, spec in family.items():
            where = f"protocol.family.{name}"
            if not isinstance(spec, dict) or not {"treatment", "control"} <= set(spec):
                raise ProtocolError(f"{where}: expected treatment and control, got {spec!r}")
            own = _seeds(spec["seeds"], f"{where}.seeds") if spec.get("seeds") is not None else seeds
            comparisons.append(
                Comparison(
                    str(name),
                    Arm.parse(spec["treatment"], f"{where}.treatment"),
                    Arm.parse(spec["control"], f"{where}.control"),
                    own,
                )
            )
        return cls(seeds, split, min_eval_size, tuple(comparisons))


def _seeds(raw: Any, where: str) -> tuple[int, ...]:
    if not isinstance(raw, list | tuple) or not raw or not all(isinstance(s, int) for s in raw):
        raise ProtocolError(f"{where}: expected a non-empty list of int seeds, got {raw!r}")
    return tuple(raw)


def study_protocol(runs: Sequence[Run]) -> Protocol | None:
    """The protocol the study's runs recorded (None when none declares one); ``ProtocolError`` when runs of
    one study recorded different protocols (the sweep file changed while it ran)."""
    declared = {json.dumps(r["protocol"], sort_keys=True) for r in runs if r.get("protocol")}
    if not declared:
        return None
    if len(declared) > 1:
        raise ProtocolError(f"the study's runs declare {len(declared)} different protocols; one study, one protocol")
    return Protocol.parse(json.loads(declared.pop()))


def _cells(runs: Sequence[Run], arm: Arm) -> dict[int, Run]:
    """seed -> the arm's completed run of that seed (the first by job name when a seed ran twice)."""
    out: dict[int, Run] = {}
    for run in sorted(completed(runs), key=lambda r: r["job"]):
        if arm.matches(run) and run.get("seed") is not None and arm.metric(run) is not None:
            out.setdefault(run["seed"], run)
    return out


def _eligibility(runs: Sequence[Run], protocol: Protocol) -> str | None:
    """Why the runs cannot give verdicts (another split, too few problems), None when they can."""
    if not runs:
        return f"{NO_VERDICT}: no paired runs"
    splits = sorted({str(r.get("eval_split")) for r in runs})
    if splits != [protocol.split]:
        return f"{NO_VERDICT}: scored on {', '.join(splits)}, the protocol reads {protocol.split}"
    smallest = min((r.get("eval_size") or 0) for r in runs)
    if smallest < protocol.min_eval_size:
        return f"{NO_VERDICT}: {smallest} problems scored, the protocol needs {protocol.min_eval_size}"
    return None


def compare(runs: Sequence[Run], comparison: Comparison, family_size: int) -> dict[str, Any]:
    """One declared comparison over the declared seeds: the paired differences (treatment − control), their
    mean, raw and family-wise intervals, p-value, arm means and the pairs across CPU kernels."""
    treated, controls = _cells(runs, comparison.treatment), _cells(runs, comparison.control)
    seeds = [s for s in comparison.seeds if s in treated and s in controls]
    diffs = [comparison.treatment.metric(treated[s]) - comparison.control.metric(controls[s]) for s in seeds]
    mean, std = mean_std(diffs)
    low, high = interval(diffs)
    family_low, family_high = interval(diffs, 1 - 0.05 / max(family_size, 1))
    cross = [s for s in seeds if treated[s].get("kernel_isa") != controls[s].get("kernel_isa")]
    return {
        "name": comparison.name,
        "treatment": comparison.treatment.label(),
        "control": comparison.control.label(),
        "treatment_strategy": dict(comparison.treatment.filters).get("strategy"),
        "control_strategy": dict(comparison.control.filters).get("strategy"),
        "declared_seeds": list(comparison.seeds),
        "seeds": seeds,
        "n_pairs": len(seeds),
        "diffs": diffs,
        "mean": mean,
        "std": std,
        "treatment_mean": mean_std([comparison.treatment.metric(treated[s]) for s in seeds])[0],
        "control_mean": mean_std([comparison.control.metric(controls[s]) for s in seeds])[0],
        "ci_low": low,
        "ci_high": high,
        "family_ci_low": family_low,
        "family_ci_high": family_high,
        "p_value": paired_t_test(diffs),
        "cross_isa_seeds": cross,
        "kernel_isa": sorted({str(r.get("kernel_isa")) for s in seeds for r in (treated[s], controls[s])}),
        "eval_splits": sorted({str(r.get("eval_split")) for s in seeds for r in (treated[s], controls[s])}),
        "_runs": [r for s in seeds for r in (treated[s], controls[s])],
    }


def family_verdicts(runs: Sequence[Run], protocol: Protocol) -> list[dict[str, Any]]:
    """Every declared comparison with its Holm-adjusted p-value and its verdict. The family is adjusted as a
    whole, so no comparison gets a verdict (``pending``) until every comparison has all its declared seeds."""
    size = len(protocol.family)
    rows = [compare(runs, comparison, size) for comparison in protocol.family]
    complete = all(row["n_pairs"] >= len(row["declared_seeds"]) for row in rows)
    why_not = _eligibility([run for row in rows for run in row["_runs"]], protocol) if complete else None
    for row, adjusted in zip(rows, holm_adjust([r["p_value"] for r in rows]), strict=True):
        row["holm_p"] = adjusted
        row["verdict"] = _verdict(row, complete, why_not)
        row.pop("_runs")
    return rows


def _verdict(row: dict[str, Any], complete: bool, why_not: str | None) -> str:
    if not complete:
        seeds = f"{row['n_pairs']} of {len(row['declared_seeds'])} declared seeds"
        return (
            f"{PENDING}: {seeds}"
            if row["n_pairs"] < len(row["declared_seeds"])
            else f"{PENDING}: {seeds}, not the family's"
        )
    if why_not is not None:
        return why_not
    if row["holm_p"] is None or row["holm_p"] >= ALPHA:
        return NO_DIFFERENCE
    return TREATMENT_BETTER if row["mean"] > 0 else CONTROL_BETTER
