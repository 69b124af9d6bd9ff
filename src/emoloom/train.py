"""Protocol-true SFT (the paper's Algorithm 1) inside the budget-aware loop (Algorithm 2), as one readable loop.

Per optimizer step: for each micro-batch, the A/B sampler picks a source (entropy-aware, cooling temperature); the
model runs once over [prompt | answer] (KV cache off, as at evaluation) and every loss term is computed:

    L = l_lm L_lm + l_cls L_cls + l_reg L_reg + l_vad L_vad + l_app L_app + l_flip L_flip

Every `pass_steps` steps the dev rows are decoded and scored with S = MacroF1 + beta (1 - RMSE) + gamma ParseOK; the
best checkpoint is kept, training stops early when the budget cannot be beaten, and the source weights are
re-balanced by entropy. The whole state is checkpointed atomically every `checkpoint_every` steps, so a killed run
resumes where it stopped and ends bit-identical to an uninterrupted one (on CPU). An out-of-memory error lowers
max_len by 128 and doubles grad_accum (halving the micro-batch), then retries the step (docs/training.md).
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from emoloom import losses
from emoloom.appraisal import AppraisalVerifier, prototype_targets
from emoloom.contract import PROMPT_VERSION, parse_output
from emoloom.decoding import greedy_decode
from emoloom.flip import flip_text
from emoloom.io import atomic_dir, atomic_path, read_json, sha1_file, write_json, write_text
from emoloom.labels import LABELS
from emoloom.metrics import composite_s, evaluate
from emoloom.evaluate import as_result
from emoloom.model import EmoModel, Heads, LoraSettings, add_lora, heads_decisions, prompt_features
from emoloom.sampler import MixtureSampler
from emoloom.sft_data import Example, SourceStream, collate, encode
from emoloom.stamp import config_hash, environment_stamp, git_commit

LOSS_TERMS = ("lm", "cls", "reg", "vad", "app", "flip")


@dataclass
class LossWeights:
    """The lambdas of the objective (params.yaml `loss.`)."""
    lambda_lm: float = 1.0
    lambda_cls: float = 1.0
    lambda_reg: float = 1.0
    lambda_vad: float = 1.0
    lambda_app: float = 0.5
    lambda_flip: float = 0.4

    def __post_init__(self) -> None:
        bad = {k: v for k, v in asdict(self).items() if not (isinstance(v, (int, float)) and v >= 0)}
        if bad:
            raise ValueError(f"loss weights must be numbers >= 0, got {bad}")


@dataclass
class SFTConfig:
    seed: int = field(default=11, metadata={"help": "seed for data order, sampler, dropout and init"})
    max_steps: int = field(default=100, metadata={"help": "optimizer steps T_max (cosine schedule, cooling)"})
    micro_batch: int = field(default=4, metadata={"help": "examples per forward pass"})
    grad_accum: int = field(default=2, metadata={"help": "micro-batches per optimizer step"})
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate of the LM parameters (LoRA or full)"})
    head_lr: float = field(default=1e-2, metadata={"help": "peak learning rate of the label and VAD heads"})
    head_init_rows: int = field(default=128, metadata={"help": "training prompts whose frozen features set the "
                                                               "heads' standardisation and prior biases"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay"})
    betas: tuple[float, float] = field(default=(0.9, 0.95), metadata={"help": "AdamW betas"})
    warmup_ratio: float = field(default=0.03, metadata={"help": "share of steps with linear warmup before cosine"})
    clip: float = field(default=1.0, metadata={"help": "gradient norm clip"})
    max_len: int = field(default=384, metadata={"help": "longest prompt+answer in tokens; longer examples skipped"})
    min_max_len: int = field(default=256, metadata={"help": "OOM self-healing never lowers max_len below this"})
    full_finetune: bool = field(default=False, metadata={"help": "train every LM weight instead of LoRA"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in backward"})
    precision: str = field(default="auto", metadata={"help": "auto | fp32 | bf16 (auto: bf16 on CUDA and on CPUs "
                                                             "with avx512_bf16, else fp32)"})
    ema_decay: float = field(default=0.9, metadata={"help": "EMA of trainable weights for eval/export; 0 = off"})
    t0: float = field(default=1.0, metadata={"help": "sampler temperature at step 0"})
    t1: float = field(default=0.1, metadata={"help": "sampler temperature at the last step"})
    conf_alpha: float = field(default=0.9, metadata={"help": "EMA factor of the sampler's confidence proxy"})
    flip_prob: float = field(default=0.5, metadata={"help": "chance that an example brings its Valence-Flip twin"})
    max_train_examples: int = field(default=4000, metadata={"help": "examples tokenised per source (file order "
                                                                    "is already a seeded shuffle)"})
    pass_steps: int = field(default=50, metadata={"help": "steps per pass between dev evaluations (Algorithm 2)"})
    eval_rows: int = field(default=32, metadata={"help": "dev rows decoded per evaluation"})
    eval_batch: int = field(default=16, metadata={"help": "rows decoded together"})
    max_new_tokens: int = field(default=64, metadata={"help": "decoding budget per answer"})
    eval_use_cache: bool = field(default=True, metadata={"help": "cached greedy decoding for the in-training dev "
                                                                 "score (identical tokens in fp32)"})
    budget_min: float = field(default=30.0, metadata={"help": "training time budget in minutes (Algorithm 2)"})
    score_window: int = field(default=2, metadata={"help": "evaluations averaged into the sliding score S-bar"})
    eta_window: int = field(default=3, metadata={"help": "passes whose median duration gives the ETA"})
    delta: float = field(default=0.0, metadata={"help": "improvement margin of the early-stop rule"})
    beta: float = field(default=1.0, metadata={"help": "weight of 1-RMSE in S"})
    gamma: float = field(default=1.0, metadata={"help": "weight of ParseOK in S"})
    rebalance: bool = field(default=True, metadata={"help": "re-weight sources by entropy after each pass"})
    checkpoint_every: int = field(default=10, metadata={"help": "steps between resumable checkpoints"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda"})


@dataclass
class RunPaths:
    train: Path                      # mixture train JSONL
    dev: Path                        # mixture dev JSONL
    backbone: Path                   # converted backbone directory
    verifier: Path                   # verifier.pt
    antonyms: Path                   # antonym pairs TSV
    out: Path                        # run directory: checkpoint/ (resumable) and model/ (the bundle)
    plots: Path                      # train_log.csv, dev_log.csv, decisions.jsonl


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda requested but no CUDA device is available")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA and on CPUs that have bf16 instructions; None = fp32."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16
    cpu_bf16 = torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX") and _has_cpu_flag("avx512_bf16")
    if precision == "bf16" and not cpu_bf16:
        raise ValueError("precision: bf16 asked for, but this CPU has no bf16 instructions")
    return torch.bfloat16 if cpu_bf16 else None


def _has_cpu_flag(flag: str) -> bool:
    try:
        return flag in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.cuda.is_available():
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


def cosine_lr(step: int, total: int, warmup_ratio: float) -> float:
    """Multiplier of the peak LR: linear warmup over warmup_ratio of the steps, then cosine to 0."""
    warmup = max(1, math.ceil(warmup_ratio * total))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# ------------------------------------------------------------------------------------------------ building blocks

def build_model(backbone: Path, cfg: SFTConfig, lora: LoraSettings, device: torch.device) -> EmoModel:
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(backbone, dtype=torch.float32)
    if cfg.full_finetune:
        lm.requires_grad_(True)
    else:
        lm = add_lora(lm, lora)
    if cfg.gradient_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return EmoModel(lm, Heads(lm.config.hidden_size)).to(device)


def init_heads(model: EmoModel, examples: list[Example], cfg: SFTConfig, pad_id: int) -> None:
    """Standardise the heads' input and set their prior biases from a seeded sample of training prompts."""
    sample = random.Random(cfg.seed).sample(examples, min(cfg.head_init_rows, len(examples)))
    model.eval()
    features = prompt_features(model.lm, [ex.prompt_ids for ex in sample], pad_id, cfg.eval_batch)
    model.heads.init_from_data(features.to(model.heads.feature_mean.device), torch.tensor([ex.labels for ex in sample]),
                               torch.tensor([ex.vad for ex in sample]))


