"""Every study of the default task, in order, as one campaign that survives interruptions.

``python -m experiments.run_studies [study ...]`` (default: ``CAMPAIGN``'s order). For each study it:

1. restores the study's committed records into ``outputs/studies/<study>``, so finished jobs are skipped;
2. runs the study's sweep files (``python train.py -m +sweep=<file>``);
3. keeps the finished jobs' records in ``experiments/records/<study>``;
4. rebuilds ``experiments/results/<study>`` from those records alone.

The records and the report are kept even when the sweep fails or is interrupted. Running the same command again
continues where the campaign stopped. A study that comes after tuning refuses to start until ``conf/arm/`` holds
the tuning report's complete Selection, and while that Selection lies at the edge of its grid: no arm runs at an
untuned setting.

``--status`` runs nothing: it prints each study's jobs done and left, failed and unfinished jobs, and a rough time
left (``experiments/campaign_status.py``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from blocksft.folders import PROJECT_ROOT
from experiments.campaign_status import format_progress, study_progress

ROOT = PROJECT_ROOT
RESULTS = ROOT / "experiments" / "results"
RECORDS = ROOT / "experiments" / "records"

#: Study -> its sweep files (multirun_sweeps/<file>.yaml), in the order they run. The later studies reuse the
#: main study's trainings (``reuse_runs``), so main comes before them.
CAMPAIGN: dict[str, tuple[str, ...]] = {
    "tuning": ("tuning", "tuning_classical_edge", "tuning_main_arms"),
    "main": ("main", "main_arms"),
    "budgets": ("budgets",),
    "eos_supervision": ("eos_supervision",),
    "scratch_vs_base": ("scratch_vs_base",),
    "block_size_consistency": ("block_size_consistency",),
}
#: The arms whose settings the tuning study selects: conf/arm/<strategy>.yaml.
TUNED_ARMS: tuple[str, ...] = ("blockwise", "classical")


def arm_setting(strategy: str, arms: Path = ROOT / "conf" / "arm") -> dict[str, float]:
    """The learning rate and weight average ``conf/arm/<strategy>.yaml`` sets (no weight average reads 0.0, as
    the report writes it)."""
    optim = OmegaConf.load(arms / f"{strategy}.yaml").optim
    return {"lr": float(optim.optimizer.lr), "ema_decay": float(optim.get("ema_decay") or 0.0)}


def untuned_arms(summary: dict, arms: Path = ROOT / "conf" / "arm") -> list[str]:
    """Why ``conf/arm/`` does not yet hold the tuning study's Selection (``summary.json: selection``), one line an
    arm; empty when every tuned arm runs at its complete, interior best setting."""
    problems = []
    selected = {arm["strategy"]: arm for arm in summary.get("selection") or []}
    for strategy in TUNED_ARMS:
        arm = selected.get(strategy)
        if arm is None or not arm["complete"] or arm["best"] is None:
            problems.append(f"{strategy}: the tuning study has not finished every setting with every seed")
            continue
        if arm.get("edges"):
            knobs = ", ".join(f"{e['knob']}={e['value']:g} ({e['side']} tried)" for e in arm["edges"])
            problems.append(f"{strategy}: the best setting lies at the edge of the grid: {knobs}; extend the grid")
            continue
        best = {k: float(arm["best"][k] or 0.0) for k in ("lr", "ema_decay")}
        current = arm_setting(strategy, arms)
        if current != best:
            problems.append(f"{strategy}: conf/arm/{strategy}.yaml sets {current}, the Selection {best}")
    return problems


def run(*command: str) -> int:
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT).returncode


def run_study(study: str, sweeps: tuple[str, ...]) -> int:
    """Restore, sweep, keep, report (``__doc__``); the sweeps' exit status (0: every job finished)."""
    if (ROOT / "experiments" / "records" / study).is_dir():
        run(sys.executable, "-m", "experiments.reporting.records", "restore", study)
    status = 0
    for sweep in sweeps:
        status = run(sys.executable, "train.py", "-m", f"+sweep={sweep}")
        if status != 0:
            break
    if (ROOT / "outputs" / "studies" / study).is_dir():
        run(sys.executable, "-m", "experiments.reporting.records", "keep", study)
        records = str(ROOT / "experiments" / "records" / study)
        run(sys.executable, "experiments/report.py", records, "--study", study, "--out", str(RESULTS / study))
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.run_studies", description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="*", help=f"default: every study, in order ({', '.join(CAMPAIGN)})")
    parser.add_argument("--status", action="store_true", help="run nothing: print each study's jobs done and left")
    args = parser.parse_args(argv)
    studies = args.studies or list(CAMPAIGN)
    if unknown := [s for s in studies if s not in CAMPAIGN]:
        parser.error(f"unknown study {', '.join(unknown)}; the campaign's studies: {', '.join(CAMPAIGN)}")
    if args.status:
        rows = [study_progress(s, CAMPAIGN[s], ROOT / "outputs" / "studies", RECORDS) for s in studies]
        print(format_progress(rows))
        return 0
    for study in studies:
        if study != "tuning":
            summary = RESULTS / "tuning" / "summary.json"
            problems = untuned_arms(json.loads(summary.read_text())) if summary.is_file() else ["no tuning report"]
            if problems:
                print(f"{study}: not started, conf/arm/ is not tuned:\n  " + "\n  ".join(problems), file=sys.stderr)
                return 2
        if (status := run_study(study, CAMPAIGN[study])) != 0:
            print(f"{study}: a sweep ended with status {status}; records and report kept", file=sys.stderr)
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
