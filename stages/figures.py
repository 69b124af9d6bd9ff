"""DVC stage `figures`: the paper's Figures 3-6 per Appendix C (docs/reporting.md).

Usage: python stages/figures.py
Reads the same per-run files as `compare` (metrics/eval_dev/<run>.json, plots/sft/<run>/train_log.csv for params
mix.mixtures x sft.seeds) and writes plots/figures/{dev_scores_bars,dev_scores_radar,loss_curves,lr_gradnorm}.png.
"""

from pathlib import Path

from emoloom.core.config import from_section
from emoloom.core.params import load_params, load_section
from emoloom.core.stage import run_stage
from emoloom.reporting.compare import dev_table
from emoloom.reporting.figures import Style, write_all
from emoloom.reporting.runs import check_inputs, load_eval_runs, load_train_logs, runs_from_params

OUT_DIR = Path("plots/figures")


def main() -> None:
    params = load_params()
    mixtures, seeds = runs_from_params(params)
    style = from_section(Style, load_section("report"), "report")
    check_inputs(mixtures, seeds, kinds=("eval", "train_log"))
    dev = dev_table(load_eval_runs(mixtures, seeds), seeds)
    for path in write_all(dev, load_train_logs(mixtures, seeds), OUT_DIR, style):
        print(path)


if __name__ == "__main__":
    run_stage("figures", main)