def build_examples(records: list[dict], tokenizer, cfg: SFTConfig, antonyms: dict[str, str],
                   rng: random.Random) -> list[Example]:
    """Encode records; a share flip_prob of those with a polar antonym bring their flipped twin."""
    examples = []
    for rec in records:
        flipped = flip_text(rec["text"], antonyms) if rng.random() < cfg.flip_prob else None
        ex = encode(rec, tokenizer, flipped)
        ex.text_ids = tokenizer(rec["text"], add_special_tokens=False).input_ids
        ex.appraisal, ex.appraisal_mask = (list(map(float, t)) for t in prototype_targets(rec["labels"]))
        examples.append(ex)
    return examples


def step_losses(model: EmoModel, batch, verifier: AppraisalVerifier, token_vad: torch.Tensor,
                token_lexical: torch.Tensor) -> tuple[dict[str, torch.Tensor], float]:
    """Every loss term for one micro-batch, and the mean answer-token entropy (the sampler's H_t)."""
    logits, label_logits, vad = model(batch.input_ids, batch.attention_mask, batch.prompt_mask,
                                      logits_to_keep=batch.answer_len + 1)
    logits = logits[:, :-1].float()                            # position t predicts answer token t
    probs = logits.softmax(-1)
    terms = {"lm": losses.lm_loss(logits, batch.answer_targets),
             "cls": losses.cls_loss(label_logits, batch.labels),
             "reg": losses.reg_loss(vad, batch.vad)}
    v_text, mass = losses.expected_text_vad(logits, batch.rationale_mask, token_vad, token_lexical)
    terms["vad"] = losses.vad_loss(v_text, batch.vad, mass)
    counts_a, n_a = verifier.counts_from_probs(probs, batch.answer_mask)
    counts_x, n_x = verifier.counts_from_ids(batch.text_ids, batch.text_mask)
    terms["app"] = losses.app_loss(verifier(counts_x + counts_a, n_x + n_a), batch.appraisal, batch.appraisal_mask)
    if batch.flip_ids is not None:
        _, flipped_vad = model.predict_heads(batch.flip_ids, batch.flip_mask)
        terms["flip"] = losses.flip_loss(vad[batch.flip_rows, 0], flipped_vad[:, 0])
    else:
        terms["flip"] = vad.sum() * 0.0
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
    mean_entropy = float((entropy.detach() * batch.answer_mask).sum() / batch.answer_mask.sum())
    return terms, mean_entropy


