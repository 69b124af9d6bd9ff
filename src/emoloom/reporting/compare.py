"""The mixture comparison tables (paper Tables 2-3; docs/reporting.md): dev scores both ways, baselines, training.

Inputs per run (mixture x seed, the list taken from params.yaml: mix.mixtures keys x sft.seeds):
- metrics/eval_dev/<run>.json   {"generated": evaluate(...), "heads": evaluate(...), "baselines": baseline_report(...),
                                 "s_flip": {"s_flip", "n_pairs", ...}, ...}
- plots/sft/<run>/train_log.csv one row per optimizer step (step, loss, lr, grad_norm, ...)
- metrics/sft/<run>.json        {"steps", "selected_step", ...}

Every cell is the mean over the mixture's seeds, with the sample std (ddof = 1, as metrics.mean_std) when there is
more than one seed; ParseOK is also listed per seed. The best mean of a ranked column is marked † and the second ‡,
direction-aware, on the rounded (displayed) means. Pure numpy + csv; no plotting here (emoloom.reporting.figures).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from emoloom.core.tables import BEST, SECOND, csv_text, is_missing, json_ready, markdown_table, marks
from emoloom.reporting.runs import check_inputs, load_eval_runs, load_sft_metrics, load_train_logs, mixture_label

DIGITS = 4
# ------------------------------------------------------------------------------------------------ aggregation

def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average over the last `window` logged points (fewer at the start), NaN cells skipped.

    Causal and defined only at observed points, so the curve never extends beyond the last logged step.
    """
    if window < 1:
        raise ValueError(f"smoothing window must be >= 1, got {window}")
    x = np.asarray(values, dtype=float)
    ok = ~np.isnan(x)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, x, 0.0))])
    ccnt = np.concatenate([[0], np.cumsum(ok)])
    hi = np.arange(1, x.size + 1)
    lo = np.maximum(hi - window, 0)
    count = ccnt[hi] - ccnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (csum[hi] - csum[lo]) / np.maximum(count, 1), np.nan)


@dataclass(frozen=True)
class Column:
    key: str                         # CSV / JSON key
    header: str                      # Markdown header
    path: tuple[str, ...] = ()       # where the value sits in a run's eval_dev JSON
    higher_is_better: bool | None = True   # None: not ranked
    digits: int = DIGITS


def _get(data: Mapping, path: Sequence[str]):
    for k in path:
        if not isinstance(data, Mapping) or k not in data:
            return None
        data = data[k]
    if data is None or isinstance(data, bool):
        return None
    return float(data)


def _both(key: str, header: str, tail: tuple[str, ...]) -> list[Column]:
    return [Column(f"{key}_{mode}", f"{header} ({mode})", ("generated", mode, *tail)) for mode in ("paper", "strict")]


# Table 3, extended: the paper's way (valid outputs only) and the strict way (all N) side by side.
DEV_COLUMNS: list[Column] = [
    Column("n_dev", "N", ("generated", "n"), None, 0),
    Column("parse_ok", "ParseOK", ("generated", "parse_ok")),
    *_both("macro_f1", "Macro-F1", ("labels", "macro_f1")),
    *_both("macro_p", "Macro-P", ("labels", "macro_p")),
    *_both("macro_r", "Macro-R", ("labels", "macro_r")),
    *_both("one_minus_rmse", "1-RMSE", ("vad", "one_minus_rmse")),
    *_both("rho_mean", "rho_mean", ("vad", "rho_mean")),
    Column("n_heads", "N heads", ("heads", "n"), None, 0),
    Column("heads_macro_f1", "Heads Macro-F1", ("heads", "paper", "labels", "macro_f1")),
    Column("heads_one_minus_rmse", "Heads 1-RMSE", ("heads", "paper", "vad", "one_minus_rmse")),
    Column("heads_rho_mean", "Heads rho_mean", ("heads", "paper", "vad", "rho_mean")),
    Column("s_flip", "S_flip ↓", ("s_flip", "s_flip"), False),
]

