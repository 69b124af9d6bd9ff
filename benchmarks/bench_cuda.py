"""The CUDA paths, measured on a GPU machine with the backbone's architecture and random weights (docs/training.md,
"Measured on a GPU").

The GPU machine takes at most 64 MiB of files, so the backbone's weights (98 MB as GGUF, 517 MB converted) stay behind:
its config is built with random weights there. Speed and memory are the real model's; quality is not measured, and
a random model decodes every answer to the full budget (a trained one stops at ~45 tokens), so decoding times are an
upper bound and exact mode certifies few tokens of random logits.

    .venv/bin/python benchmarks/bench_cuda.py --pack .devpack                # here: what the GPU run reads (~11 MiB)
    python3 benchmarks/bench_cuda.py --run .devpack --out $OUT              # there: every part
    .venv/bin/python benchmarks/bench_cuda.py --run .devpack --smoke         # here: the same code on a tiny CPU model

The loop runs ~1 s a step on an H200 (docs/training.md, "Measured on a GPU"), so the longer recipe's 480 steps
(`--loop-steps 480`) need a call of their own.

1. Training throughput: `bench_training.measure` (all six loss terms) in bf16 autocast and in fp32 (TF32), micro-
   batches of 16 to 128 examples; examples/s, tokens/s, peak memory.
2. Where a step's time goes: torch.profiler's top operators by CPU and by GPU time (micro-batch 16, bf16).
3. The SFT loop (`emoloom.training.loop.train`) end to end on CUDA with the longer recipe's settings (dev passes of 64
   rows, the heads' refit on 6,144 prompts, the export) for --loop-steps steps, timed.
4. OOM self-healing on a real out-of-memory: a ballast tensor fills the GPU but for room for a micro-batch of 16; the
   loop starts at 64 and must halve its way down, then finish.
5. Decoding on CUDA: reference (KV off, batch 1), exact and cached in fp32 and bf16 on the same dev prompts; rows/s
   and agreement with the reference; then `EmotionModel.predict` in bf16 on the loop's exported bundle.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from bench_training import PARAMS_LORA, load_examples, measure  # noqa: E402  (benchmarks/ is on the path: this script's folder)

from emoloom.core.config import from_section  # noqa: E402
from emoloom.core.device import seed_everything  # noqa: E402
from emoloom.core.stamp import environment_stamp  # noqa: E402
from emoloom.core.tables import markdown_table  # noqa: E402
from emoloom.modeling.model import LoraSettings  # noqa: E402
from emoloom.training.config import LossWeights, RunPaths, SFTConfig  # noqa: E402

MIXTURE, SOURCES = "20_80", ("goemotions", "empathetic")
RAW_FILES = ("nrc_vad/NRC-VAD-Lexicon.txt", "antonyms/wordnet30_antonym_pairs.tsv")
LONGER_RECIPE = dict(max_steps=480, pass_steps=160, eval_rows=64, budget_min=120)   # README "The longer CPU recipe"
GIB = 2**30


def pack(dest: Path) -> None:
    """Copy what `--run` reads: the backbone's config and tokenizer (no weights), the verifier, one mixture, the two
    raw files (never committed: .devpack is ignored)."""
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "backbone").mkdir(parents=True)
    for f in (REPO / "data/backbone").iterdir():
        if f.name != "model.safetensors":
            shutil.copy2(f, dest / "backbone" / f.name)
    shutil.copy2(REPO / "data/verifier/verifier.pt", dest / "verifier.pt")
    shutil.copytree(REPO / f"data/mix/{MIXTURE}", dest / "mix")
    for rel in RAW_FILES:
        (dest / "raw" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO.parent / "shared/data" / rel, dest / "raw" / rel)
    print(f"packed {sum(f.stat().st_size for f in dest.rglob('*') if f.is_file()) / 2**20:.1f} MiB into {dest}")


def random_backbone(pack_dir: Path, out: Path, smoke: bool) -> Path:
    """The backbone's architecture with seeded random weights, saved where `build_model` and bundles load it."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(pack_dir / "backbone")
    if smoke:                                  # 16 layers: the heads read layer 14
        config.update(dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                           num_hidden_layers=16, head_dim=16))
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    for f in (pack_dir / "backbone").iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            shutil.copy2(f, out / f.name)
    return out


