"""The paper's figures (Figs. 3-6) to Appendix C's export spec (docs/reporting.md).

- dev_scores_bars.png   grouped by mixture: Macro-F1, Macro-R, 1-RMSE (paper and strict way) and ParseOK; error bars =
                        sample std across seeds when there is more than one seed;
- dev_scores_radar.png  one polar axis, radius fixed to [0, 1] for every mixture, ticks every 0.2; the best mixture
                        (highest mean over the radar's axes) drawn bold;
- loss_curves.png       per mixture the median across seeds of the smoothed loss + the 25-75 % band, on the steps every
                        seed logged (no extrapolation, no jump where a seed ends early); one seed: just its line;
- lr_gradnorm.png       top: learning rate (median across seeds); bottom: smoothed gradient norm, median + 25-75 % band.

Okabe-Ito colours plus a line style per mixture (hatching for strict bars), fixed DPI and font size, external
legends, tight bounding box, English labels, the Agg canvas (no pyplot state). Output bytes depend only on the inputs and the matplotlib/freetype build: the PNG carries no software
tag or date.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from emoloom.core.config import option, validate
from emoloom.core.io import atomic_path
from emoloom.reporting.compare import Table, smooth
from emoloom.reporting.runs import mixture_label

# Okabe & Ito (2008), colour-universal design; black is left out (used for text and the grid).
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442")
FIGURES = ("dev_scores_bars.png", "dev_scores_radar.png", "loss_curves.png", "lr_gradnorm.png")
LINESTYLES = ("-", "--", "-.", ":")   # second cue besides colour; identical curves (one LR schedule) stay visible
PNG_METADATA = {"Software": None}   # matplotlib writes its version otherwise; PNG has no date unless asked


@dataclass(frozen=True)
class Style:
    """Figure style (params.yaml `report`)."""
    dpi: int = option(150, "figure resolution", ge=10, le=1200)
    font_size: float = option(9.0, "figure base font size (pt)", gt=1)
    smooth_window: int = option(10, "trailing mean over logged steps: loss/grad-norm curves and Table 2's Best Loss",
                                ge=1)

    def __post_init__(self) -> None:
        validate(self, "report")

    def rc(self) -> dict:
        fs = self.font_size
        return {"font.family": "DejaVu Sans", "font.size": fs, "axes.titlesize": fs + 1, "axes.labelsize": fs,
                "xtick.labelsize": fs - 1, "ytick.labelsize": fs - 1, "legend.fontsize": fs - 1,
                "figure.dpi": self.dpi, "savefig.dpi": self.dpi, "axes.grid": True, "grid.alpha": 0.3,
                "grid.linewidth": 0.5, "axes.axisbelow": True, "hatch.linewidth": 0.8,
                "path.simplify": False}


def mixture_colors(mixtures: Sequence[str]) -> dict[str, str]:
    return {m: OKABE_ITO[i % len(OKABE_ITO)] for i, m in enumerate(mixtures)}


def mixture_linestyles(mixtures: Sequence[str]) -> dict[str, str]:
    return {m: LINESTYLES[i % len(LINESTYLES)] for i, m in enumerate(mixtures)}


def _figure(style: Style, size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=style.dpi)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path, style: Style) -> Path:
    """Write a PNG atomically at the style's DPI, tight bounding box, without the software tag."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=style.dpi, bbox_inches="tight", pad_inches=0.05, metadata=PNG_METADATA)
    return path


# ------------------------------------------------------------------------------------------------ band math

def seed_band(curves: Mapping[int, tuple[Sequence[float], Sequence[float]]], complete: bool = False
              ) -> dict[str, np.ndarray]:
    """Median and 25/75 % percentiles (numpy's linear interpolation) across seeds, step by step.

    curves: seed -> (steps, values). The result is defined only on steps some seed logged (the sorted union; no
    interpolation or extrapolation); at each step only the seeds that logged it, with a non-NaN value, count (n).
    complete=True keeps only the steps where every seed has a value, so the median never jumps because a seed
    ended early (a run stopped by its time budget): the curve then stops at the shortest seed's last step.
    """
    steps = np.unique(np.concatenate([np.asarray(s, dtype=float) for s, _ in curves.values()])) if curves else np.array([])
    table = np.full((len(curves), steps.size), np.nan)
    for i, (s, v) in enumerate(curves.values()):
        table[i, np.searchsorted(steps, np.asarray(s, dtype=float))] = np.asarray(v, dtype=float)
    n = (~np.isnan(table)).sum(axis=0)
    keep = n == len(curves) if complete else n > 0
    steps, table, n = steps[keep], table[:, keep], n[keep]
    if not steps.size:
        empty = np.array([])
        return {"step": empty, "median": empty, "q25": empty, "q75": empty, "n": empty.astype(int)}
    q25, med, q75 = np.nanpercentile(table, [25, 50, 75], axis=0)
    return {"step": steps, "median": med, "q25": q25, "q75": q75, "n": n}


