"""The mixture comparison tables (paper Tables 2-3; docs/reporting.md): dev scores both ways, baselines, training.

Inputs per run (mixture x seed, the list taken from params.yaml: mix.mixtures keys x sft.seeds):
- metrics/eval_dev/<run>.json   {"generated": evaluate(...), "heads": evaluate(...), "baselines": baseline_report(...),
                                 "s_flip": {"s_flip", "n_pairs", ...}, ...}
- plots/sft/<run>/train_log.csv one row per optimizer step (step, loss, lr, grad_norm, ...)
- metrics/sft/<run>.json        {"steps", "selected_step", ...}

Every cell is the mean over the mixture's seeds, with the sample std (ddof = 1, as metrics.mean_std) when there is
more than one seed; ParseOK is also listed per seed. The best mean of a ranked column is marked † and the second ‡,
direction-aware, on the rounded (displayed) means. Pure numpy + csv; no plotting here (emoloom.figures).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from emoloom.io import read_json

DIGITS = 4
BEST, SECOND = "†", "‡"
EVAL_DIR = Path("metrics/eval_dev")
SFT_METRICS_DIR = Path("metrics/sft")
TRAIN_LOG_DIR = Path("plots/sft")
LOG_COLUMNS = ("step", "loss", "lr", "grad_norm")   # the train-log columns the report and the figures read


# ------------------------------------------------------------------------------------------------ runs and inputs

def run_name(mixture: str, seed: int) -> str:
    return f"{mixture}-s{seed}"


def mixture_label(mixture: str) -> str:
    """'20_80' -> '20:80' (GoEmotions : EmpatheticDialogues)."""
    return mixture.replace("_", ":")


def runs_from_params(params: Mapping) -> tuple[list[str], list[int]]:
    """(mixtures, seeds) from a full params dict: mix.mixtures keys (in file order) and sft.seeds."""
    try:
        mixtures = [str(m) for m in params["mix"]["mixtures"]]
        seeds = [int(s) for s in params["sft"]["seeds"]]
    except KeyError as e:
        raise KeyError(f"params: compare/figures need mix.mixtures and sft.seeds (missing {e})") from None
    if not mixtures or not seeds:
        raise ValueError(f"params: no runs (mix.mixtures={mixtures}, sft.seeds={seeds})")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"params: sft.seeds has duplicates: {seeds}")
    return mixtures, seeds


class MissingRunsError(FileNotFoundError):
    """Some per-run inputs do not exist; the message names every missing file."""


def _require(paths: Sequence[Path], what: str, producer: str) -> None:
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise MissingRunsError(f"{len(missing)} of {len(paths)} {what} missing (made by {producer}): "
                               + ", ".join(missing))


def load_eval_runs(mixtures: Sequence[str], seeds: Sequence[int], root: Path = Path(".")) -> dict[str, dict[int, dict]]:
    """mixture -> seed -> the eval_dev JSON of that run; every missing file is named in one MissingRunsError."""
    paths = {(m, s): Path(root) / EVAL_DIR / f"{run_name(m, s)}.json" for m in mixtures for s in seeds}
    _require(list(paths.values()), "dev evaluation results", "the eval_dev stage")
    out: dict[str, dict[int, dict]] = {m: {} for m in mixtures}
    for (m, s), path in paths.items():
        data = read_json(path)
        for key, want in (("mixture", m), ("seed", s)):
            if key in data and str(data[key]) != str(want):
                raise ValueError(f"{path}: {key} is {data[key]!r}, expected {want!r}")
        for key in ("generated", "heads", "baselines"):
            if not isinstance(data.get(key), Mapping):
                raise ValueError(f"{path}: no '{key}' block")
        out[m][s] = data
    return out


def load_sft_metrics(mixtures: Sequence[str], seeds: Sequence[int], root: Path = Path(".")) -> dict[str, dict[int, dict]]:
    paths = {(m, s): Path(root) / SFT_METRICS_DIR / f"{run_name(m, s)}.json" for m in mixtures for s in seeds}
    _require(list(paths.values()), "training metrics", "the sft stage")
    out: dict[str, dict[int, dict]] = {m: {} for m in mixtures}
    for (m, s), path in paths.items():
        out[m][s] = read_json(path)
    return out


def _float(cell: str) -> float:
    cell = cell.strip()
    return float(cell) if cell else math.nan


def read_train_log(path: str | Path, columns: Sequence[str] = LOG_COLUMNS) -> dict[str, np.ndarray]:
    """The numeric `columns` of a train_log.csv as float arrays (blank cells -> NaN). Steps must strictly increase."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        absent = [c for c in columns if c not in (reader.fieldnames or [])]
        if absent:
            raise ValueError(f"{path}: no column(s) {absent} (has {reader.fieldnames})")
        rows = list(reader)
    try:
        out = {c: np.array([_float(r[c]) for r in rows], dtype=float) for c in columns}
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    step = out["step"]
    if np.isnan(step).any() or (np.diff(step) <= 0).any():
        raise ValueError(f"{path}: the step column must be present on every row and strictly increasing")
    return out


