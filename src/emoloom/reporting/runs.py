"""The per-run inputs of the comparison and the figures: which runs params.yaml asks for, and their files.

Per run (mixture x seed): metrics/eval_dev/<run>.json (eval_dev), plots/sft/<run>/train_log.csv and
metrics/sft/<run>.json (sft). A missing file is named, with every other missing one, in one MissingRunsError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from emoloom.core.errors import MissingInputError, ParamError
from emoloom.core.io import read_json

EVAL_DIR = Path("metrics/eval_dev")
SFT_METRICS_DIR = Path("metrics/sft")
TRAIN_LOG_DIR = Path("plots/sft")
LOG_COLUMNS = ("step", "loss", "lr", "grad_norm")   # the train-log columns the report and the figures read


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
        raise ParamError(f"params: compare/figures need mix.mixtures and sft.seeds (missing {e})") from None
    except (TypeError, ValueError):
        raise ParamError("params: sft.seeds must be a list of integers") from None
    if not mixtures or not seeds:
        raise ParamError(f"params: no runs (mix.mixtures={mixtures}, sft.seeds={seeds})")
    if len(set(seeds)) != len(seeds):
        raise ParamError(f"params: sft.seeds has duplicates: {seeds}")
    return mixtures, seeds


class MissingRunsError(MissingInputError):
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


def read_train_log(path: str | Path, columns: Sequence[str] = LOG_COLUMNS) -> dict[str, np.ndarray]:
    """The numeric `columns` of a train_log.csv as float arrays (blank cells -> NaN). Steps must strictly increase."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ValueError(f"{path}: no column(s) {absent} (has {list(frame.columns)})")
    try:
        out = {c: frame[c].str.strip().replace("", "nan").astype(float).to_numpy() for c in columns}
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
