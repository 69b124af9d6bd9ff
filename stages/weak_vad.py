"""DVC stage `weak_vad`: weak VAD + coverage for every prepared file, the vad_conf >= tau filter, the retention table.

Outputs data/weak/<corpus>/<split>.jsonl (the DailyDialog probe as dev_dailydialog_weak.jsonl), metrics/weak_vad.json,
metrics/retention.json and metrics/retention.md.
"""

from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from emoloom.core.config import split_section
from emoloom.core.errors import DataError
from emoloom.core.io import read_jsonl, write_json, write_jsonl, write_text
from emoloom.core.params import load_section
from emoloom.core.resources import raw_root
from emoloom.core.stage import run_stage
from emoloom.data.lexicon import load_lexicon
from emoloom.data.retention import retention_markdown, retention_table
from emoloom.data.weak_vad import WeakVadConfig, WeakVadFilter, annotate

IN_DIR, OUT_DIR = Path("data/prepared"), Path("data/weak")
# prepared file -> (output file, whether the vad_conf >= tau filter applies). Training corpora are filtered; the probe
# files keep every row with at least one lexicon term, so the probe is not biased towards lexicon-friendly text.
FILES = {
    "goemotions/train": ("goemotions/train.jsonl", True),
    "goemotions/dev": ("goemotions/dev.jsonl", True),
    "empathetic/train": ("empathetic/train.jsonl", True),
    "empathetic/dev": ("empathetic/dev.jsonl", True),
    "empathetic/dev_utterances": ("empathetic/dev_utterances.jsonl", False),
    "dailydialog/dev": ("dailydialog/dev_dailydialog_weak.jsonl", False),
}


def main() -> None:
    rule, cfg = split_section(load_section("weak_vad"), "weak_vad", WeakVadFilter, WeakVadConfig)
    tau = rule.tau
    lexicon = load_lexicon(rule.lexicon, raw_root(load_section("data")["raw_root"]))
    confs, summary = {}, {}
    for name, (out_name, filtered) in FILES.items():
        records = [annotate(r, lexicon, cfg) for r in tqdm(read_jsonl(IN_DIR / f"{name}.jsonl"), desc=f"weak_vad {name}",
                                                            unit=" rows", mininterval=1.0)]
        confs[name] = [r["vad_conf"] for r in records]
        threshold = tau if filtered else 0.0
        kept = [r for r in records if r["vad"] is not None and r["vad_conf"] >= threshold]
        if not kept:
            raise DataError(f"weak_vad: no row of {IN_DIR / name}.jsonl ({len(records)} rows) has a lexicon match"
                            + (f" with vad_conf >= tau = {tau}; lower weak_vad.tau (metrics/retention.md shows what "
                               f"each tau keeps)" if filtered else ""))
        write_jsonl(OUT_DIR / out_name, kept)
        summary[name] = {"rows_in": len(records), "rows_kept": len(kept), "tau": threshold,
                         "mean_vad_conf": round(sum(confs[name]) / max(len(records), 1), 4),
                         "mean_vad": {k: round(sum(r["vad"][k] for r in kept) / max(len(kept), 1), 4) for k in "vad"}}
    table = retention_table(confs, list(rule.retention_taus))
    write_json("metrics/weak_vad.json", {"lexicon": lexicon.name, "tau": tau, "config": asdict(cfg), "files": summary})
    write_json("metrics/retention.json", table)
    write_text("metrics/retention.md", f"Rows kept by vad_conf >= tau (lexicon {lexicon.name}, coverage over content "
                                       f"words; a row also needs one matched term)\n\n" + retention_markdown(table, tau))


if __name__ == "__main__":
    run_stage("weak_vad", main)
