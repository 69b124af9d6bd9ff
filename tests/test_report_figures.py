"""compare tables (emoloom.reporting.compare), figures (emoloom.reporting.figures), the two stages and the offline DVC plots template."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from emoloom.core.errors import ParamError
from emoloom.core.tables import BEST, SECOND
from emoloom.reporting import compare as report
from emoloom.reporting import figures, runs
from emoloom.reporting.runs import MissingRunsError

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "plots" / "templates" / "offline.html"
MIXTURES = ["20_80", "50_50", "80_20"]
SEEDS = [11, 22, 33]

# Hand-made per-seed values (seeds 11, 22, 33) of the generated outputs; means and sample stds worked out by hand below.
F1_PAPER = {"20_80": [0.30, 0.35, 0.40], "50_50": [0.33, 0.34, 0.35], "80_20": [0.20, 0.30, 0.40]}
F1_STRICT = {"20_80": [0.20, 0.25, 0.30], "50_50": [0.30, 0.30, 0.30], "80_20": [0.10, 0.20, 0.30]}
PARSE_OK = {"20_80": [0.90, 0.95, 1.00], "50_50": [1.00, 1.00, 1.00], "80_20": [0.80, 0.85, 0.90]}
RMSE_PAPER = {"20_80": [0.10, 0.10, 0.10], "50_50": [0.12, 0.14, 0.16], "80_20": [0.05, 0.06, 0.07]}
S_FLIP = {"20_80": [0.10, 0.20, 0.30], "50_50": [0.05, 0.05, 0.05], "80_20": [0.40, 0.40, None]}
TFIDF_F1 = {"20_80": 0.48, "50_50": 0.45, "80_20": 0.42}


def label_block(f1, p=None, r=None):
    return {"n": 10, "macro_f1": f1, "macro_p": f1 if p is None else p, "macro_r": f1 if r is None else r,
            "micro_f1": f1, "label_coverage": 0.5, "n_pred_outside": 0, "per_label": {}}


def vad_block(rmse, rho=0.5):
    return {"n": 10, "rmse": rmse, "one_minus_rmse": None if rmse is None else round(1 - rmse, 4), "rmse_v": rmse,
            "rmse_a": rmse, "rmse_d": rmse, "r_v": rho, "r_a": rho, "r_d": rho, "rho_mean": rho, "r_undefined": []}


def eval_block(parse_ok, f1p, f1s, rmse_p, rmse_s, n=100):
    return {"n": n, "n_valid": round(parse_ok * n), "parse_ok": parse_ok, "n_gold_vad_missing": 0, "k_star": ["joy"],
            "paper": {"labels": label_block(f1p, p=f1p + 0.1, r=f1p - 0.1), "vad": vad_block(rmse_p)},
            "strict": {"labels": label_block(f1s), "vad": vad_block(rmse_s, 0.4)},
            "never_predicted": [], "failures": {}}


def eval_json(m, i, seed):
    base = {"20_80": 0, "50_50": 1, "80_20": 2}[m]
    return {
        "run": f"{m}-s{seed}", "mixture": m, "seed": seed,
        "generated": eval_block(PARSE_OK[m][i], F1_PAPER[m][i], F1_STRICT[m][i], RMSE_PAPER[m][i], 0.2),
        "heads": eval_block(1.0, 0.4 + 0.01 * base, 0.4 + 0.01 * base, 0.15, 0.15),
        "baselines": {"n_train": 50, "n_eval": 100, "n_gold_vad_missing": 0, "k_star": ["joy"],
                      "labels": {"tfidf_lr": label_block(TFIDF_F1[m]), "always_neutral": label_block(0.01)},
                      "vad": {"constant_mean": vad_block(0.12, 0.0), "lexicon": vad_block(0.0, 1.0)}},
        "s_flip": {"s_flip": S_FLIP[m][i], "n_pairs": 5, "n_skipped": 0},
    }


def train_log(loss, lr=None, grad=None):
    """CSV text of a train log with the pipeline's columns (steps 1..n)."""
    n = len(loss)
    lr = lr if lr is not None else [1e-4] * n
    grad = grad if grad is not None else [1.0] * n
    cols = ["step", "loss", "loss_lm", "lr", "grad_norm", "source"]
    rows = [",".join(cols)] + [f"{i + 1},{loss[i]},{loss[i]},{lr[i]},{grad[i]},goemotions" for i in range(n)]
    return "\n".join(rows) + "\n"