def load_train_logs(mixtures: Sequence[str], seeds: Sequence[int], root: Path = Path(".")
                    ) -> dict[str, dict[int, dict[str, np.ndarray]]]:
    paths = {(m, s): Path(root) / TRAIN_LOG_DIR / run_name(m, s) / "train_log.csv" for m in mixtures for s in seeds}
    _require(list(paths.values()), "training logs", "the sft stage")
    out: dict[str, dict[int, dict]] = {m: {} for m in mixtures}
    for (m, s), path in paths.items():
        out[m][s] = read_train_log(path)
    return out


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


@dataclass
class Cell:
    """One table cell: the values of the seeds (None where a run has no value) and their summary."""
    values: dict[int, float | None]

    @property
    def present(self) -> list[float]:
        return [v for v in self.values.values() if v is not None]

    @property
    def n(self) -> int:
        return len(self.present)

    @property
    def mean(self) -> float | None:
        return round(float(np.mean(self.present)), DIGITS) if self.present else None

    @property
    def std(self) -> float | None:
        """Sample std (ddof = 1) across seeds; None with fewer than two values."""
        return round(float(np.std(self.present, ddof=1)), DIGITS) if self.n > 1 else None

    def text(self, digits: int = DIGITS) -> str:
        if self.mean is None:
            return "n/a"
        s = f"{self.mean:.{digits}f}"
        if self.std is not None:
            s += f" ± {self.std:.{digits}f}"
        if self.n < len(self.values):
            s += f" ({self.n}/{len(self.values)} seeds)"
        return s


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
    Column("heads_macro_f1", "Heads Macro-F1", ("heads", "paper", "labels", "macro_f1")),
    Column("heads_one_minus_rmse", "Heads 1-RMSE", ("heads", "paper", "vad", "one_minus_rmse")),
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


def marks(means: Sequence[float | None], higher_is_better: bool | None) -> list[str]:
    """† for the best value, ‡ for the second best (dense ranking: ties share a mark); '' elsewhere.

    No marks when the column is not ranked, or has fewer than two distinct values (nothing to tell apart).
    """
    if higher_is_better is None:
        return [""] * len(means)
    distinct = sorted({m for m in means if m is not None}, reverse=higher_is_better)
    if len(distinct) < 2:
        return [""] * len(means)
    symbol = {distinct[0]: BEST, distinct[1]: SECOND}
    return [symbol.get(m, "") if m is not None else "" for m in means]