def part_throughput(backbone: Path, pack_dir: Path, device: torch.device, steps: int,
                    only: tuple[str, ...] = ()) -> pd.DataFrame:
    configs = [   # (name, SFTConfig changes, examples per step, autocast dtype)
        ("recipe step: micro 8 x 2, bf16", dict(micro_batch=8), 16, torch.bfloat16),
        ("micro 16 x 1, bf16", dict(micro_batch=16), 16, torch.bfloat16),
        ("micro 16 x 1, fp32 (TF32)", dict(micro_batch=16), 16, None),
        ("micro 16 x 1, bf16, plain forward", dict(micro_batch=16, share_prefix=False), 16, torch.bfloat16),
        ("micro 32 x 1, bf16", dict(micro_batch=32), 32, torch.bfloat16),
        ("micro 64 x 1, bf16", dict(micro_batch=64), 64, torch.bfloat16),
        ("micro 128 x 1, bf16", dict(micro_batch=128), 128, torch.bfloat16),
        ("micro 64 x 1, bf16, full fine-tune", dict(micro_batch=64, full_finetune=True), 64, torch.bfloat16),
    ]
    configs = [c for c in configs if not only or c[0] in only]
    base = SFTConfig(device=device.type)
    tokenizer, verifier, tables, examples = load_examples(
        backbone, pack_dir / "mix/train.jsonl", pack_dir / "verifier.pt", pack_dir / "raw",
        max(n for *_, n, _ in configs) * (steps + 1), base)
    rows = []
    for name, changes, per_step, amp in configs:
        res = measure(replace(base, **changes), PARAMS_LORA, examples, tokenizer, verifier, tables,
                      steps, backbone, device, amp, per_step)
        rows.append({"configuration": name, **{k: round(v, 3) for k, v in res.items()}})
        print(rows[-1], flush=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return pd.DataFrame(rows)


def part_profile(backbone: Path, pack_dir: Path, device: torch.device) -> str:
    """Where a step's time goes: torch.profiler's top operators by CPU and by GPU time over one micro-batch-16 bf16
    step, its warm-up step, the examples' encoding and the model's load."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        part_throughput(backbone, pack_dir, device, 1, ("micro 16 x 1, bf16",))
    averages = prof.key_averages()
    tables = [averages.table(sort_by=key, row_limit=15)
              for key in ("self_cpu_time_total", "self_device_time_total" if device.type == "cuda" else "cpu_time_total")]
    print("\n\n".join(tables), flush=True)
    return "\n\n".join(tables)


def run_paths(pack_dir: Path, backbone: Path, out: Path) -> RunPaths:
    return RunPaths(train=pack_dir / "mix/train.jsonl", dev=pack_dir / "mix/dev.jsonl", backbone=backbone,
                    verifier=pack_dir / "verifier.pt", antonyms=pack_dir / "raw" / RAW_FILES[1], out=out,
                    plots=out / "plots")


def train_once(pack_dir: Path, backbone: Path, out: Path, **changes) -> tuple[dict, float, list[dict]]:
    """One `train` call with params.yaml's sft.train, loss and lora sections plus `changes`; (result, wall seconds,
    the run's decisions)."""
    from emoloom.data.lexicon import load_lexicon
    from emoloom.training.loop import train

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg = from_section(SFTConfig, {**params["sft"]["train"], **changes}, "sft.train")
    weights = from_section(LossWeights, params["loss"], "loss")
    lora = from_section(LoraSettings, params["lora"], "lora")
    mixture = dict(zip(SOURCES, params["mix"]["mixtures"][MIXTURE]))
    start = time.perf_counter()
    result = train(cfg, weights, lora, run_paths(pack_dir, backbone, out), mixture, load_lexicon("nrc_vad",
                   pack_dir / "raw"), out.name)
    wall = time.perf_counter() - start
    decisions = [json.loads(line) for line in (out / "plots/decisions.jsonl").read_text().splitlines()]
    return result, wall, decisions


def part_loop(pack_dir: Path, backbone: Path, work: Path, device: torch.device, short: bool, steps: int) -> dict:
    recipe = dict(max_steps=4, pass_steps=2, eval_rows=4, heads_refit_rows=64) if short else \
        {**LONGER_RECIPE, "max_steps": steps, "pass_steps": min(steps, LONGER_RECIPE["pass_steps"])}
    result, wall, decisions = train_once(pack_dir, backbone, work / "longer", device=device.type, **recipe)
    timing = result["timing"]
    print(f"loop: {recipe} on {device.type}: wall {wall:.1f} s; timing {json.dumps(timing)}; "
          f"steps {result['metrics']['steps']}", flush=True)
    return {"recipe": recipe, "wall_s": round(wall, 1), "timing": timing, "steps": result["metrics"]["steps"],
            "events": [d["event"] for d in decisions]}


def part_oom(pack_dir: Path, backbone: Path, work: Path, throughput: pd.DataFrame) -> dict:
    """A real OOM: ballast leaves the loop room for about 1.5 micro-batches of 16, and it starts at 64."""
    by_name = throughput.set_index("configuration")
    micro16 = by_name.loc["micro 16 x 1, bf16"]
    room = (micro16["before GiB"] + 1.5 * (micro16["peak GiB"] - micro16["before GiB"])) * GIB
    gc.collect()
    torch.cuda.empty_cache()
    free = torch.cuda.mem_get_info()[0]
    ballast = torch.empty(int(free - room), dtype=torch.uint8, device="cuda")
    print(f"oom: ballast {ballast.numel() / GIB:.1f} GiB, {torch.cuda.mem_get_info()[0] / GIB:.2f} GiB left free",
          flush=True)
    try:
        result, wall, decisions = train_once(pack_dir, backbone, work / "oom", device="cuda", micro_batch=64,
                                             grad_accum=1, max_len=640, min_max_len=256, max_steps=6, pass_steps=6,
                                             eval_rows=8, heads_refit_rows=0, checkpoint_every=6)
    finally:
        del ballast
        torch.cuda.empty_cache()
    heals = [d for d in decisions if d["event"] == "oom_self_heal"]
    print(f"oom: {len(heals)} self-heals {heals}; {result['metrics']['steps']} steps in {wall:.1f} s", flush=True)
    return {"heals": heals, "wall_s": round(wall, 1), "steps": result["metrics"]["steps"]}


def part_decoding(pack_dir: Path, backbone: Path, bundle: Path, device: torch.device, rows: int,
                  ref_rows: int) -> pd.DataFrame:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emoloom.core.contract import context_turns, encode_prompt
    from emoloom.core.io import read_jsonl
    from emoloom.evaluation.decoding import decode
    from emoloom.inference.predictor import EmotionModel

    tokenizer = AutoTokenizer.from_pretrained(backbone)
    records = list(read_jsonl(pack_dir / "mix/dev.jsonl"))[:rows]
    prompts = [encode_prompt(tokenizer, r["text"], context_turns(r)) for r in records]
    lm = AutoModelForCausalLM.from_pretrained(backbone, dtype=torch.float32).to(device).eval()
    out = []
    for amp in (None, torch.bfloat16):
        autocast = torch.autocast(device.type, dtype=amp) if amp else torch.autocast(device.type, enabled=False)
        with autocast:
            decode(lm, tokenizer, prompts[:2], 4, mode="cached")                    # warm-up, not timed
            results = {}
            for mode in ("reference", "exact", "cached"):
                subset = prompts[:ref_rows] if mode == "reference" else prompts
                gens, stats = decode(lm, tokenizer, subset, 56, mode=mode, batch_size=32)
                results[mode] = ([g.token_ids for g in gens], stats)
        ref_tokens = results["reference"][0]
        for mode, (tokens, stats) in results.items():
            same = sum(a == b for a, b in zip(tokens[:ref_rows], ref_tokens))
            out.append({"dtype": "bf16 autocast" if amp else "fp32 (TF32)", "mode": mode, "rows": stats.rows,
                        "rows/s": round(stats.rows / stats.seconds, 2), "new tokens/s": round(stats.steps / stats.seconds),
                        f"rows = reference (first {ref_rows})": f"{same}/{ref_rows}",
                        "reference steps": stats.reference_steps, "mismatches": stats.mismatches})
            print(out[-1], flush=True)
    if not (bundle / "bundle.json").exists():
        print("EmotionModel.predict: skipped (the loop exported no bundle)", flush=True)
        return pd.DataFrame(out)
    model = EmotionModel.load(bundle, precision="bf16", device=device.type)
    start = time.perf_counter()
    preds = model.predict([r["text"] for r in records[:8]])
    print(f"EmotionModel.predict bf16 on {device.type}: {len(preds)} rows in {time.perf_counter() - start:.2f} s, "
          f"statuses {[p.status for p in preds]}", flush=True)
    return pd.DataFrame(out)


def attempt(report: dict, part: str, fn, *args):
    """Run one part; a failure is printed and recorded, and the parts that do not need its result still run."""
    try:
        return fn(*args)
    except Exception:                          # noqa: BLE001  (one call of a rationed machine must report every part)
        report.setdefault("failures", {})[part] = traceback.format_exc()
        print(f"{part} FAILED:\n{report['failures'][part]}", flush=True)
        return None


def run(pack_dir: Path, out: Path, smoke: bool, parts: set[str], loop_steps: int) -> None:
    device = torch.device("cpu" if smoke else "cuda")
    if smoke:
        torch.set_num_threads(2)
    seed_everything(0)                         # the loop's settings from the start: TF32 on, deterministic algorithms
    work = Path("/tmp/bench_cuda")
    shutil.rmtree(work, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    report = {"environment": environment_stamp(), "smoke": smoke, "parts": sorted(parts)}
    print(json.dumps(report["environment"]), flush=True)
    backbone = random_backbone(pack_dir, work / "backbone", smoke)
    only = ("micro 16 x 1, bf16",)             # the OOM part sizes its ballast from it
    if "throughput" in parts:
        only = ("micro 16 x 1, bf16", "micro 16 x 1, fp32 (TF32)") if smoke else ()
    throughput = attempt(report, "throughput", part_throughput, backbone, pack_dir, device, 1 if smoke else 4, only)
    if "profile" in parts:
        report["profile"] = attempt(report, "profile", part_profile, backbone, pack_dir, device)
    report["loop"] = attempt(report, "loop", part_loop, pack_dir, backbone, work, device, smoke or "loop" not in parts,
                             loop_steps)
    if device.type == "cuda" and throughput is not None and "oom" in parts:
        report["oom"] = attempt(report, "oom", part_oom, pack_dir, backbone, work, throughput)
    decoding = attempt(report, "decoding", part_decoding, pack_dir, backbone, work / "longer/model", device,
                       4 if smoke else 16, 2 if smoke else 4) if "decoding" in parts else None
    for name, table, text_columns in (("throughput", throughput, 1), ("decoding", decoding, 2)):
        if table is not None:
            report[name] = table.to_dict("records")
            print("\n" + markdown_table(table, "l" * text_columns + "r" * (table.shape[1] - text_columns)))
    (out / "bench_cuda.json").write_text(json.dumps(report, indent=1, default=str))
    if report.get("failures"):
        sys.exit(f"failed: {sorted(report['failures'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", type=Path, help="write the files the GPU run reads into this folder")
    parser.add_argument("--run", type=Path, help="run the measurements on a folder made by --pack")
    parser.add_argument("--out", type=Path, default=Path("bench_cuda_out"), help="where bench_cuda.json goes")
    parser.add_argument("--smoke", action="store_true", help="a tiny random model on the CPU (checks the code path)")
    parser.add_argument("--loop-steps", type=int, default=96, help="steps of the loop part (the longer recipe: 480)")
    parser.add_argument("--parts", default="throughput,profile,loop,oom,decoding",
                        help="which parts to run (without `loop`, a 4-step loop still exports the bundle decoding loads)")
    args = parser.parse_args()
    if args.pack:
        pack(args.pack)
    if args.run:
        run(args.run, args.out, args.smoke, set(args.parts.split(",")), args.loop_steps)


if __name__ == "__main__":
    main()