def write_workspace(root: Path, mixtures=MIXTURES, seeds=SEEDS, n_steps=30, smooth_window=3) -> Path:
    """A project directory with params.yaml and every per-run input of compare/figures."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump({
        "mix": {"mixtures": {m: [int(m[:2]), int(m[3:])] for m in mixtures}},
        "sft": {"seeds": list(seeds)},
        "report": {"smooth_window": smooth_window, "dpi": 100, "font_size": 8}}))
    for m in mixtures:
        for i, s in enumerate(seeds):
            run = f"{m}-s{s}"
            (root / "metrics/eval_dev").mkdir(parents=True, exist_ok=True)
            (root / f"metrics/eval_dev/{run}.json").write_text(json.dumps(eval_json(m, i, s)))
            (root / "metrics/sft").mkdir(parents=True, exist_ok=True)
            (root / f"metrics/sft/{run}.json").write_text(json.dumps({"steps": n_steps, "selected_step": 20}))
            steps = np.arange(1, n_steps + 1)
            loss = 2.0 / steps + 0.1 * (i + 1) + 0.01 * MIXTURES.index(m)
            lr = 1e-4 * np.minimum(1.0, steps / 3)
            (root / f"plots/sft/{run}").mkdir(parents=True, exist_ok=True)
            (root / f"plots/sft/{run}/train_log.csv").write_text(
                train_log(np.round(loss, 6).tolist(), lr.tolist(), (1.5 + 0.1 * np.sin(steps + i)).tolist()))
    return root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return write_workspace(tmp_path_factory.mktemp("compare"))


@pytest.fixture(scope="module")
def rep(workspace) -> report.Report:
    return report.build_report(MIXTURES, SEEDS, window=3, root=workspace)


# ------------------------------------------------------------------------------------------------ tables

def test_dev_table_means_and_stds(rep):
    c = rep.dev.cell
    # 20_80 Macro-F1 paper: 0.30, 0.35, 0.40 -> mean 0.35, sample std sqrt((0.05^2 + 0 + 0.05^2) / 2) = 0.05
    assert c("20_80", "macro_f1_paper").mean == pytest.approx(0.35)
    assert c("20_80", "macro_f1_paper").std == pytest.approx(0.05)
    # 80_20: 0.2, 0.3, 0.4 -> 0.3 +- 0.1; 50_50: 0.33, 0.34, 0.35 -> 0.34 +- 0.01
    assert (c("80_20", "macro_f1_paper").mean, c("80_20", "macro_f1_paper").std) == pytest.approx((0.30, 0.10))
    assert (c("50_50", "macro_f1_paper").mean, c("50_50", "macro_f1_paper").std) == pytest.approx((0.34, 0.01))
    # the paper's P = F1 + 0.1 and R = F1 - 0.1 in the fixture
    assert c("20_80", "macro_p_paper").mean == pytest.approx(0.45)
    assert c("20_80", "macro_r_paper").mean == pytest.approx(0.25)
    # 1-RMSE paper 50_50: 0.88, 0.86, 0.84 -> 0.86 +- 0.02; strict is 0.8 everywhere, std 0
    assert (c("50_50", "one_minus_rmse_paper").mean, c("50_50", "one_minus_rmse_paper").std) == pytest.approx((0.86, 0.02))
    assert (c("50_50", "one_minus_rmse_strict").mean, c("50_50", "one_minus_rmse_strict").std) == (0.8, 0.0)
    assert c("20_80", "rho_mean_paper").mean == 0.5 and c("20_80", "rho_mean_strict").mean == 0.4
    # ParseOK 0.90, 0.95, 1.00 -> 0.95 +- 0.05, and kept per seed
    assert (c("20_80", "parse_ok").mean, c("20_80", "parse_ok").std) == pytest.approx((0.95, 0.05))
    assert c("20_80", "parse_ok").values == {11: 0.90, 22: 0.95, 33: 1.00}
    assert c("80_20", "heads_macro_f1").mean == pytest.approx(0.42)
    assert c("80_20", "heads_one_minus_rmse").mean == pytest.approx(0.85)
    # a missing S_flip (None) is left out: 0.40, 0.40 -> 0.40 over 2 of 3 seeds
    assert (c("80_20", "s_flip").mean, c("80_20", "s_flip").n) == (0.4, 2)
    assert c("80_20", "s_flip").text() == "0.4000 ± 0.0000 (2/3 seeds)"
    assert c("20_80", "n_dev").text(0) == "100 ± 0"


def test_best_and_second_marks_are_direction_aware(rep):
    mk = rep.dev.marks()
    assert mk["macro_f1_paper"] == [BEST, SECOND, ""]          # 0.35 > 0.34 > 0.30
    assert mk["parse_ok"] == [SECOND, BEST, ""]                # 0.95 < 1.00
    assert mk["one_minus_rmse_paper"] == [SECOND, "", BEST]    # 0.90, 0.86, 0.94
    assert mk["s_flip"] == [SECOND, BEST, ""]                  # lower is better: 0.20, 0.05, 0.40
    assert mk["one_minus_rmse_strict"] == ["", "", ""]         # all tied: nothing to tell apart
    assert mk["n_dev"] == ["", "", ""]                         # not ranked
    assert report.marks([0.2, 0.1, 0.3], higher_is_better=False) == [SECOND, BEST, ""]   # e.g. RMSE
    assert report.marks([0.2, 0.1, 0.3], higher_is_better=True) == [SECOND, "", BEST]
    assert report.marks([0.1, 0.1, 0.3], higher_is_better=False) == [BEST, BEST, SECOND]  # ties share a mark
    assert report.marks([None, 0.1, 0.3], higher_is_better=False) == ["", BEST, SECOND]
    assert report.marks([0.5], higher_is_better=True) == [""]


def test_markdown_csv_json(rep):
    md = rep.markdown()
    # N, ParseOK (0.95 < 1.00: second), Macro-F1 paper (best), Macro-F1 strict (0.25 < 0.30: second)
    assert "| 20:80 | 100 ± 0 | 0.9500 ± 0.0500‡ | 0.3500 ± 0.0500† | 0.2500 ± 0.0500‡ |" in md
    assert "ParseOK per seed" in md and "s11 0.9000, s22 0.9500, s33 1.0000" in md
    assert "Baselines on the same dev rows" in md and "Training overview (Table 2)" in md
    rows = list(csv.DictReader(io.StringIO(rep.dev.csv())))
    assert [r["mixture"] for r in rows] == MIXTURES
    assert float(rows[2]["macro_f1_paper"]) == 0.3 and float(rows[2]["macro_f1_paper_std"]) == 0.1
    assert rows[0]["parse_ok_s22"] == "0.95" and rows[0]["seeds"] == "11;22;33"
    js = rep.json()
    assert js["dev"]["50_50"]["macro_f1_paper"] == 0.34 and js["dev"]["50_50"]["macro_f1_paper_std"] == 0.01
    assert js["dev"]["80_20"]["parse_ok_s33"] == 0.9
    assert js["baselines"]["80_20"]["tfidf_lr_macro_f1"] == 0.42
    assert js["baselines"]["20_80"]["constant_mean_one_minus_rmse"] == 0.88
    assert "n_dev" not in js["baselines"]["20_80"] and "tfidf_lr_macro_f1_std" not in js["baselines"]["20_80"]
    assert sorted(js["training"]["20_80"]) == ["best_loss", "best_step", "points", "selected_step"]
    json.dumps(js, allow_nan=False)   # valid JSON for DVC: no NaN


def test_training_table(rep):
    # loss_s(step) = 2/step + 0.1 (seed index + 1) + 0.01 (mixture index), steps 1..30, trailing mean over 3 steps:
    # the smoothed minimum is at the last step, mean of steps 28..30 of 2/step, plus the offsets
    tail = np.mean([2 / 28, 2 / 29, 2 / 30])
    cell = rep.training.cell("50_50", "best_loss")
    expect = [round(tail + 0.1 * k + 0.01, 6) for k in (1, 2, 3)]       # the CSV keeps 6 significant digits
    assert cell.mean == pytest.approx(np.mean(expect), abs=1e-4)
    assert cell.std == pytest.approx(np.std(expect, ddof=1), abs=1e-4)
    assert rep.training.cell("50_50", "best_step").mean == 30
    assert rep.training.cell("50_50", "points").mean == 30
    assert rep.training.cell("50_50", "raw_min_loss").mean == pytest.approx(2 / 30 + 0.21, abs=1e-4)
    assert rep.training.cell("20_80", "selected_step").mean == 20
    assert rep.training.marks()["best_loss"] == [BEST, SECOND, ""]     # lower is better


def test_training_row_best_step_on_hand_data():
    log = {"step": np.array([10, 20, 30, 40, 50.]), "loss": np.array([4.0, 2.0, 1.0, 3.0, 5.0])}
    row = report.training_row(log, {"steps": 50}, window=2)
    # smoothed: 4, 3, 1.5, 2, 4 -> best 1.5 at step 30
    assert (row["best_loss"], row["best_step"], row["raw_min_loss"], row["final_loss"]) == (1.5, 30, 1.0, 4.0)
    assert row["points"] == 5 and row["steps"] == 50 and row["selected_step"] is None


def test_smooth_is_a_trailing_mean_without_extrapolation():
    out = report.smooth([1.0, 3.0, np.nan, 5.0, 7.0], 2)
    np.testing.assert_allclose(out, [1.0, 2.0, 3.0, 5.0, 6.0])
    assert report.smooth([2.0], 10).tolist() == [2.0]
    with pytest.raises(ValueError):
        report.smooth([1.0], 0)


def test_missing_runs_are_named(tmp_path):
    root = write_workspace(tmp_path, seeds=[11, 22])
    (root / "metrics/eval_dev/50_50-s22.json").unlink()
    (root / "plots/sft/80_20-s11/train_log.csv").unlink()
    with pytest.raises(MissingRunsError) as e:
        report.build_report(MIXTURES, [11, 22], 3, root)
    msg = str(e.value)
    assert "metrics/eval_dev/50_50-s22.json" in msg and "plots/sft/80_20-s11/train_log.csv" in msg
    assert "2 of 18" in msg and "20_80-s11" not in msg


def test_eval_file_of_the_wrong_run_is_refused(tmp_path):
    root = write_workspace(tmp_path, seeds=[11])
    data = json.loads((root / "metrics/eval_dev/20_80-s11.json").read_text())
    (root / "metrics/eval_dev/20_80-s11.json").write_text(json.dumps({**data, "seed": 22}))
    with pytest.raises(ValueError, match="seed is 22, expected 11"):
        runs.load_eval_runs(MIXTURES, [11], root)


def test_runs_from_params():
    params = {"mix": {"mixtures": {"20_80": [20, 80], "80_20": [80, 20]}}, "sft": {"seeds": [11, 22]}}
    assert runs.runs_from_params(params) == (["20_80", "80_20"], [11, 22])
    with pytest.raises(ParamError, match="sft.seeds"):
        runs.runs_from_params({"mix": {"mixtures": {"a": [1, 1]}}})
    with pytest.raises(ValueError, match="duplicates"):
        runs.runs_from_params({**params, "sft": {"seeds": [11, 11]}})


def test_single_seed_cells_have_no_spread(tmp_path):
    root = write_workspace(tmp_path, seeds=[11])
    rep = report.build_report(MIXTURES, [11], 3, root)
    cell = rep.dev.cell("20_80", "macro_f1_paper")
    assert (cell.mean, cell.std, cell.text()) == (0.30, None, "0.3000")
    assert "per seed" not in rep.dev.markdown()
    assert "macro_f1_paper_std" not in rep.json()["dev"]["20_80"]


def test_train_log_reader_checks_columns_and_steps(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("step,loss\n1,2.0\n")
    with pytest.raises(ValueError, match="lr"):
        runs.read_train_log(p)
    p.write_text("step,loss,lr,grad_norm\n1,2.0,1e-4,\n1,1.0,1e-4,1.0\n")
    with pytest.raises(ValueError, match="strictly increasing"):
        runs.read_train_log(p)
    p.write_text("step,loss,lr,grad_norm\n1,2.0,4e-05,\n2,1.0,1e-4,1.0\n")
    log = runs.read_train_log(p)
    assert np.isnan(log["grad_norm"][0]) and log["lr"][0] == 4e-05


# ------------------------------------------------------------------------------------------------ band math

def test_seed_band_median_and_iqr_on_hand_data():
    curves = {11: ([1, 2, 3], [1.0, 2.0, 3.0]), 22: ([1, 2, 3], [3.0, 4.0, 5.0]), 33: ([1, 2], [2.0, 9.0]),
              44: ([1, 2], [4.0, 0.0])}
    b = figures.seed_band(curves)
    assert b["step"].tolist() == [1, 2, 3] and b["n"].tolist() == [4, 4, 2]
    # step 1: 1, 2, 3, 4 -> median 2.5, q25 = 1.75, q75 = 3.25 (linear interpolation)
    # step 2: 0, 2, 4, 9 -> median 3.0, q25 1.5, q75 5.25; step 3: 3, 5 (two seeds) -> 4.0, 3.5, 4.5
    np.testing.assert_allclose(b["median"], [2.5, 3.0, 4.0])
    np.testing.assert_allclose(b["q25"], [1.75, 1.5, 3.5])
    np.testing.assert_allclose(b["q75"], [3.25, 5.25, 4.5])


def test_seed_band_never_extends_beyond_logged_steps():
    b = figures.seed_band({11: ([10, 20], [1.0, 2.0]), 22: ([10, 30], [3.0, np.nan])})
    assert b["step"].tolist() == [10, 20] and b["n"].tolist() == [2, 1]   # step 30 has no value: dropped
    full = figures.seed_band({11: ([1, 2, 3], [1.0, 2.0, 3.0]), 22: ([1, 2], [3.0, 4.0])}, complete=True)
    assert full["step"].tolist() == [1, 2] and full["median"].tolist() == [2.0, 3.0]   # stops at the shorter seed
    one = figures.seed_band({11: ([1, 2, 3], [5.0, 4.0, 3.0])})
    assert one["median"].tolist() == one["q25"].tolist() == one["q75"].tolist() == [5.0, 4.0, 3.0]


# ------------------------------------------------------------------------------------------------ figures

def png_info(path: Path) -> tuple[tuple[int, int], tuple[float, float], dict]:
    with Image.open(path) as im:
        return im.size, im.info.get("dpi"), dict(im.text)


@pytest.fixture(scope="module")
def rendered(rep, workspace, tmp_path_factory):
    style = figures.Style(dpi=100, font_size=8, smooth_window=3)
    logs = runs.load_train_logs(MIXTURES, SEEDS, workspace)
    a, b = tmp_path_factory.mktemp("fig_a"), tmp_path_factory.mktemp("fig_b")
    return figures.write_all(rep.dev, logs, a, style), figures.write_all(rep.dev, logs, b, style), style


NOMINAL = {"dev_scores_bars.png": (7.5, 3.6), "dev_scores_radar.png": (5.2, 4.6), "loss_curves.png": (6.4, 3.6),
           "lr_gradnorm.png": (6.4, 5.0)}


def test_figures_are_written_with_the_fixed_dpi_and_size(rendered):
    paths, _, style = rendered
    assert [p.name for p in paths] == list(figures.FIGURES)
    for p in paths:
        assert p.stat().st_size > 10_000, p
        (w, h), dpi, text = png_info(p)
        assert dpi == pytest.approx((style.dpi, style.dpi), abs=0.01)
        fw, fh = NOMINAL[p.name]
        # tight bbox: the drawn area (axes + external legend) at the fixed DPI, within a band of the nominal size
        assert 0.6 * fw * style.dpi <= w <= 1.6 * fw * style.dpi, (p.name, w)
        assert 0.6 * fh * style.dpi <= h <= 1.4 * fh * style.dpi, (p.name, h)
        assert "Software" not in text


def test_figures_are_byte_identical_for_the_same_inputs(rendered):
    a, b, _ = rendered
    for x, y in zip(a, b):
        assert x.read_bytes() == y.read_bytes(), x.name


def test_figures_cope_with_missing_values(tmp_path):
    """No valid output at all (ParseOK 0: the paper-way VAD is None) and one seed: n/a bars, a gap in the radar."""
    root = write_workspace(tmp_path, seeds=[11], n_steps=5)
    path = root / "metrics/eval_dev/80_20-s11.json"
    data = json.loads(path.read_text())
    data["generated"]["parse_ok"] = 0.0
    data["generated"]["paper"]["vad"] = vad_block(None)
    path.write_text(json.dumps(data))
    rep1 = report.build_report(MIXTURES, [11], 3, root)
    assert rep1.dev.cell("80_20", "one_minus_rmse_paper").text() == "n/a"
    logs = runs.load_train_logs(MIXTURES, [11], root)
    for p in figures.write_all(rep1.dev, logs, tmp_path / "fig", figures.Style(dpi=60)):
        assert p.stat().st_size > 5_000


def test_radar_bold_mixture_and_palette(rep):
    # sums over the 9 radar axes (F1, P, R, 1-RMSE paper; ParseOK; 1-RMSE, R, P, F1 strict):
    # 20_80: .35+.45+.25+.90+.95+.80+.25+.25+.25 = 4.45; 50_50: .34+.44+.24+.86+1+.80+.30+.30+.30 = 4.58;
    # 80_20: .30+.40+.20+.94+.85+.80+.20+.20+.20 = 4.09
    assert figures.best_radar_mixture(rep.dev) == "50_50"
    assert figures.mixture_colors(MIXTURES) == {"20_80": "#E69F00", "50_50": "#56B4E9", "80_20": "#009E73"}


def test_stages_end_to_end_and_deterministic_across_processes(tmp_path):
    """Both stage scripts in a fresh process (another hash seed) on a one-seed workspace: outputs appear, the
    figures match a second run byte for byte, and a missing run stops `compare` with the file's name."""
    root = write_workspace(tmp_path / "ws", seeds=[11])
    env = {**os.environ, "PYTHONHASHSEED": "1", "MPLBACKEND": "Agg"}
    for stage in ("compare", "figures"):
        subprocess.run([sys.executable, str(REPO / "stages" / f"{stage}.py")], cwd=root, env=env, check=True,
                       capture_output=True)
    for name in ("compare.json", "compare.md", "compare.csv", "compare_baselines.csv", "compare_training.csv",
                 "best.json"):
        assert (root / "metrics" / name).stat().st_size > 100, name
    assert json.loads((root / "metrics/best.json").read_text())["bundle"].startswith("data/sft/")
    first = {p.name: p.read_bytes() for p in (root / "plots/figures").glob("*.png")}
    assert sorted(first) == sorted(figures.FIGURES)
    subprocess.run([sys.executable, str(REPO / "stages/figures.py")], cwd=root, check=True, capture_output=True,
                   env={**env, "PYTHONHASHSEED": "2"})
    assert {p.name: p.read_bytes() for p in (root / "plots/figures").glob("*.png")} == first
    (root / "metrics/eval_dev/50_50-s11.json").unlink()
    res = subprocess.run([sys.executable, str(REPO / "stages/compare.py")], cwd=root, env=env, capture_output=True,
                         text=True)
    assert res.returncode != 0 and "metrics/eval_dev/50_50-s11.json" in res.stderr