# The reference systems on the same dev rows (always valid: paper = strict). Not ranked: each mixture has its own
# dev split, and the baselines are there to calibrate the model's numbers on that split.
BASELINE_COLUMNS: list[Column] = [
    Column("n_dev", "N", ("baselines", "n_eval"), None, 0),
    Column("tfidf_lr_macro_f1", "TF-IDF+LR Macro-F1", ("baselines", "labels", "tfidf_lr", "macro_f1"), None),
    Column("tfidf_lr_macro_p", "TF-IDF+LR Macro-P", ("baselines", "labels", "tfidf_lr", "macro_p"), None),
    Column("tfidf_lr_macro_r", "TF-IDF+LR Macro-R", ("baselines", "labels", "tfidf_lr", "macro_r"), None),
    Column("always_neutral_macro_f1", "Always-neutral Macro-F1",
           ("baselines", "labels", "always_neutral", "macro_f1"), None),
    Column("constant_mean_one_minus_rmse", "Constant-mean 1-RMSE",
           ("baselines", "vad", "constant_mean", "one_minus_rmse"), None),
    Column("lexicon_one_minus_rmse", "Lexicon 1-RMSE", ("baselines", "vad", "lexicon", "one_minus_rmse"), None),
    Column("lexicon_rho_mean", "Lexicon rho_mean", ("baselines", "vad", "lexicon", "rho_mean"), None),
    Column("n_heads", "N heads", ("baselines_heads_rows", "n_eval"), None, 0),
    Column("tfidf_lr_macro_f1_heads_rows", "TF-IDF+LR Macro-F1 (heads rows)",
           ("baselines_heads_rows", "labels", "tfidf_lr", "macro_f1"), None),
    Column("constant_mean_one_minus_rmse_heads_rows", "Constant-mean 1-RMSE (heads rows)",
           ("baselines_heads_rows", "vad", "constant_mean", "one_minus_rmse"), None),
]

# Table 2: training overview from the train logs (+ metrics/sft). Keys are filled by training_row().
TRAINING_COLUMNS: list[Column] = [
    Column("points", "Points", higher_is_better=None, digits=0),
    Column("best_loss", "Best Loss ↓", higher_is_better=False),
    Column("best_step", "Step of best", higher_is_better=None, digits=0),
    Column("raw_min_loss", "Raw min loss", higher_is_better=None),
    Column("final_loss", "Final loss", higher_is_better=None),
    Column("steps", "Steps", higher_is_better=None, digits=0),
    Column("selected_step", "Selected step", higher_is_better=None, digits=0),
]


@dataclass(frozen=True)
class Cell:
    """One table cell, read from the table's DataFrame: the per-seed values and their summary."""
    values: dict[int, float | None]
    mean: float | None
    std: float | None                     # sample std (ddof = 1); None with fewer than two values
    n: int

    def text(self, digits: int = DIGITS) -> str:
        if self.mean is None:
            return "n/a"
        s = f"{self.mean:.{digits}f}"
        if self.std is not None:
            s += f" ± {self.std:.{digits}f}"
        if self.n < len(self.values):
            s += f" ({self.n}/{len(self.values)} seeds)"
        return s


def _rounded(x: float) -> float | None:
    return None if is_missing(x) else round(float(x), DIGITS)