@torch.no_grad()
def dev_evaluation(model: EmoModel, tokenizer, dev: list[dict], dev_examples: list[Example], cfg: SFTConfig,
                   device: torch.device) -> dict:
    """Decode the dev rows and score them (S of Algorithm 2), plus the heads' macro-F1 and RMSE."""
    model.eval()
    results, heads_pred = [], []
    for i in range(0, len(dev_examples), cfg.eval_batch):
        chunk = dev_examples[i:i + cfg.eval_batch]
        gens = greedy_decode(model.lm, tokenizer, [e.prompt_ids for e in chunk], cfg.max_new_tokens,
                             use_cache=cfg.eval_use_cache)
        results += [parse_output(g.text) for g in gens]
        batch = collate(chunk, tokenizer.pad_token_id).to(device)
        _, label_logits, vad = model(batch.input_ids, batch.attention_mask, batch.prompt_mask)
        heads_pred += [as_result(h, True, None) for h in heads_decisions(label_logits, vad)]
    model.train()
    scored = evaluate(dev, results)
    heads = evaluate(dev, heads_pred)
    paper = scored["paper"]
    f1, rmse = paper["labels"]["macro_f1"] or 0.0, paper["vad"]["rmse"] if paper["vad"]["rmse"] is not None else 1.0
    return {"parse_ok": scored["parse_ok"], "macro_f1": f1, "rmse": rmse,
            "S": composite_s(f1, rmse, scored["parse_ok"], beta=cfg.beta, gamma=cfg.gamma),
            "strict_macro_f1": scored["strict"]["labels"]["macro_f1"],
            "heads_macro_f1": heads["paper"]["labels"]["macro_f1"], "heads_rmse": heads["paper"]["vad"]["rmse"],
            "failures": scored["failures"]}


