"""Decoding benchmark: the protocol's KV-off reference loop vs the certified exact fast path vs KV-on batched decoding
vs heads mode, on one model, one data file and one machine, in one run (docs/decoding.md).

    .venv/bin/python benchmarks/bench_decoding.py                       # fp32 and bf16, 32 rows, reference on 6
    .venv/bin/python benchmarks/bench_decoding.py --calibrate           # measure the certification bound instead

Every (dtype, mode) runs in a fresh interpreter and its peak resident memory is measured from the loaded model on; all of them use the same
rows, thread count and budget. The reference loop runs on the first --ref-rows rows only (it is slow); its
samples/s is what the speed-ups divide by, and agreement with it is measured on those rows. Heads mode needs a model
with heads: random ones (speed only) unless --bundle points at a trained bundle, which also gives the heads-vs-
generated agreement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from emoloom.core.tables import markdown_table  # noqa: E402  (after the path insert)

DECODE_MODES = ("reference", "exact", "cached")


# ------------------------------------------------------------------------------------------------ worker side

def _load(task):
    """(lm, tokenizer, EmoModel) in the task's dtype; heads stay fp32 (they read the fp32 pooled state)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emoloom.modeling.model import EmoModel, Heads, load_bundle

    dtype = getattr(torch, task["dtype"])
    if task["bundle"]:
        model, tokenizer, _ = load_bundle(task["bundle"], dtype=dtype)
        model.heads.float()
        return model.lm, tokenizer, model
    tokenizer = AutoTokenizer.from_pretrained(task["backbone"])
    lm = AutoModelForCausalLM.from_pretrained(task["backbone"], dtype=dtype).eval()
    torch.manual_seed(0)
    return lm, tokenizer, EmoModel(lm, Heads(lm.config.hidden_size)).eval()


def _reset_peak_rss() -> bool:
    """Linux: make the peak resident set (VmHWM) restart from the current one, so a mode's peak is its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_mib(field: str) -> float:
    """VmRSS / VmHWM from /proc/self/status, else the process-lifetime peak from getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.no_grad()
def _heads(model, tokenizer, prompts, batch_size, share_prefix):
    from emoloom.core.labels import LABELS
    from emoloom.evaluation.heads import heads_mode

    label_logits, vad = heads_mode(model, tokenizer, prompts, batch_size, share_prefix)
    out = []                                                # the heads' decision rule (model.heads_decisions)
    for logits, v in zip(label_logits, vad):
        p = torch.sigmoid(logits)
        chosen = [LABELS[k] for k in (p >= 0.5).nonzero().flatten().tolist()] or [LABELS[int(p.argmax())]]
        out.append({"labels": chosen, "vad": dict(zip("vad", v.tolist())), "logits": logits.tolist()})
    return out


def run_task(task) -> dict:
    torch.set_num_threads(task["threads"])
    from emoloom.core.contract import parse_output
    from emoloom.evaluation.calibration import measure_logit_gap
    from emoloom.evaluation.decoding import decode

    lm, tokenizer, model = _load(task)
    prompts = task["prompts"]
    with torch.no_grad():                                   # warm-up: first-call kernel set-up is not timed
        lm(input_ids=torch.tensor([prompts[0][:32]]), use_cache=False, logits_to_keep=1)
    _reset_peak_rss()
    base = _rss_mib("VmRSS")
    result = {"dtype": task["dtype"], "mode": task["mode"], "rows": len(prompts)}
    start = time.perf_counter()
    if task["mode"] == "calibrate":
        result["gap"] = measure_logit_gap(lm, tokenizer, prompts, task["max_new_tokens"], task["batch_size"],
                                          positions=task["positions"])
    elif task["mode"] in ("heads", "heads_plain"):
        result["heads"] = _heads(model, tokenizer, prompts, task["batch_size"], task["mode"] == "heads")
        result["tokens_in"] = sum(map(len, prompts))
    else:
        gens, stats = decode(lm, tokenizer, prompts, task["max_new_tokens"], mode=task["mode"],
                             batch_size=task["batch_size"])
        result["tokens"] = [g.token_ids for g in gens]
        result["stops"] = [g.stop for g in gens]
        result["parsed"] = [{"ok": p.ok, "labels": p.labels, "vad": p.vad} for p in map(parse_output,
                                                                                          (g.text for g in gens))]
        result["stats"] = stats.as_dict()
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_mib"], result["loaded_rss_mib"] = _rss_mib("VmHWM"), base
    return result


