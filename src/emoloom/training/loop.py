"""Protocol-true SFT (the paper's Algorithm 1) inside the budget-aware loop (Algorithm 2), read top to bottom in `train`.

Per optimizer step: for each micro-batch, the A/B sampler picks a source (entropy-aware, cooling temperature), and
every active loss term is computed on it (emoloom.training.objective):

    L = l_lm L_lm + l_cls L_cls + l_reg L_reg + l_vad L_vad + l_app L_app + l_flip L_flip     (LossWeights.combine)

Every `pass_steps` steps the dev rows are decoded and scored with S = MacroF1 + beta (1 - RMSE) + gamma ParseOK; the
best checkpoint is kept, training stops early when the budget cannot be beaten, and the source weights are
re-balanced by entropy. The whole state is checkpointed atomically every `checkpoint_every` steps, so a killed run
resumes where it stopped and ends bit-identical to an uninterrupted one (on CPU). An out-of-memory error lowers
max_len by 128 and doubles grad_accum (halving the micro-batch), then retries the step (docs/training.md).
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from emoloom.core.device import autocast_dtype, resolve_device, seed_everything
from emoloom.core.io import sha1_file
from emoloom.core.stamp import config_hash
from emoloom.modeling.model import EmoModel, LoraSettings, check_heads_layer
from emoloom.modeling.prefix_kv import frozen_depth
from emoloom.modeling.verifier import AppraisalVerifier
from emoloom.training.config import LossWeights, RunPaths, SFTConfig
from emoloom.training.dev_eval import dev_evaluation
from emoloom.training.export import export_run
from emoloom.training.heads_fit import refit_heads, refit_sample
from emoloom.training.objective import step_losses
from emoloom.training.sampler import MixtureSampler
from emoloom.training.setup import (
    TrainingData,
    build_model,
    check_inputs,
    check_max_len,
    example_features,
    init_heads,
    load_training_data,
    load_verifier,
    make_optimizer,
)
from emoloom.training.sft_data import SourceStream, collate
from emoloom.training.state import (
    Best,
    Healing,
    RunState,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    swap_weights,
    write_logs,
)


def cosine_lr(step: int, total: int, warmup_ratio: float) -> float:
    """Multiplier of the peak LR: linear warmup over warmup_ratio of the steps, then cosine to 0."""
    warmup = max(1, math.ceil(warmup_ratio * total))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


@contextmanager
def heads_inputs(model: EmoModel):
    """The pooled features the heads receive inside the block, one tensor per call (detached)."""
    seen: list[torch.Tensor] = []
    handle = model.heads.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    try:
        yield seen
    finally:
        handle.remove()


@dataclass
class Run:
    """The objects of one training run; `train` drives them."""
    name: str
    cfg: SFTConfig
    weights: LossWeights
    model: EmoModel
    tokenizer: object
    verifier: AppraisalVerifier
    data: TrainingData
    mixture: dict[str, float]                 # source -> its ratio weight (as configured; the sampler's weights move)
    optimizer: torch.optim.Optimizer
    sampler: MixtureSampler
    streams: dict[str, SourceStream]
    state: RunState
    device: torch.device
    amp: torch.dtype | None
    config_hash: str
    checkpoint_path: Path
    plots: Path

    @property
    def trainable(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp) if self.amp else nullcontext()

    @property
    def keeps_features(self) -> bool:
        """Whether the heads' refit can reuse the training forwards' features: the heads read a layer training cannot
        change (at or below the first adapted one), so those are the features the exported weights would compute."""
        return bool(self.cfg.heads_refit_rows) and 0 < self.model.heads.layer <= frozen_depth(self.model.lm)

    # ---------------------------------------------------------------------------------------------- one step

    def accumulate(self) -> dict:
        """Forward + backward over grad_accum micro-batches (gradients summed); what the step log needs."""
        heal, step = self.state.heal, self.state.step
        totals, sources, entropies, n_tokens = {t: 0.0 for t in self.weights.active}, [], [], 0
        features: dict[str, torch.Tensor] = {}
        for _ in range(heal.grad_accum):
            source = self.sampler.draw(step)
            examples = self.streams[source].take(heal.micro_batch, heal.max_len)
            batch = collate(examples, self.tokenizer.pad_token_id,
                            share_prefix=self.cfg.share_prefix and not self.cfg.gradient_checkpointing).to(self.device)
            with self.autocast(), heads_inputs(self.model) as pooled:
                terms, kept = step_losses(self.model, batch, self.verifier, self.data.lexical_ids,
                                          self.data.lexical_vad, self.weights,
                                          (self.cfg.label_token_weight, self.cfg.vad_token_weight))
            if self.keeps_features and len(self.state.features) < self.cfg.heads_refit_rows:   # (the refit's size)
                features.update(zip((e.id for e in examples), pooled[0][:len(examples)].float().cpu().clone()))
            (self.weights.combine(terms) / heal.grad_accum).backward()
            entropy = kept["entropy"]
            self.sampler.update(source, entropy)
            self.state.pass_entropy.setdefault(source, []).append(entropy)
            for t in totals:
                totals[t] += terms[t].item() / heal.grad_accum
            sources.append(source)
            entropies.append(entropy)
            n_tokens += batch.n_tokens
        return {"totals": totals, "sources": sources, "entropies": entropies, "tokens": n_tokens,
                "features": features}

    def optimizer_step(self) -> float:
        """Schedule the LR, clip, step, update the EMA; the gradient norm before clipping."""
        scale = cosine_lr(self.state.step, self.cfg.max_steps, self.cfg.warmup_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = group["peak"] * scale
        trainable = self.trainable
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable.values(), self.cfg.clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.state.ema is not None:
            with torch.no_grad():
                for n, p in trainable.items():
                    self.state.ema[n].mul_(self.cfg.ema_decay).add_(p.detach(), alpha=1 - self.cfg.ema_decay)
        return grad_norm

    def log_step(self, acc: dict, grad_norm: float, seconds: float) -> dict:
        step, sources, totals = self.state.step, acc["sources"], acc["totals"]
        row = {"step": step, "loss": self.weights.combine(totals), **{f"loss_{t}": totals[t] for t in totals},
               "lr": self.optimizer.param_groups[0]["lr"], "grad_norm": grad_norm,
               "temperature": self.sampler.temperature(step - 1),
               "p_A": self.sampler.probabilities(step - 1).get("goemotions", 0.0), "source": "|".join(sources),
               "n_goemotions": sources.count("goemotions"), "n_empathetic": sources.count("empathetic"),
               "entropy": sum(acc["entropies"]) / len(acc["entropies"]), "tokens": acc["tokens"], "seconds": seconds,
               "max_len": self.state.heal.max_len, "grad_accum": self.state.heal.grad_accum}
        self.state.history.train.append(row)
        return row

    def heal_oom(self, err: RuntimeError, snapshot: tuple) -> None:
        """Rewind the step's draws, then lower max_len by 128 and double grad_accum (halving the micro-batch)."""
        heal, cfg = self.state.heal, self.cfg
        self.optimizer.zero_grad(set_to_none=True)
        self.sampler.load_state_dict(snapshot[0])
        for s, st in snapshot[1].items():
            self.streams[s].load_state_dict(st)
        set_rng_state(snapshot[2])
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if heal.max_len - 128 < cfg.min_max_len:
            raise RuntimeError(f"{self.name}: out of memory at max_len={heal.max_len}, and self-healing may not "
                               f"go below min_max_len={cfg.min_max_len}") from err
        heal.max_len, heal.grad_accum = heal.max_len - 128, heal.grad_accum * 2
        heal.micro_batch = max(1, heal.micro_batch // 2)
        self.state.history.decide(self.state.step, "oom_self_heal", **asdict(heal))

    def snapshot(self) -> tuple:
        """What an OOM retry rewinds: the sampler, the data streams and the RNGs."""
        return self.sampler.state_dict(), {s: st.state_dict() for s, st in self.streams.items()}, rng_state()

    # ---------------------------------------------------------------------------------------------- passes

    def eval_weights(self) -> dict[str, torch.Tensor]:
        """The weights that are evaluated and exported: the EMA when on, else the current ones."""
        ema = self.state.ema
        return ema if ema is not None else {n: p.detach().clone() for n, p in self.trainable.items()}

    def budget_spent(self) -> bool:
        """Algorithm 2, line 4, checked before every step: once the time budget is spent, the run stops."""
        if self.state.elapsed < self.cfg.budget_min * 60:
            return False
        self.state.stop = "budget"
        self.state.history.decide(self.state.step, "stop", why="budget spent", elapsed_s=round(self.state.elapsed))
        return True

    def evaluate(self) -> tuple[dict, float]:
        """Algorithm 2, lines 5-9: score the evaluation weights on the dev rows (S), slide S-bar, keep the best."""
        state, cfg, step = self.state, self.cfg, self.state.step
        backup = swap_weights(self.model, self.eval_weights())
        with self.autocast():
            ev = dev_evaluation(self.model, self.tokenizer, self.data.dev, self.data.dev_examples, cfg, self.device)
        swap_weights(self.model, backup)
        state.scores.append(ev["S"])
        s_bar = statistics.fmean(state.scores[-cfg.score_window:])
        state.history.dev.append({"step": step, "S_bar": s_bar, **{k: v for k, v in ev.items() if k != "failures"},
                                  "top_failure": next(iter(ev["failures"]), "")})
        if state.best is None or s_bar > state.best.S:
            state.best = Best(ev["S"], s_bar, step, ev, {n: w.clone() for n, w in self.eval_weights().items()})
            state.history.decide(step, "new_best", S=ev["S"], S_bar=s_bar)
        return ev, s_bar

    def end_of_pass(self) -> None:
        """Algorithm 2, lines 5-12: dev score and best checkpoint, budget-aware early stop, re-balance."""
        state, cfg, step = self.state, self.cfg, self.state.step
        best_before = state.best
        ev, s_bar = self.evaluate()
        remaining_steps = cfg.max_steps - step
        eta = statistics.median(state.pass_times[-cfg.eta_window:]) * remaining_steps / cfg.pass_steps
        if state.best is not best_before:
            pass                                              # a new best: keep going
        elif s_bar < best_before.S + cfg.delta and eta > cfg.budget_min * 60 - state.elapsed and remaining_steps > 0:
            state.stop = "early"
            state.history.decide(step, "stop", why="no improvement and the ETA exceeds the budget", S_bar=s_bar,
                                 best_S=best_before.S, eta_s=round(eta))
        else:
            state.history.decide(step, "keep_best", S_bar=s_bar, best_S=best_before.S)
        if cfg.rebalance and state.pass_entropy:
            mean_h = {s: statistics.fmean(v) for s, v in state.pass_entropy.items()}
            self.sampler.rebalance(mean_h)
            state.history.decide(step, "rebalance", entropy=mean_h, weights=dict(self.sampler.weights))
        state.pass_entropy = {}

    def finish(self) -> None:
        """However the loop ended (steps done, budget, early stop, or a resume of a finished run), the last weights
        are scored once, so every run has a dev log and a selected checkpoint; then the final checkpoint."""
        if not self.state.history.dev or self.state.history.dev[-1]["step"] != self.state.step:
            self.evaluate()
            self.state.history.decide(self.state.step, "final_evaluation", stop=self.state.stop or "max_steps")
        self.save()

    def refit_heads(self, chosen: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The chosen weights with the heads refitted on the features they compute for a seeded sample of training
        prompts (emoloom.training.heads_fit). The examples trained on come first, their features kept from training
        where the heads read frozen layers (`keeps_features`); the others' are computed now."""
        swap_weights(self.model, chosen)
        kept = self.state.features if self.keeps_features else {}
        reused = {s: [ex for ex in exs if ex.id in kept] for s, exs in self.data.examples.items()}
        sample = refit_sample(self.data.examples, self.mixture, self.cfg.heads_refit_rows, self.cfg.seed, reused)
        todo = [ex for ex in sample if ex.id not in kept]
        with self.autocast():                    # the run's precision: bf16 where training runs in bf16
            new, _, _ = example_features(self.model, todo, self.cfg, self.tokenizer.pad_token_id or 0)
        computed = dict(zip((ex.id for ex in todo), new))
        features = torch.stack([kept[ex.id] if ex.id in kept else computed[ex.id] for ex in sample])
        labels, vad = torch.tensor([ex.labels for ex in sample]), torch.tensor([ex.vad for ex in sample])
        summary = refit_heads(self.model.heads, features, labels, vad, self.cfg.seed)
        self.state.history.decide(self.state.step, "heads_refit", reused=len(sample) - len(todo), **summary)
        write_logs(self.plots, self.state.history)
        return {**chosen, **{f"heads.{n}": p.detach().clone() for n, p in self.model.heads.named_parameters()}}

    # ---------------------------------------------------------------------------------------------- checkpoints

    def save(self) -> None:
        save_checkpoint(self.checkpoint_path, {
            "config_hash": self.config_hash, "weights": {n: p.detach().clone() for n, p in self.trainable.items()},
            "optimizer": self.optimizer.state_dict(), "sampler": self.sampler.state_dict(),
            "streams": {s: st.state_dict() for s, st in self.streams.items()}, "rng": rng_state(),
            "state": self.state})
        write_logs(self.plots, self.state.history)

    def resume(self) -> None:
        """Continue from the checkpoint when it was written for this config; otherwise start afresh (and say so)."""
        if not self.checkpoint_path.exists():
            return
        saved = load_checkpoint(self.checkpoint_path, self.config_hash)
        if saved is None:
            self.state.history.decide(0, "checkpoint_discarded", why="config, data or code changed")
            return
        swap_weights(self.model, saved["weights"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.sampler.load_state_dict(saved["sampler"])
        for s, st in saved["streams"].items():
            self.streams[s].load_state_dict(st)
        set_rng_state(saved["rng"])
        self.state = saved["state"]
        self.state.history.decide(self.state.step, "resumed")
        print(f"{self.name}: resuming from step {self.state.step}")


def start_run(cfg: SFTConfig, weights: LossWeights, lora: LoraSettings, paths: RunPaths, mixture: dict[str, float],
              lexicon, run_name: str) -> Run:
    """Check everything, then build the data, model, optimizer and sampler (this order fixes the random draws)."""
    from transformers import AutoConfig, AutoTokenizer

    check_inputs(paths, run_name)
    device = resolve_device(cfg.device)
    amp, why = autocast_dtype(cfg.precision, device)
    print(f"{run_name}: {'bf16 autocast' if amp else 'fp32'} ({why})")
    tokenizer = AutoTokenizer.from_pretrained(paths.backbone)
    verifier = load_verifier(paths, tokenizer, device)
    check_max_len(cfg, tokenizer)
    check_heads_layer(AutoConfig.from_pretrained(paths.backbone).num_hidden_layers, cfg.heads_layer)
    run_hash = config_hash({"cfg": asdict(cfg), "loss": asdict(weights), "lora": asdict(lora), "mix": mixture,
                            "train": sha1_file(paths.train), "backbone": tokenizer.name_or_path, "amp": str(amp)})

    seed_everything(cfg.seed)
    data = load_training_data(cfg, paths, tokenizer, lexicon, mixture, run_name, device)
    model = build_model(paths.backbone, cfg, lora, device)
    init_heads(model, [ex for s in sorted(data.examples) for ex in data.examples[s]], cfg, tokenizer.pad_token_id or 0)
    model.train()
    optimizer = make_optimizer(model, cfg)
    sampler = MixtureSampler(dict(mixture), cfg.t0, cfg.t1, cfg.max_steps, cfg.conf_alpha, seed=cfg.seed)
    streams = {s: SourceStream(data.examples[s], cfg.seed, s) for s in mixture if mixture[s] > 0}
    ema = ({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
           if cfg.ema_decay > 0 else None)
    state = RunState(heal=Healing(cfg.max_len, cfg.grad_accum, cfg.micro_batch), ema=ema)
    state.history.decide(0, "precision", dtype="bf16" if amp else "fp32", why=why)
    run = Run(run_name, cfg, weights, model, tokenizer, verifier, data, dict(mixture), optimizer, sampler, streams,
              state, device, amp, run_hash, paths.out / "checkpoint.pt", paths.plots)
    run.resume()
    return run


def train(cfg: SFTConfig, weights: LossWeights, lora: LoraSettings, paths: RunPaths, mixture: dict[str, float],
          lexicon, run_name: str) -> dict:
    """Train one mixture x seed; return the run's metrics. Resumes from paths.out/checkpoint.pt when it matches."""
    run = start_run(cfg, weights, lora, paths, mixture, lexicon, run_name)
    state = run.state
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc=f"sft {run_name}", unit="step")
    pass_start = time.perf_counter()
    while state.step < cfg.max_steps and state.stop is None and not run.budget_spent():
        snapshot, started = run.snapshot(), time.perf_counter()
        try:
            acc = run.accumulate()
        except RuntimeError as err:
            if not is_oom(err):
                raise
            run.heal_oom(err, snapshot)
            continue
        grad_norm = run.optimizer_step()
        state.features.update(acc["features"])
        seconds = time.perf_counter() - started
        state.elapsed += seconds
        state.step += 1
        row = run.log_step(acc, grad_norm, seconds)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.3f}", lm=f"{row.get('loss_lm', math.nan):.3f}")

        if state.step % cfg.pass_steps == 0 or state.step == cfg.max_steps:
            state.pass_times.append(time.perf_counter() - pass_start)
            run.end_of_pass()
            pass_start = time.perf_counter()
        if state.step % cfg.checkpoint_every == 0 or state.step == cfg.max_steps or state.stop:
            run.save()
    bar.close()
    run.finish()
    write_logs(paths.plots, state.history)
    chosen = state.best.weights if state.best else run.eval_weights()
    if cfg.heads_refit_rows:
        chosen = run.refit_heads(chosen)
    return export_run(state, cfg, weights, lora, run.model, chosen, paths, run_name, mixture, run.config_hash)