# ------------------------------------------------------------------------------------------------ state helpers

def swap_weights(model: EmoModel, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Load `weights` into the trainable parameters; return what was there."""
    params = dict(model.named_parameters())
    backup = {name: params[name].detach().clone() for name in weights}
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    return backup


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def write_logs(plots: Path, history: dict) -> None:
    """Train/dev logs as CSV (DVC plots data) and the decision log as JSON lines."""
    for name in ("train", "dev"):
        rows = history[name]
        if rows:
            cols = list(rows[0])
            write_text(plots / f"{name}_log.csv", "\n".join([",".join(cols)] + [
                ",".join(_cell(r.get(c)) for c in cols) for r in rows]) + "\n")
    write_text(plots / "decisions.jsonl", "".join(json.dumps(d) + "\n" for d in history["decisions"]))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


# ------------------------------------------------------------------------------------------------ the loop

def train(cfg: SFTConfig, weights: LossWeights, lora: LoraSettings, paths: RunPaths, mixture: dict[str, float],
          lexicon, run_name: str) -> dict:
    """Train one mixture x seed; return the run's metrics. Resumes from paths.out/checkpoint.pt when it matches."""
    from transformers import AutoTokenizer

    from emoloom.flip import load_antonyms
    from emoloom.io import read_jsonl
    from emoloom.token_lexicon import vocab_vad_table

    # -- everything that can be wrong is checked before any heavy compute
    for name in ("train", "dev", "backbone", "verifier", "antonyms"):
        if not getattr(paths, name).exists():
            raise FileNotFoundError(f"{run_name}: {name} input {getattr(paths, name)} is missing (run its stage first)")
    device = resolve_device(cfg.device)
    amp = autocast_dtype(cfg.precision, device)
    tokenizer = AutoTokenizer.from_pretrained(paths.backbone)
    verifier = AppraisalVerifier.load(paths.verifier, tokenizer).to(device).requires_grad_(False)
    prompt_floor = len(encode({"id": "x", "source": "x", "text": "", "labels": [], "vad": {"v": 0, "a": 0, "d": 0}},
                              tokenizer))
    if cfg.max_len < prompt_floor:
        raise ValueError(f"max_len={cfg.max_len} is below the prompt + empty answer length ({prompt_floor} tokens)")
    state_hash = config_hash({"cfg": asdict(cfg), "loss": asdict(weights), "lora": asdict(lora), "mix": mixture,
                              "train": sha1_file(paths.train), "backbone": tokenizer.name_or_path})

    seed_everything(cfg.seed)
    rng = random.Random(cfg.seed)
    antonyms = load_antonyms(paths.antonyms, lexicon)
    by_source: dict[str, list[dict]] = {}
    for rec in read_jsonl(paths.train):
        if len(by_source.setdefault(rec["source"], [])) < cfg.max_train_examples:
            by_source[rec["source"]].append(rec)
    missing = [s for s, w in mixture.items() if w > 0 and s not in by_source]
    if missing:
        raise ValueError(f"{run_name}: mixture sources {missing} have no rows in {paths.train}")
    examples = {s: build_examples(recs, tokenizer, cfg, antonyms, rng) for s, recs in by_source.items()}
    dev = list(read_jsonl(paths.dev))[:cfg.eval_rows]
    dev_examples = build_examples(dev, tokenizer, SFTConfig(flip_prob=0.0), antonyms, rng)
    token_vad, token_lexical = (t.to(device) for t in vocab_vad_table(tokenizer, lexicon, len(tokenizer)))

    model = build_model(paths.backbone, cfg, lora, device)
    init_heads(model, [ex for s in sorted(examples) for ex in examples[s]], cfg, tokenizer.pad_token_id or 0)
    model.train()
    heads = [p for p in model.heads.parameters()]
    lm_params = [p for p in model.lm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": lm_params, "lr": cfg.lr, "peak": cfg.lr},
                                   {"params": heads, "lr": cfg.head_lr, "peak": cfg.head_lr}],
                                  betas=cfg.betas, weight_decay=cfg.weight_decay)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    sampler = MixtureSampler(dict(mixture), cfg.t0, cfg.t1, cfg.max_steps, cfg.conf_alpha, seed=cfg.seed)
    streams = {s: SourceStream(examples[s], cfg.seed, s) for s in mixture if mixture[s] > 0}
    state = {"step": 0, "elapsed": 0.0, "heal": {"max_len": cfg.max_len, "grad_accum": cfg.grad_accum,
                                                  "micro_batch": cfg.micro_batch},
             "ema": {n: p.detach().clone() for n, p in trainable.items()} if cfg.ema_decay > 0 else None,
             "best": None, "scores": [], "pass_times": [], "pass_entropy": {}, "stop": None,
             "history": {"train": [], "dev": [], "decisions": []}}

    ckpt = paths.out / "checkpoint.pt"
    if ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        if saved["config_hash"] == state_hash:
            swap_weights(model, saved["weights"])
            optimizer.load_state_dict(saved["optimizer"])
            sampler.load_state_dict(saved["sampler"])
            for s, st in saved["streams"].items():
                streams[s].load_state_dict(st)
            set_rng_state(saved["rng"])
            state = saved["state"]
            state["history"]["decisions"].append({"step": state["step"], "event": "resumed"})
            print(f"{run_name}: resuming from step {state['step']}")
        else:
            state["history"]["decisions"].append({"step": 0, "event": "checkpoint_discarded",
                                                  "why": "config, data or code changed"})

    def checkpoint() -> None:
        save_checkpoint(ckpt, {"config_hash": state_hash, "weights": {n: p.detach().clone() for n, p in
                                                                      trainable.items()},
                               "optimizer": optimizer.state_dict(), "sampler": sampler.state_dict(),
                               "streams": {s: st.state_dict() for s, st in streams.items()}, "rng": rng_state(),
                               "state": state})
        write_logs(paths.plots, state["history"])

    def eval_weights() -> dict[str, torch.Tensor]:
        return state["ema"] if state["ema"] is not None else {n: p.detach().clone() for n, p in trainable.items()}

    bar = tqdm(total=cfg.max_steps, initial=state["step"], desc=f"sft {run_name}", unit="step")
    pass_start = time.perf_counter()
    while state["step"] < cfg.max_steps and state["stop"] is None:
        step, heal = state["step"], state["heal"]
        snapshot = (sampler.state_dict(), {s: st.state_dict() for s, st in streams.items()}, rng_state())
        started = time.perf_counter()
        try:
            totals, sources, entropies, n_tokens = {t: 0.0 for t in LOSS_TERMS}, [], [], 0
            for _ in range(heal["grad_accum"]):
                source = sampler.draw(step)
                batch = collate(streams[source].take(heal["micro_batch"], heal["max_len"]),
                                tokenizer.pad_token_id).to(device)
                with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
                    terms, entropy = step_losses(model, batch, verifier, token_vad, token_lexical)
                loss = sum(getattr(weights, f"lambda_{t}") * terms[t] for t in LOSS_TERMS)
                (loss / heal["grad_accum"]).backward()
                sampler.update(source, entropy)
                state["pass_entropy"].setdefault(source, []).append(entropy)
                for t in LOSS_TERMS:
                    totals[t] += terms[t].item() / heal["grad_accum"]
                sources.append(source)
                entropies.append(entropy)
                n_tokens += batch.n_tokens
        except RuntimeError as err:
            if not is_oom(err):
                raise
            optimizer.zero_grad(set_to_none=True)
            sampler.load_state_dict(snapshot[0])
            for s, st in snapshot[1].items():
                streams[s].load_state_dict(st)
            set_rng_state(snapshot[2])
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if heal["max_len"] - 128 < cfg.min_max_len:
                raise RuntimeError(f"{run_name}: out of memory at max_len={heal['max_len']}, and self-healing may not "
                                   f"go below min_max_len={cfg.min_max_len}") from err
            heal.update(max_len=heal["max_len"] - 128, grad_accum=heal["grad_accum"] * 2,
                        micro_batch=max(1, heal["micro_batch"] // 2))
            state["history"]["decisions"].append({"step": step, "event": "oom_self_heal", **heal})
            continue

        scale = cosine_lr(step, cfg.max_steps, cfg.warmup_ratio)
        for group in optimizer.param_groups:
            group["lr"] = group["peak"] * scale
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable.values(), cfg.clip))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if state["ema"] is not None:
            with torch.no_grad():
                for n, p in trainable.items():
                    state["ema"][n].mul_(cfg.ema_decay).add_(p.detach(), alpha=1 - cfg.ema_decay)
        seconds = time.perf_counter() - started
        state["elapsed"] += seconds
        state["step"] = step = step + 1
        total = sum(getattr(weights, f"lambda_{t}") * totals[t] for t in LOSS_TERMS)
        state["history"]["train"].append({
            "step": step, "loss": total, **{f"loss_{t}": totals[t] for t in LOSS_TERMS},
            "lr": optimizer.param_groups[0]["lr"], "grad_norm": grad_norm, "temperature": sampler.temperature(step - 1),
            "p_A": sampler.probabilities(step - 1).get("goemotions", 0.0), "source": "|".join(sources),
            "n_goemotions": sources.count("goemotions"), "n_empathetic": sources.count("empathetic"),
            "entropy": sum(entropies) / len(entropies), "tokens": n_tokens, "seconds": seconds,
            "max_len": heal["max_len"], "grad_accum": heal["grad_accum"]})
        bar.update(1)
        bar.set_postfix(loss=f"{total:.3f}", lm=f"{totals['lm']:.3f}")

        if step % cfg.pass_steps == 0 or step == cfg.max_steps:
            state["pass_times"].append(time.perf_counter() - pass_start)
            end_of_pass(state, cfg, model, tokenizer, dev, dev_examples, device, amp, sampler, eval_weights,
                        swap_weights)
            pass_start = time.perf_counter()
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or state["stop"]:
            checkpoint()
    bar.close()
    return finish(state, cfg, weights, lora, model, trainable, paths, run_name, mixture, tokenizer, state_hash,
                  eval_weights)