def in_fresh_process(task) -> dict:
    """Run one task in a new interpreter (its own peak memory, no state carried over) and return its result."""
    proc = subprocess.run([sys.executable, __file__, "--worker"], input=json.dumps(task), capture_output=True,
                          text=True)
    if proc.returncode:
        raise RuntimeError(f"{task['dtype']} {task['mode']} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ driver side

def load_prompts(args):
    from transformers import AutoTokenizer

    from emoloom.core.contract import context_turns, encode_prompt
    from emoloom.modeling.model import backbone_dir

    backbone = args.backbone
    if args.bundle:            # bundle.json holds its backbone relative to the bundle
        backbone = str(backbone_dir(Path(args.bundle), json.loads((Path(args.bundle) / "bundle.json").read_text())))
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    records = [json.loads(line) for line in open(args.data, encoding="utf-8") if line.strip()]
    records = random.Random(args.seed).sample(records, min(args.rows, len(records)))
    return [encode_prompt(tokenizer, r["text"], context_turns(r)) for r in records], backbone


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _same(a, b) -> int:
    return sum(x == y for x, y in zip(a, b))


def _agreement(a, b) -> str:
    """'k/n rows identical, t/m tokens' (tokens compared position-wise over the longer sequence)."""
    rows = _same(a, b)
    tokens = sum(_same(x, y) for x, y in zip(a, b))
    total = sum(max(len(x), len(y)) for x, y in zip(a, b))
    return f"{rows}/{len(a)} rows, {tokens}/{total} tokens"


MODES = (*DECODE_MODES, "heads", "heads_plain")
LABEL = {"reference": "reference KV-off loop (batch 1)", "exact": "exact fast path (certified)",
         "cached": "KV-on batched", "heads": "heads mode (shared prefix)",
         "heads_plain": "heads mode (plain forward per prompt)"}


def report(dtype, res, bundle) -> list[str]:
    ref = res["reference"]
    n_ref = ref["rows"]
    ref_sps = n_ref / ref["seconds"]
    rows = []
    for mode in MODES:
        r = res[mode]
        sps = r["rows"] / r["seconds"]
        tps = f"{r['stats']['steps'] / r['seconds']:.2f} new" if "stats" in r else \
            f"{r['tokens_in'] / r['seconds']:.0f} prompt"
        rows.append({"mode": LABEL[mode], "rows": r["rows"], "samples/s": f"{sps:.4f}", "tokens/s": tps,
                     "speed-up vs reference": f"{sps / ref_sps:.1f}x",
                     "peak RSS MiB (RSS at start)": f"{r['peak_rss_mib']:.0f} ({r['loaded_rss_mib']:.0f})"})
    lines = [f"\n### {dtype}\n", markdown_table(pd.DataFrame(rows), "lrrrrr").rstrip("\n")]
    s = res["exact"]["stats"]
    n_exact = res["exact"]["rows"]
    lines += ["",
              f"- exact vs reference (the {n_ref} reference rows): "
              f"{_agreement(res['exact']['tokens'][:n_ref], ref['tokens'])}",
              f"- KV-on batched vs reference (the {n_ref} reference rows): "
              f"{_agreement(res['cached']['tokens'][:n_ref], ref['tokens'])}",
              f"- exact vs KV-on batched ({n_exact} rows): "
              f"{_agreement(res['exact']['tokens'], res['cached']['tokens'][:n_exact])}",
              f"- exact certification: bound {s['bound']:g}; {s['certified_rows']}/{s['rows']} rows without a "
              f"reference step; {s['certified_tokens']}/{s['steps']} steps certified, {s['reference_steps']} settled "
              f"by the reference step, {s['mismatches']} mismatches, {s['rounds']} rounds, min certified margin "
              f"{s['min_certified_margin'] if s['min_certified_margin'] is None else round(s['min_certified_margin'], 5)}"]
    stops = res["exact"]["stops"]
    lines.append("- stops (exact): " + ", ".join(f"{k} {stops.count(k)}" for k in ("json", "eos", "budget")) +
                 f"; parse OK {sum(p['ok'] for p in res['exact']['parsed'])}/{len(stops)}")
    fast, plain = res["heads"]["heads"], res["heads_plain"]["heads"]
    dl = max(abs(a - b) for x, y in zip(fast, plain) for a, b in zip(x["logits"], y["logits"]))
    dv = max(abs(x["vad"][k] - y["vad"][k]) for x, y in zip(fast, plain) for k in "vad")
    same = sum(sorted(x["labels"]) == sorted(y["labels"]) for x, y in zip(fast, plain))
    lines.append(f"- heads shared-prefix vs plain forward: label sets equal {same}/{len(fast)}, max |label logit "
                 f"diff| {dl:.3g}, max |VAD diff| {dv:.3g}")
    if bundle:
        gen = res["exact"]["parsed"]
        ok = [i for i, p in enumerate(gen) if p["ok"]]
        same = sum(sorted(gen[i]["labels"]) == sorted(fast[i]["labels"]) for i in ok)
        mae = statistics.fmean(abs(gen[i]["vad"][k] - fast[i]["vad"][k]) for i in ok for k in "vad") if ok else None
        lines.append(f"- heads vs generated (exact; rows whose output parses: {len(ok)}): label sets equal "
                     f"{same}/{len(ok)}, VAD mean |diff| {mae if mae is None else round(mae, 4)}")
    else:
        lines.append("- heads vs generated agreement: n/a (random heads; pass --bundle for a trained model)")
    return lines


def calibrate(args, prompts, backbone):
    from emoloom.evaluation.decoding import DEFAULT_BOUNDS

    for dtype in args.dtypes:
        task = {"dtype": dtype, "mode": "calibrate", "threads": args.threads, "backbone": backbone,
                "bundle": args.bundle, "prompts": prompts, "max_new_tokens": args.max_new_tokens,
                "batch_size": args.batch_size, "positions": args.positions}
        gap = in_fresh_process(task)["gap"]
        bound = DEFAULT_BOUNDS.get(getattr(torch, dtype))
        margins = torch.tensor(gap["margins"])
        q = torch.quantile(torch.tensor(gap["spreads"]), torch.tensor([0.5, 0.99])).tolist()
        print(f"{dtype}: {gap['positions']} positions on {len(prompts)} rows, {args.threads} threads: "
              f"margin shift (max-min of reference - cached-step logits) median {q[0]:.3g}, p99 {q[1]:.3g}, "
              f"max {gap['max_spread']:.3g}; max |logit diff| {gap['max_abs_diff']:.3g}; "
              f"steps with margin <= bound {bound}: {int((margins <= bound).sum())}/{gap['steps']}; "
              f"<= max shift: {int((margins <= gap['max_spread']).sum())}")
        if args.json:
            Path(args.json).with_suffix(f".{dtype}.calib.json").write_text(json.dumps(gap))


def main(argv=None):
    if (argv if argv is not None else sys.argv[1:]) == ["--worker"]:
        print(json.dumps(run_task(json.loads(sys.stdin.read()))))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(REPO / "data/mix/20_80/dev.jsonl"))
    p.add_argument("--backbone", default=str(REPO / "data/backbone"))
    p.add_argument("--bundle", default=None, help="a trained model bundle (its backbone and heads are used)")
    p.add_argument("--rows", type=int, default=32)
    p.add_argument("--ref-rows", type=int, default=6)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--full-exact", action="store_true",
                   help="run the exact path on every row in bf16 too (by default bf16 exact runs on the reference "
                        "rows only: most bf16 steps fall back to the reference step, so it is reference-slow)")
    p.add_argument("--calibrate", action="store_true", help="measure the certification bound instead")
    p.add_argument("--positions", type=int, default=4, help="reference steps per row when calibrating")
    p.add_argument("--json", default=None, help="also write the raw results here")
    args = p.parse_args(argv)
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    prompts, backbone = load_prompts(args)
    print(f"machine: {cpu_name()} ({os.cpu_count()} CPUs), {args.threads} torch threads, "
          f"torch {torch.__version__}; model {backbone}; {len(prompts)} rows of {args.data} (seed {args.seed}), "
          f"prompt tokens mean {statistics.fmean(map(len, prompts)):.0f}; max_new_tokens {args.max_new_tokens}, "
          f"batch {args.batch_size}")
    if args.calibrate:
        return calibrate(args, prompts, backbone)
    raw = {}
    for dtype in args.dtypes:
        res = {}
        for mode in MODES:
            rows = prompts
            if mode == "reference" or (mode == "exact" and dtype != "float32" and not args.full_exact):
                rows = prompts[:args.ref_rows]
            task = {"dtype": dtype, "mode": mode, "threads": args.threads, "backbone": backbone,
                    "bundle": args.bundle, "prompts": rows, "max_new_tokens": args.max_new_tokens,
                    "batch_size": args.batch_size}
            res[mode] = in_fresh_process(task)
            print(f"  {dtype} {mode}: {res[mode]['rows']} rows in {res[mode]['seconds']:.1f} s", flush=True)
        raw[dtype] = res
        print("\n".join(report(dtype, res, args.bundle)), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(raw))


if __name__ == "__main__":
    main()
