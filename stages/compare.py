"""DVC stage `compare`: the mixtures side by side (paper Tables 2-3, both evaluation ways, baselines, training).

Usage: python stages/compare.py
Reads, for every run of params mix.mixtures x sft.seeds: metrics/eval_dev/<run>.json, plots/sft/<run>/train_log.csv
and metrics/sft/<run>.json (a missing one stops the stage with its name). Writes metrics/compare.json (DVC metric),
metrics/compare.md (all three tables), metrics/compare.csv (dev table), metrics/compare_baselines.csv,
metrics/compare_training.csv and metrics/best.json (the best run by the paper's composite and its bundle: what
`emoloom predict best` loads). docs/reporting.md describes every column.
"""

from emoloom.core.config import from_section
from emoloom.core.io import write_json, write_text
from emoloom.core.params import load_params, load_section
from emoloom.core.stage import run_stage
from emoloom.reporting.best import best_run
from emoloom.reporting.compare import build_report
from emoloom.reporting.figures import Style
from emoloom.reporting.runs import load_eval_runs, runs_from_params


def main() -> None:
    params = load_params()
    mixtures, seeds = runs_from_params(params)
    style = from_section(Style, load_section("report"), "report")
    report = build_report(mixtures, seeds, style.smooth_window)
    write_json("metrics/compare.json", report.json())
    write_text("metrics/compare.md", report.markdown())
    write_text("metrics/compare.csv", report.dev.csv())
    write_text("metrics/compare_baselines.csv", report.baselines.csv())
    write_text("metrics/compare_training.csv", report.training.csv())
    best = best_run(load_eval_runs(mixtures, seeds))
    write_json("metrics/best.json", best)
    print(report.dev.markdown())
    print(f"best run: {best['run']} ({best['bundle']}) -> metrics/best.json")


if __name__ == "__main__":
    run_stage("compare", main)