def end_of_pass(state, cfg, model, tokenizer, dev, dev_examples, device, amp, sampler, eval_weights, swap) -> None:
    """Algorithm 2, lines 4-12: budget guard, dev score, keep the best, budget-aware early stop, re-balance."""
    step, decisions = state["step"], state["history"]["decisions"]
    budget_s = cfg.budget_min * 60
    if state["elapsed"] >= budget_s:
        state["stop"] = "budget"
        decisions.append({"step": step, "event": "stop", "why": "budget spent", "elapsed_s": round(state["elapsed"])})
        return
    backup = swap(model, eval_weights())
    with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
        ev = dev_evaluation(model, tokenizer, dev, dev_examples, cfg, device)
    swap(model, backup)
    state["scores"].append(ev["S"])
    s_bar = statistics.fmean(state["scores"][-cfg.score_window:])
    state["history"]["dev"].append({"step": step, "S_bar": s_bar, **{k: v for k, v in ev.items() if k != "failures"},
                                    "top_failure": next(iter(ev["failures"]), "")})
    remaining_steps = cfg.max_steps - step
    eta = statistics.median(state["pass_times"][-cfg.eta_window:]) * remaining_steps / cfg.pass_steps
    best = state["best"]
    if best is None or s_bar > best["S"]:
        state["best"] = {"S": ev["S"], "S_bar": s_bar, "step": step, "eval": ev,
                         "weights": {n: w.clone() for n, w in eval_weights().items()}}
        decisions.append({"step": step, "event": "new_best", "S": ev["S"], "S_bar": s_bar})
    elif s_bar < best["S"] + cfg.delta and eta > budget_s - state["elapsed"] and remaining_steps > 0:
        state["stop"] = "early"
        decisions.append({"step": step, "event": "stop", "why": "no improvement and the ETA exceeds the budget",
                          "S_bar": s_bar, "best_S": best["S"], "eta_s": round(eta)})
    else:
        decisions.append({"step": step, "event": "keep_best", "S_bar": s_bar, "best_S": best["S"]})
    if cfg.rebalance and state["pass_entropy"]:
        mean_h = {s: statistics.fmean(v) for s, v in state["pass_entropy"].items()}
        sampler.rebalance(mean_h)
        decisions.append({"step": step, "event": "rebalance", "entropy": mean_h, "weights": dict(sampler.weights)})
    state["pass_entropy"] = {}