def _band_plot(ax, logs: Mapping[int, Mapping[str, np.ndarray]], column: str, color: str, linestyle: str, label: str,
               window: int | None) -> None:
    curves = {s: (log["step"], smooth(log[column], window) if window else log[column]) for s, log in logs.items()}
    b = seed_band(curves, complete=True)
    last = max(np.nanmax(np.asarray(log["step"], dtype=float)) for log in logs.values())
    if b["step"].size and b["step"][-1] < last:
        label += f" (to step {b['step'][-1]:g}, shortest seed)"
    ax.plot(b["step"], b["median"], color=color, linestyle=linestyle, linewidth=1.6, label=label)
    several = b["n"] >= 2
    if several.any():
        ax.fill_between(b["step"], b["q25"], b["q75"], where=several, color=color, alpha=0.22, linewidth=0,
                        interpolate=False)


# ------------------------------------------------------------------------------------------------ the figures

BAR_METRICS = (  # (column key in report.DEV_COLUMNS, legend label, colour index, hatched)
    ("macro_f1_paper", "Macro-F1 (paper)", 0, False), ("macro_f1_strict", "Macro-F1 (strict)", 0, True),
    ("macro_r_paper", "Macro-R (paper)", 1, False), ("macro_r_strict", "Macro-R (strict)", 1, True),
    ("one_minus_rmse_paper", "1-RMSE (paper)", 2, False), ("one_minus_rmse_strict", "1-RMSE (strict)", 2, True),
    ("parse_ok", "ParseOK", 3, False),
)
RADAR_METRICS = (
    ("macro_f1_paper", "Macro-F1\n(paper)"), ("macro_p_paper", "Macro-P\n(paper)"), ("macro_r_paper", "Macro-R\n(paper)"),
    ("one_minus_rmse_paper", "1-RMSE\n(paper)"), ("parse_ok", "ParseOK"),
    ("one_minus_rmse_strict", "1-RMSE\n(strict)"), ("macro_r_strict", "Macro-R\n(strict)"),
    ("macro_p_strict", "Macro-P\n(strict)"), ("macro_f1_strict", "Macro-F1\n(strict)"),
)


def dev_scores_bars(dev: Table, path: str | Path, style: Style = Style()) -> Path:
    mixtures = dev.mixtures
    with matplotlib.rc_context(style.rc()):
        fig = _figure(style, (7.5, 3.6))
        ax = fig.add_subplot()
        k = len(BAR_METRICS)
        width = 0.8 / k
        x = np.arange(len(mixtures))
        for j, (key, label, ci, hatched) in enumerate(BAR_METRICS):
            color = OKABE_ITO[ci]
            cells = [dev.cell(m, key) for m in mixtures]
            heights = [c.mean if c.mean is not None else 0.0 for c in cells]
            err = [c.std if c.std is not None else 0.0 for c in cells]
            pos = x - 0.4 + width * (j + 0.5)
            ax.bar(pos, heights, width * 0.92, label=label, color="white" if hatched else color, edgecolor=color,
                   hatch="////" if hatched else None, linewidth=0.8,
                   yerr=err if any(c.std is not None for c in cells) else None,
                   error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "black"})
            for p, c in zip(pos, cells):
                if c.mean is None:
                    ax.text(p, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize=style.font_size - 2)
        ax.set_xticks(x, [mixture_label(m) for m in mixtures])
        ax.set_xlabel("Mixture (GoEmotions : EmpatheticDialogues)")
        ax.set_ylabel("Score")
        ax.set_ylim(0, 1.05)
        ax.set_yticks(np.linspace(0, 1, 6))
        n_seeds = len(dev.seeds)
        ax.set_title("Dev set scores by mixture" + (f" (mean ± std over {n_seeds} seeds)" if n_seeds > 1 else ""))
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        return save(fig, path, style)