@dataclass
class Table:
    title: str
    columns: list[Column]
    cells: dict[str, dict[str, Cell]]                 # mixture -> column key -> cell
    seeds: list[int]
    notes: list[str] = field(default_factory=list)
    per_seed: tuple[str, ...] = ()                    # column keys also listed per seed

    @property
    def mixtures(self) -> list[str]:
        return list(self.cells)

    def marks(self) -> dict[str, list[str]]:
        return {c.key: marks([self.cells[m][c.key].mean for m in self.mixtures], c.higher_is_better)
                for c in self.columns}

    def markdown(self) -> str:
        mk = self.marks()
        extra = [k for k in self.per_seed if len(self.seeds) > 1]
        headers = ["Mixture"] + [c.header for c in self.columns] + [f"{self._col(k).header} per seed" for k in extra]
        lines = [f"### {self.title}", "", "| " + " | ".join(headers) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
        for i, m in enumerate(self.mixtures):
            row = [mixture_label(m)]
            for c in self.columns:
                cell = self.cells[m][c.key]
                row.append(cell.text(c.digits) + mk[c.key][i])
            for k in extra:
                vals = self.cells[m][k].values
                row.append(", ".join(f"s{s} {'n/a' if v is None else f'{v:.{DIGITS}f}'}" for s, v in vals.items()))
            lines.append("| " + " | ".join(row) + " |")
        if self.notes:
            lines += [""] + self.notes
        return "\n".join(lines) + "\n"

    def _col(self, key: str) -> Column:
        return next(c for c in self.columns if c.key == key)

    def csv(self) -> str:
        """One row per mixture: <key> (mean) and <key>_std per column, per-seed values of the per_seed columns."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        header = ["mixture", "n_seeds", "seeds"]
        for c in self.columns:
            header += [c.key, f"{c.key}_std"]
        header += [f"{k}_s{s}" for k in self.per_seed for s in self.seeds]
        w.writerow(header)
        for m in self.mixtures:
            row = [m, len(self.seeds), ";".join(map(str, self.seeds))]
            for c in self.columns:
                cell = self.cells[m][c.key]
                row += ["" if cell.mean is None else cell.mean, "" if cell.std is None else cell.std]
            row += ["" if (v := self.cells[m][k].values[s]) is None else v for k in self.per_seed for s in self.seeds]
            w.writerow(row)
        return buf.getvalue()

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
                cell = self.cells[m][c.key]
                row[c.key] = cell.mean
                if std and len(self.seeds) > 1:
                    row[f"{c.key}_std"] = cell.std
            for k in self.per_seed:
                for s, v in self.cells[m][k].values.items():
                    row[f"{k}_s{s}"] = v
            out[m] = row
        return out


def _eval_table(title: str, columns: list[Column], runs: Mapping[str, Mapping[int, Mapping]], seeds: list[int],
                notes: list[str], per_seed: tuple[str, ...] = ()) -> Table:
    cells = {m: {c.key: Cell({s: _get(runs[m][s], c.path) for s in seeds}) for c in columns} for m in runs}
    return Table(title, columns, cells, seeds, notes, per_seed)


def _seed_note(seeds: Sequence[int]) -> str:
    if len(seeds) == 1:
        return f"One seed ({seeds[0]}): single values, no spread."
    return f"Mean ± sample std (ddof = 1) over seeds {', '.join(map(str, seeds))}."


def dev_table(runs: Mapping[str, Mapping[int, Mapping]], seeds: list[int]) -> Table:
    notes = [
        f"{BEST} best, {SECOND} second best per column (higher is better; ↓: lower is better), on the displayed means. "
        + _seed_note(seeds),
        "paper = valid outputs only (the paper's Table 3); strict = all N, an invalid output counting as the empty label "
        "set and the neutral VAD point (docs/metrics.md). Heads = the label/VAD heads read directly, paper way (invalid only where the input overflows the context). "
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
    rows = {m: {s: training_row(logs[m][s], (sft_metrics or {}).get(m, {}).get(s), window) for s in seeds}
            for m in logs}
    cells = {m: {c.key: Cell({s: rows[m][s][c.key] for s in seeds}) for c in TRAINING_COLUMNS} for m in logs}
    notes = [f"Points = logged optimizer steps; Best Loss = minimum of the total loss smoothed by a trailing mean over "
             f"{window} logged steps (the curve of loss_curves.png), at 'Step of best'; Raw min loss = unsmoothed "
             "minimum (one noisy minibatch); Final loss = last smoothed value; Steps / Selected step from "
             f"metrics/sft (the checkpoint kept by the dev score S). {BEST} best, {SECOND} second. " + _seed_note(seeds)]
    return Table("Training overview (Table 2)", TRAINING_COLUMNS, cells, seeds, notes)


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
                "baselines": self.baselines.json([c.key for c in BASELINE_COLUMNS if c.key != "n_dev"], std=False),
                "training": self.training.json(["points", "best_loss", "best_step", "selected_step"], std=False)}


def input_paths(mixtures: Sequence[str], seeds: Sequence[int], root: Path = Path("."),
                kinds: Sequence[str] = ("eval", "train_log", "sft")) -> dict[str, list[Path]]:
    """The per-run files each kind of input needs: eval (eval_dev JSON), train_log (CSV), sft (training metrics)."""
    where = {"eval": lambda r: EVAL_DIR / f"{r}.json", "train_log": lambda r: TRAIN_LOG_DIR / r / "train_log.csv",
             "sft": lambda r: SFT_METRICS_DIR / f"{r}.json"}
    return {k: [Path(root) / where[k](run_name(m, s)) for m in mixtures for s in seeds] for k in kinds}


def check_inputs(mixtures: Sequence[str], seeds: Sequence[int], root: Path = Path("."),
                 kinds: Sequence[str] = ("eval", "train_log", "sft")) -> None:
    """One MissingRunsError naming every missing input file of every kind (before anything is read)."""
    paths = [p for ps in input_paths(mixtures, seeds, root, kinds).values() for p in ps]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise MissingRunsError(f"{len(missing)} of {len(paths)} input files for runs {list(mixtures)} x seeds "
                               f"{list(seeds)} are missing (made by the sft / eval_dev stages): " + ", ".join(missing))


def build_report(mixtures: Sequence[str], seeds: Sequence[int], window: int, root: Path = Path(".")) -> Report:
    """Load every run's inputs (one MissingRunsError naming all missing files) and build the three tables."""
    mixtures, seeds = list(mixtures), list(seeds)
    check_inputs(mixtures, seeds, root)
    runs = load_eval_runs(mixtures, seeds, root)
    logs = load_train_logs(mixtures, seeds, root)
    sft = load_sft_metrics(mixtures, seeds, root)
    return Report(dev_table(runs, seeds), baseline_table(runs, seeds), training_table(logs, sft, seeds, window))