def finish(state, cfg, weights, lora, model, trainable, paths, run_name, mixture, tokenizer, state_hash,
           eval_weights) -> dict:
    """Export the bundle (best weights, else the last evaluated ones) and return the run's metrics."""
    chosen = {**(state["best"]["weights"] if state["best"] else eval_weights()),
              **{f"heads.{n}": b.detach().cpu() for n, b in model.heads.named_buffers()}}
    bundle = paths.out / "model"
    with atomic_dir(bundle) as tmp:
        save_file({n: t.contiguous() for n, t in sorted(chosen.items())}, str(tmp / "trainable.safetensors"))
        weights_sha1 = sha1_file(tmp / "trainable.safetensors")
        write_json(tmp / "bundle.json", {
            "run": run_name, "mixture": mixture, "prompt_version": PROMPT_VERSION, "labels": list(LABELS),
            "backbone": str(paths.backbone), "backbone_info": _read_json_or_none(paths.backbone / "backbone.json"),
            "tokenizer_sha1": sha1_file(paths.backbone / "tokenizer.json"), "full_finetune": cfg.full_finetune,
            "lora": asdict(lora), "config": asdict(cfg), "loss": asdict(weights), "config_hash": state_hash,
            "weights_sha1": weights_sha1, "selected_step": state["best"]["step"] if state["best"] else state["step"],
            "git_commit": git_commit(), "environment": environment_stamp()})
    last = state["history"]["train"][-cfg.pass_steps:]
    final_losses = {t: statistics.fmean(r[f"loss_{t}"] for r in last) for t in LOSS_TERMS} if last else {}
    best = state["best"]
    metrics = {"run": run_name, "steps": state["step"], "stop": state["stop"] or "max_steps",
               "weights_sha1": weights_sha1, "selected_step": best["step"] if best else None,
               "final_train_loss": {t: round(v, 4) for t, v in final_losses.items()},
               "dev": {k: v for k, v in (best["eval"] if best else {}).items()},
               "oom_heals": sum(d["event"] == "oom_self_heal" for d in state["history"]["decisions"])}
    tokens = sum(r["tokens"] for r in state["history"]["train"])
    timing = {"train_seconds": round(state["elapsed"], 1), "tokens": tokens,
              "tokens_per_s": round(tokens / max(state["elapsed"], 1e-9), 1)}
    write_logs(paths.plots, state["history"])
    return {"metrics": metrics, "timing": timing}


def _read_json_or_none(path: Path):
    return read_json(path) if path.exists() else None