@dataclass
class Table:
    """A comparison table: one row per run (mixture, seed) in `values`, summarised per mixture (mean, std, n)."""
    title: str
    columns: list[Column]
    values: pd.DataFrame                   # index (mixture, seed); one float column per Column.key, NaN = no value
    notes: list[str] = field(default_factory=list)
    per_seed: tuple[str, ...] = ()         # column keys also listed per seed

    @property
    def mixtures(self) -> list[str]:
        return list(dict.fromkeys(self.values.index.get_level_values(0)))

    @property
    def seeds(self) -> list[int]:
        return list(dict.fromkeys(self.values.index.get_level_values(1)))

    def cell(self, mixture: str, key: str) -> Cell:
        column = self.values.loc[mixture, key]
        present = column.dropna()
        return Cell({int(s): json_ready(float(v)) for s, v in column.items()},
                    _rounded(present.mean()) if len(present) else None,
                    _rounded(present.std(ddof=1)) if len(present) > 1 else None, len(present))

    def means(self, key: str) -> list[float | None]:
        return [self.cell(m, key).mean for m in self.mixtures]

    def marks(self) -> dict[str, list[str]]:
        return {c.key: marks(self.means(c.key), c.higher_is_better) for c in self.columns}

    def frame(self) -> pd.DataFrame:
        """The displayed table: cell texts with their marks, per-seed columns when there are several seeds."""
        mk = self.marks()
        extra = [k for k in self.per_seed if len(self.seeds) > 1]
        rows = []
        for i, m in enumerate(self.mixtures):
            row = {"Mixture": mixture_label(m)}
            row.update({c.header: self.cell(m, c.key).text(c.digits) + mk[c.key][i] for c in self.columns})
            for k in extra:
                vals = self.cell(m, k).values
                row[f"{self._col(k).header} per seed"] = ", ".join(
                    f"s{s} {'n/a' if v is None else f'{v:.{DIGITS}f}'}" for s, v in vals.items())
            rows.append(row)
        return pd.DataFrame(rows)

    def markdown(self) -> str:
        frame = self.frame()
        body = markdown_table(frame, "l" + "r" * (frame.shape[1] - 1))
        notes = "\n" + "\n".join(self.notes) + "\n" if self.notes else ""
        return f"### {self.title}\n\n{body}{notes}"

    def _col(self, key: str) -> Column:
        return next(c for c in self.columns if c.key == key)

    def csv(self) -> str:
        """One row per mixture: <key> (mean) and <key>_std per column, per-seed values of the per_seed columns."""
        rows = []
        for m in self.mixtures:
            row = {"mixture": m, "n_seeds": len(self.seeds), "seeds": ";".join(map(str, self.seeds))}
            for c in self.columns:
                cell = self.cell(m, c.key)
                row[c.key], row[f"{c.key}_std"] = cell.mean, cell.std
            row.update({f"{k}_s{s}": self.cell(m, k).values[s] for k in self.per_seed for s in self.seeds})
            rows.append(row)
        return csv_text(pd.DataFrame(rows))

    def json(self, keys: Sequence[str] | None = None, std: bool = True) -> dict:
        """mixture -> {key: mean, key_std: std (several seeds only), key_s<seed>: value (per_seed columns)}.

        keys: the columns to include (default all); std=False leaves the stds out (the CSV has everything).
        """
        out = {}
        for m in self.mixtures:
            row = {}
            for c in self.columns:
                if keys is not None and c.key not in keys:
                    continue
                cell = self.cell(m, c.key)
                row[c.key] = cell.mean
                if std and len(self.seeds) > 1:
                    row[f"{c.key}_std"] = cell.std
            for k in self.per_seed:
                row.update({f"{k}_s{s}": v for s, v in self.cell(m, k).values.items()})
            out[m] = row
        return out


def _values(rows: Mapping[tuple[str, int], Mapping[str, float | None]], columns: list[Column]) -> pd.DataFrame:
    index = pd.MultiIndex.from_tuples(list(rows), names=["mixture", "seed"])
    return pd.DataFrame([{c.key: (math.nan if rows[r][c.key] is None else rows[r][c.key]) for c in columns}
                         for r in rows], index=index, columns=[c.key for c in columns], dtype=float)


def _eval_table(title: str, columns: list[Column], runs: Mapping[str, Mapping[int, Mapping]], seeds: list[int],
                notes: list[str], per_seed: tuple[str, ...] = ()) -> Table:
    rows = {(m, s): {c.key: _get(runs[m][s], c.path) for c in columns} for m in runs for s in seeds}
    return Table(title, columns, _values(rows, columns), notes, per_seed)


def _seed_note(seeds: Sequence[int]) -> str:
    if len(seeds) == 1:
        return f"One seed ({seeds[0]}): single values, no spread."
    return f"Mean ± sample std (ddof = 1) over seeds {', '.join(map(str, seeds))}."


def dev_table(runs: Mapping[str, Mapping[int, Mapping]], seeds: list[int]) -> Table:
    notes = [
        f"{BEST} best, {SECOND} second best per column (higher is better; ↓: lower is better), on the displayed means. "
        + _seed_note(seeds),
        "paper = valid outputs only (the paper's Table 3); strict = all N, an invalid output counting as the empty label "
        "set and the neutral VAD point (docs/metrics.md). Heads = the label/VAD heads read directly on N heads rows (the whole dev split with eval.heads_all_rows), paper way (invalid only where the input overflows the context). "
        "S_flip = Valence-Flip asymmetry, lower is better. n/a: no value (e.g. no valid output for the paper way).",
        "Each mixture is scored on its own dev split (N rows): compare with the baselines below on the same rows.",
    ]
    return _eval_table("Dev evaluation by mixture (Table 3, both ways)", DEV_COLUMNS, runs, seeds, notes,
                       per_seed=("parse_ok",))