def best_radar_mixture(dev: Table) -> str:
    """The mixture with the highest mean over the radar's axes (a missing value counts as 0); first one on ties."""
    def score(m):
        return np.mean([dev.cell(m, k).mean or 0.0 for k, _ in RADAR_METRICS])
    return max(dev.mixtures, key=score)


def dev_scores_radar(dev: Table, path: str | Path, style: Style = Style()) -> Path:
    mixtures = dev.mixtures
    colors, styles = mixture_colors(mixtures), mixture_linestyles(mixtures)
    best = best_radar_mixture(dev)
    angles = np.linspace(0, 2 * np.pi, len(RADAR_METRICS), endpoint=False)
    closed = np.append(angles, angles[0])
    with matplotlib.rc_context(style.rc()):
        fig = _figure(style, (5.2, 4.6))
        ax = fig.add_subplot(projection="polar")
        ax.set_theta_offset(np.pi / 2)
        ax.set_theta_direction(-1)
        for m in mixtures:
            vals = [dev.cell(m, k).mean for k, _ in RADAR_METRICS]
            r = np.array([np.nan if v is None else v for v in vals] + [np.nan if vals[0] is None else vals[0]])
            bold = m == best
            ax.plot(closed, r, color=colors[m], linestyle=styles[m], linewidth=2.8 if bold else 1.3,
                    zorder=3 if bold else 2,
                    label=f"{mixture_label(m)} (best)" if bold else mixture_label(m))
            ax.fill(closed, np.nan_to_num(r), color=colors[m], alpha=0.10 if bold else 0.05, zorder=1)
        ax.set_xticks(angles, [lbl for _, lbl in RADAR_METRICS])
        ax.tick_params(axis="x", pad=7)
        ax.set_ylim(0.0, 1.0)
        ticks = np.linspace(0.2, 1.0, 5)
        # tick labels on the ray half-way between the first two metric axes, clear of the metric names
        ax.set_rgrids(ticks, [f"{t:.1f}" for t in ticks], angle=180 / len(RADAR_METRICS), fontsize=style.font_size - 2)
        ax.set_title("Dev set radar (axes fixed to [0, 1])", pad=18)
        legend = ax.legend(loc="center left", bbox_to_anchor=(1.15, 0.5), frameon=False, title="Mixture")
        for text in legend.get_texts():
            if text.get_text().endswith("(best)"):
                text.set_fontweight("bold")
        return save(fig, path, style)


def loss_curves(logs: Mapping[str, Mapping[int, Mapping[str, np.ndarray]]], path: str | Path,
                style: Style = Style()) -> Path:
    colors, styles = mixture_colors(list(logs)), mixture_linestyles(list(logs))
    n_seeds = max(len(v) for v in logs.values())
    with matplotlib.rc_context(style.rc()):
        fig = _figure(style, (6.4, 3.6))
        ax = fig.add_subplot()
        for m, runs in logs.items():
            _band_plot(ax, runs, "loss", colors[m], styles[m], mixture_label(m), style.smooth_window)
        ax.set_xlabel("Optimizer step")
        ax.set_ylabel(f"Training loss (smoothed, w={style.smooth_window})")
        ax.set_title("Training loss" + (" (median, 25-75 % band across seeds)" if n_seeds > 1 else ""))
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, title="Mixture")
        return save(fig, path, style)


def lr_gradnorm(logs: Mapping[str, Mapping[int, Mapping[str, np.ndarray]]], path: str | Path,
                style: Style = Style()) -> Path:
    colors, styles = mixture_colors(list(logs)), mixture_linestyles(list(logs))
    with matplotlib.rc_context(style.rc()):
        fig = _figure(style, (6.4, 5.0))
        top, bottom = fig.subplots(2, 1, sharex=True)
        for m, runs in logs.items():
            _band_plot(top, runs, "lr", colors[m], styles[m], mixture_label(m), None)
            _band_plot(bottom, runs, "grad_norm", colors[m], styles[m], mixture_label(m), style.smooth_window)
        top.set_ylabel("Learning rate")
        top.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        top.set_title("Learning rate (top) and gradient norm (bottom)")
        bottom.set_ylabel(f"Gradient norm (smoothed, w={style.smooth_window})")
        bottom.set_xlabel("Optimizer step")
        handles, labels = top.get_legend_handles_labels()
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.92, 0.5), frameon=False, title="Mixture")
        fig.align_ylabels([top, bottom])
        return save(fig, path, style)