# ------------------------------------------------------------------------------------------------ offline template

def test_offline_template_has_no_remote_scripts():
    html = TEMPLATE.read_text(encoding="utf-8")
    assert "{plot_divs}" in html
    # DVC adds its CDN <script> tags through {scripts}: the template must not contain that placeholder
    assert "{scripts}" not in html
    tags = re.findall(r"<script\b[^>]*>", html, flags=re.I)
    assert len(tags) >= 3
    assert not [t for t in tags if re.search(r"\bsrc\s*=", t, flags=re.I)], tags
    assert not re.search(r"""<(?:link|img|iframe)\b[^>]*(?:href|src)\s*=\s*["']?(?:https?:)?//""", html, flags=re.I)
    for lib in ("vega@5", "vega-lite@5", "vega-embed@6"):
        assert lib in html
    assert TEMPLATE.stat().st_size < 2_000_000
    assert (TEMPLATE.parent / "LICENSE-vega.txt").is_file()


def test_offline_template_renders_through_dvc_render(tmp_path):
    """dvc_render with our template: the plot divs land in the page and no CDN script does."""
    from dvc_render import VegaRenderer, render_html

    renderer = VegaRenderer([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}], "train_log.csv",
                            x="step", y="loss")
    out = render_html([renderer], tmp_path / "index.html", html_template=str(TEMPLATE))
    page = Path(out).read_text(encoding="utf-8")
    assert "vegaEmbed('#" in page and "cdn.jsdelivr" not in page
    assert not re.findall(r"<script\b[^>]*\bsrc\s*=", page, flags=re.I)