def baseline_table(runs: Mapping[str, Mapping[int, Mapping]], seeds: list[int]) -> Table:
    notes = [_seed_note(seeds) + " Baselines are always valid (paper = strict) and are not ranked.",
             "Against weak (lexicon-made) gold VAD the lexicon baseline is the identity (1-RMSE = 1): the useful VAD "
             "bar there is constant-mean (docs/metrics.md)."]
    return _eval_table("Baselines on the same dev rows", BASELINE_COLUMNS, runs, seeds, notes)


def training_row(log: Mapping[str, np.ndarray], sft_metrics: Mapping | None, window: int) -> dict[str, float | None]:
    """Table 2 numbers of one run: Points = logged steps, Best Loss = min of the smoothed loss and its step, the raw
    minimum, the last smoothed loss, and the run's steps / selected checkpoint step from metrics/sft."""
    loss = np.asarray(log["loss"], dtype=float)
    sm = smooth(loss, window)
    ok = ~np.isnan(sm)
    best = int(np.flatnonzero(ok)[np.argmin(sm[ok])]) if ok.any() else None
    sft_metrics = sft_metrics or {}

    def num(x):
        return None if x is None or isinstance(x, bool) else float(x)

    return {
        "points": float(loss.size),
        "best_loss": None if best is None else float(sm[best]),
        "best_step": None if best is None else float(log["step"][best]),
        "raw_min_loss": float(np.nanmin(loss)) if (~np.isnan(loss)).any() else None,
        "final_loss": float(sm[ok][-1]) if ok.any() else None,
        "steps": num(sft_metrics.get("steps")),
        "selected_step": num(sft_metrics.get("selected_step")),
    }


def training_table(logs: Mapping[str, Mapping[int, Mapping[str, np.ndarray]]],
                   sft_metrics: Mapping[str, Mapping[int, Mapping]] | None, seeds: list[int], window: int) -> Table:
    rows = {(m, s): training_row(logs[m][s], (sft_metrics or {}).get(m, {}).get(s), window) for m in logs for s in seeds}
    notes = [f"Points = logged optimizer steps; Best Loss = minimum of the total loss smoothed by a trailing mean over "
             f"{window} logged steps (the curve of loss_curves.png), at 'Step of best'; Raw min loss = unsmoothed "
             "minimum (one noisy minibatch); Final loss = last smoothed value; Steps / Selected step from "
             f"metrics/sft (the checkpoint kept by the dev score S). {BEST} best, {SECOND} second. " + _seed_note(seeds)]
    return Table("Training overview (Table 2)", TRAINING_COLUMNS, _values(rows, TRAINING_COLUMNS), notes)


# ------------------------------------------------------------------------------------------------ the report

@dataclass
class Report:
    dev: Table
    baselines: Table
    training: Table

    def markdown(self) -> str:
        m, s = self.dev.mixtures, self.dev.seeds
        head = (f"# Mixture comparison\n\nMixtures (GoEmotions : EmpatheticDialogues) {', '.join(map(mixture_label, m))}; "
                f"seeds {', '.join(map(str, s))}. Written by `stages/compare.py` (docs/reporting.md); do not edit.\n\n")
        return head + "\n".join(t.markdown() for t in (self.dev, self.baselines, self.training))

    def json(self) -> dict:
        """The DVC metric (metrics/compare.json), kept narrow because `dvc metrics show` puts every leaf in a column:
        the dev table in full, the baselines' means and the training table's headline numbers (CSVs have the rest)."""
        return {"dev": self.dev.json(),
                "baselines": self.baselines.json([c.key for c in BASELINE_COLUMNS if not c.key.startswith("n_")],
                                                 std=False),
                "training": self.training.json(["points", "best_loss", "best_step", "selected_step"], std=False)}


def build_report(mixtures: Sequence[str], seeds: Sequence[int], window: int, root: Path = Path(".")) -> Report:
    """Load every run's inputs (one MissingRunsError naming all missing files) and build the three tables."""
    mixtures, seeds = list(mixtures), list(seeds)
    check_inputs(mixtures, seeds, root)
    runs = load_eval_runs(mixtures, seeds, root)
    logs = load_train_logs(mixtures, seeds, root)
    sft = load_sft_metrics(mixtures, seeds, root)
    return Report(dev_table(runs, seeds), baseline_table(runs, seeds), training_table(logs, sft, seeds, window))