def write_all(dev: Table, logs: Mapping[str, Mapping[int, Mapping[str, np.ndarray]]], out_dir: str | Path,
              style: Style = Style()) -> list[Path]:
    out_dir = Path(out_dir)
    return [dev_scores_bars(dev, out_dir / FIGURES[0], style), dev_scores_radar(dev, out_dir / FIGURES[1], style),
            loss_curves(logs, out_dir / FIGURES[2], style), lr_gradnorm(logs, out_dir / FIGURES[3], style)]


SCREEN_AXES = (("macro_f1", "Macro-F1"), ("one_minus_rmse", "1-RMSE\n(VAD)"), ("rho_mean", "ρ VAD"),
               ("quality", "Quality"), ("q_json_ok", "JSON ok"), ("q_struct_ok", "Struct ok"),
               ("q_ratlen_ok", "Short\nrationale"))


def _radar_value(row: Mapping, key: str) -> float:
    return 1.0 - row["rmse"] if key == "one_minus_rmse" else max(0.0, row[key])


def _radar_interval(row: Mapping, key: str) -> tuple[float, float]:
    """(low, high) of an axis from the row's bootstrap intervals; the point itself where there is none."""
    if key == "one_minus_rmse":
        lo, hi = row["ci"]["rmse"]
        return 1.0 - hi, 1.0 - lo
    if key in row["ci"]:
        lo, hi = row["ci"][key]
        return max(0.0, lo), max(0.0, hi)
    return (_radar_value(row, key),) * 2


def screening_radar(panels: Mapping[str, Mapping[str, Mapping[str, float]]], path: str | Path,
                    style: Style = Style()) -> Path:
    """Figure 2: one polar panel per screening way (title -> {model: Table 1 row}); axes fixed to [0, 1], RMSE shown
    as 1 - RMSE so that higher is better everywhere; a way that has no quality scores (the probe) skips those axes.
    Rows with bootstrap intervals (`ci`) get a band; candidates tied with the leader say so in the legend."""
    with matplotlib.rc_context(style.rc()):
        fig = _figure(style, (5.0 * len(panels), 4.6))
        for i, (title, rows) in enumerate(panels.items(), 1):
            axes = [(k, lbl) for k, lbl in SCREEN_AXES if k == "one_minus_rmse" or all(k in r for r in rows.values())]
            angles = np.linspace(0, 2 * np.pi, len(axes), endpoint=False)
            ax = fig.add_subplot(1, len(panels), i, projection="polar")
            ax.set_theta_offset(np.pi / 2)
            ax.set_theta_direction(-1)
            closed = np.append(angles, angles[0])
            for j, (name, row) in enumerate(rows.items()):
                color = OKABE_ITO[j % len(OKABE_ITO)]
                values = [_radar_value(row, k) for k, _ in axes]
                ax.plot(closed, values + values[:1], color=color, linestyle=LINESTYLES[j % len(LINESTYLES)],
                        label=f"{name} (tied)" if row.get("tied") else name)
                if "ci" in row:                    # the bootstrap's 95% intervals as a band
                    low, high = zip(*[_radar_interval(row, k) for k, _ in axes])
                    ax.fill_between(closed, [*low, low[0]], [*high, high[0]], color=color, alpha=0.15, linewidth=0)
            ax.set_xticks(angles, [lbl for _, lbl in axes])
            ax.set_ylim(0.0, 1.0)
            ax.set_rgrids(np.linspace(0.2, 1.0, 5), fontsize=style.font_size - 2)
            ax.set_title(title, pad=18)
        ax.legend(loc="center left", bbox_to_anchor=(1.15, 0.5), frameon=False, title="Backbone")
        return save(fig, path, style)
