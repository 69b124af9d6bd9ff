"""DVC stage `screen`: zero-shot and probe screening of the packaged candidate backbones under one budget.

Writes metrics/screen.json, metrics/screen.md (Table 1, both ways, with bootstrap intervals, rank-1 frequencies and
ties) and plots/figures/screen_radar.png (Figure 2). A candidate that cannot be loaded (package not installed, hub id
not cached offline, a bad directory) is listed as skipped with the reason; the others are still screened.
"""

import time
from pathlib import Path

from emoloom.core.config import from_section
from emoloom.core.errors import EmoloomError, MissingInputError
from emoloom.core.io import read_jsonl, write_json, write_text
from emoloom.core.params import load_params
from emoloom.core.stage import run_stage
from emoloom.evaluation.runner import EvalConfig
from emoloom.evaluation.screening import (
    ProbeConfig,
    ScreenConfig,
    few_shot_examples,
    probe,
    rank,
    table_markdown,
    zero_shot,
)
from emoloom.evaluation.uncertainty import BootstrapConfig
from emoloom.modeling.backbones import BackboneConfig, load_backbone
from emoloom.reporting.figures import Style, screening_radar


def main() -> None:
    params = load_params()
    section = dict(params["screen"])
    probe_cfg = from_section(ProbeConfig, section.pop("probe", None), "screen.probe")
    boot = from_section(BootstrapConfig, section.pop("bootstrap", None), "screen.bootstrap")
    cfg = from_section(ScreenConfig, section, "screen")
    backbone = from_section(BackboneConfig, params["backbone"], "backbone")
    style = from_section(Style, params["report"], "report")
    train = list(read_jsonl(Path(f"data/mix/{cfg.mixture}/train.jsonl")))
    dev = list(read_jsonl(Path(f"data/mix/{cfg.mixture}/dev.jsonl")))
    decode = EvalConfig.from_params(params["eval"], max_new_tokens=cfg.max_new_tokens,
                                    time_budget_min=cfg.time_budget_min, stream_seed=cfg.stream_seed)
    examples = few_shot_examples(train, cfg.few_shot, cfg.stream_seed) if cfg.few_shot else []
    zero, few, probed, skipped = {}, {}, {}, {}
    start = time.perf_counter()
    for name in cfg.candidates:
        source = backbone.out_dir if name == backbone.name else name
        try:
            lm, tokenizer = load_backbone(source)
        except (EmoloomError, OSError) as err:   # not installed, not cached offline, not a model directory
            skipped[name] = str(err)
            print(f"screen: skipping {name}: {err}")
            continue
        zero[name] = zero_shot(lm, tokenizer, dev, decode)
        if examples:                               # the zero-shot arm's fallback for models that cannot answer cold
            few[name] = zero_shot(lm, tokenizer, dev, decode, examples)
        probed[name] = probe(lm, tokenizer, train, dev[:cfg.probe_dev_rows], decode, probe_cfg)
    if not zero:
        raise MissingInputError(f"screen: no candidate could be loaded ({skipped})")
    zero, probed = rank(zero, boot), rank(probed, boot)
    few = rank(few, boot) if few else {}
    seconds = round(time.perf_counter() - start, 1)
    write_json("metrics/screen.json", {"zero_shot": zero, "few_shot": few, "probe": probed, "skipped": skipped,
                                       "budget_min_per_candidate": cfg.time_budget_min, "bootstrap": vars(boot),
                                       "wall_seconds": seconds})
    few_md = table_markdown(f"Few-shot fallback ({cfg.few_shot} seeded training examples before the message, the "
                            f"same for every candidate)", few) + "\n" if few else ""
    write_text("metrics/screen.md", table_markdown("Zero-shot quick eval (contract prompt, greedy)", zero) + "\n"
               + few_md
               + table_markdown(f"Probe: heads on frozen features (up to {probe_cfg.train_rows} train rows, "
                                f"{probe_cfg.epochs} steps)", probed)
               + f"\nIntervals: {boot.level:.0%} percentile bootstrap over the dev rows every candidate scored, "
                 f"{boot.samples} paired resamples (seed {boot.seed}); rank-1 = share of resamples a candidate leads "
                 f"the composite.\n"
               + "".join(f"\nSkipped {n}: {why}\n" for n, why in skipped.items()))
    panels = {"Zero-shot": zero, **({f"Few-shot (k={cfg.few_shot})": few} if few else {}),
              "Probe (frozen features)": probed}
    screening_radar(panels, "plots/figures/screen_radar.png", style)


if __name__ == "__main__":
    run_stage("screen", main)
