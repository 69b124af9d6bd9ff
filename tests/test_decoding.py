"""Decoding: the certified fast path returns the protocol's KV-off reference outputs token for token (real SmolLM2,
real GoEmotions dev rows), including when certification fails, a candidate is wrong, or rows stop early."""

from __future__ import annotations

import copy

import pytest
import torch

from emoloom.core.contract import encode_prompt, user_turn_start
from emoloom.evaluation import decoding
from emoloom.evaluation.calibration import measure_logit_gap
from emoloom.evaluation.decoding import DEFAULT_BOUNDS, DecodeStats, decode, reference_logits
from emoloom.evaluation.heads import heads_mode
from emoloom.modeling.backbones import load_backbone
from emoloom.modeling.batching import common_prefix, left_pad, length_buckets
from emoloom.modeling.model import EmoModel, Heads, first_layers, lm_forward, masked_mean, prompt_features
from emoloom.training.dev_eval import greedy_decode

NEW = 12                    # new-token budget: keeps the quadratic reference loop affordable


@pytest.fixture(scope="module")
def smollm():
    lm, tokenizer = load_backbone("smollm2-135m-instruct")
    return lm, tokenizer


@pytest.fixture(scope="module")
def prompts(raw_root, smollm):
    """Contract prompts of the first real GoEmotions dev rows; the last one carries two earlier rows as context."""
    _, tokenizer = smollm
    lines = (raw_root / "goemotions" / "dev.tsv").read_text(encoding="utf-8").splitlines()
    texts = [line.split("\t")[0] for line in lines[:6]]
    return [encode_prompt(tokenizer, t, []) for t in texts[:4]] + [encode_prompt(tokenizer, texts[5], texts[3:5])]


@pytest.fixture(scope="module")
def reference(smollm, prompts):
    lm, tokenizer = smollm
    return decode(lm, tokenizer, prompts, NEW, mode="reference")


def chat_prompt(tokenizer, message: str) -> list[int]:
    text = tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                         tokenize=False)
    return tokenizer(text, add_special_tokens=False).input_ids


def check_consistent(gens, stats):
    """Every step is accounted for exactly once: certified or settled by the reference step."""
    assert stats.steps == sum(len(g.token_ids) + (g.stop == "eos") for g in gens)
    assert stats.certified_tokens + stats.reference_steps == stats.steps
    assert 0 <= stats.certified_rows <= stats.rows == len(gens)
    assert stats.mismatches <= stats.reference_steps
    if stats.certified_tokens:
        assert stats.min_certified_margin > stats.bound


@pytest.mark.slow
def test_exact_fast_path_matches_the_reference_loop(smollm, prompts, reference):
    lm, tokenizer = smollm
    ref_gens, ref_stats = reference
    assert ref_stats.reference_steps == ref_stats.steps == sum(len(g.token_ids) + (g.stop == "eos") for g in ref_gens)
    gens, stats = decode(lm, tokenizer, prompts, NEW, mode="exact", batch_size=3)   # 2 buckets, one padded
    assert [g.token_ids for g in gens] == [g.token_ids for g in ref_gens]
    assert [(g.text, g.stop) for g in gens] == [(g.text, g.stop) for g in ref_gens]
    check_consistent(gens, stats)
    assert stats.bound == DEFAULT_BOUNDS[torch.float32]
    assert stats.rounds >= 2                              # one per bucket at least
    assert stats.certified_tokens > 0.9 * stats.steps     # the point of the fast path: few reference steps
    # the older batch loop, run one row at a time without the cache, is the same computation as the reference
    old = greedy_decode(lm, tokenizer, prompts[:1], NEW, use_cache=False)
    assert old[0].token_ids == ref_gens[0].token_ids


@pytest.mark.slow
def test_failed_certification_falls_back_to_the_reference_step(smollm, prompts, reference):
    lm, tokenizer = smollm
    gens, stats = decode(lm, tokenizer, prompts[:2], NEW // 2, mode="exact", bound=1e9)   # nothing can pass
    assert [g.token_ids for g in gens] == [g.token_ids[:NEW // 2] for g in reference[0][:2]]
    check_consistent(gens, stats)
    assert stats.certified_tokens == 0 and stats.certified_rows == 0
    assert stats.reference_steps == stats.steps and stats.mismatches == 0


@pytest.mark.slow
def test_a_wrong_candidate_is_caught_and_the_row_redecoded(smollm, prompts, reference, monkeypatch):
    lm, tokenizer = smollm
    original = decoding._cached_candidates
    corrupted = []

    def corrupt_first_round(*args, **kwargs):
        out = original(*args, **kwargs)
        if not corrupted:                                 # row 0, step 3 of the first round: a different token
            steps = out[0].steps
            steps[3] = (steps[3] + 1) % lm.config.vocab_size
            corrupted.append(steps[3])
        return out

    monkeypatch.setattr(decoding, "_cached_candidates", corrupt_first_round)
    gens, stats = decode(lm, tokenizer, prompts[:2], NEW, mode="exact")
    assert [g.token_ids for g in gens] == [g.token_ids for g in reference[0][:2]]
    check_consistent(gens, stats)
    assert stats.mismatches == 1 and stats.reference_steps >= 1
    assert stats.rounds == 2                              # the corrected row was decoded and certified again
    assert stats.certified_rows == 1                      # row 1 never needed the reference step


@pytest.mark.slow
def test_early_stop_per_row_matches_the_reference(smollm, prompts, reference):
    """Rows that close their JSON or hit EOS leave the batch (and the KV cache) while the others go on."""
    lm, tokenizer = smollm
    budget_row = next(p for p, g in zip(prompts, reference[0]) if g.stop == "budget")
    rows = [chat_prompt(tokenizer, 'Reply with exactly this JSON and nothing else: {"ok": true}'),
            budget_row,
            chat_prompt(tokenizer, "Say only the word yes."),
            chat_prompt(tokenizer, 'Output only the JSON object {"labels": ["joy"]} and stop.')]
    ref, _ = decode(lm, tokenizer, rows, NEW, mode="reference")
    stops = [g.stop for g in ref]
    assert stops == ["json", "budget", "eos", "json"], [(g.stop, g.text) for g in ref]
    assert ref[0].text == '{"ok":true}' and len(ref[1].token_ids) == NEW
    gens, stats = decode(lm, tokenizer, rows, NEW, mode="exact", batch_size=4)
    assert [(g.token_ids, g.stop) for g in gens] == [(g.token_ids, g.stop) for g in ref]
    check_consistent(gens, stats)
    cached, cached_stats = decode(lm, tokenizer, rows, NEW, mode="cached", batch_size=4)
    assert [(g.token_ids, g.stop) for g in cached] == [(g.token_ids, g.stop) for g in ref]
    assert cached_stats.steps == stats.steps and cached_stats.reference_steps == 0
    # a budget of 0 decodes nothing; a budget that ends mid-answer reports "budget"
    assert [g.stop for g in decode(lm, tokenizer, rows[:1], 0)[0]] == ["budget"]
    short, _ = decode(lm, tokenizer, rows[:1], 2)
    assert short[0].stop == "budget" and short[0].token_ids == ref[0].token_ids[:2]


@pytest.mark.slow
def test_default_bound_covers_the_measured_logit_gap(smollm, prompts):
    """The cached steps' margins, which certify exact mode's tokens, stay far inside the fp32 bound on this machine."""
    lm, tokenizer = smollm
    gap = measure_logit_gap(lm, tokenizer, prompts[:2], 8, batch_size=1, positions=2)
    assert gap["positions"] == 4 and gap["steps"] == 16
    # the first measured position (the shorter prompt, step 0) recomputed by hand: reference step vs cached step
    prompt = sorted(prompts[:2], key=len)[0]
    logged = [[]]
    cand = decoding._cached_candidates(lm, tokenizer, [prompt], [[]], [8], DecodeStats("exact"), share_prefix=True,
                                       log=logged)[0]
    with torch.no_grad():
        d = (reference_logits(lm, prompt).float()[0] - logged[0][0]).double()
    assert gap["spreads"][0] == pytest.approx(float(d.max() - d.min()), rel=1e-6, abs=1e-9)
    top = logged[0][0].topk(2).values
    assert cand.margins[0] == pytest.approx(float(top[0] - top[1])) and cand.top1[0] == cand.steps[0]
    assert gap["max_spread"] == max(gap["spreads"])
    assert gap["max_spread"] * 5 < DEFAULT_BOUNDS[torch.float32], gap["max_spread"]


@pytest.mark.slow
def test_exact_in_bf16_settles_near_ties_with_the_reference_step(smollm, prompts):
    """bf16 logits tie often (margin 0): those steps cannot be certified and must come from the reference step."""
    lm, tokenizer = smollm
    lm16 = copy.deepcopy(lm).to(torch.bfloat16)
    ref, _ = decode(lm16, tokenizer, prompts[:2], 8, mode="reference")
    gens, stats = decode(lm16, tokenizer, prompts[:2], 8, mode="exact")
    assert [g.token_ids for g in gens] == [g.token_ids for g in ref]
    check_consistent(gens, stats)
    assert stats.bound == DEFAULT_BOUNDS[torch.bfloat16] and stats.reference_steps > 0


@pytest.mark.slow
def test_heads_mode_with_a_shared_prefix_matches_the_plain_forward(smollm, prompts):
    """Heads mode runs each batch's system prompt once; the pooled user turns, and so the heads, match the plain
    forward of every whole prompt (up to rounding), whatever the batch composition."""
    lm, tokenizer = smollm
    torch.manual_seed(0)
    model = EmoModel(lm, Heads(lm.config.hidden_size)).eval()
    label_logits, vad = heads_mode(model, tokenizer, prompts, batch_size=3)
    plain_logits, plain_vad = heads_mode(model, tokenizer, prompts[::-1], batch_size=2, share_prefix=False)
    assert label_logits.shape == (len(prompts), 28) and vad.shape == (len(prompts), 3)
    assert torch.allclose(label_logits, plain_logits.flip(0), atol=1e-4)
    assert torch.allclose(vad, plain_vad.flip(0), atol=1e-5)
    starts = [user_turn_start(tokenizer, p) for p in prompts]
    assert all(100 < s < len(p) for s, p in zip(starts, prompts))     # after the shared system text


@pytest.mark.slow
def test_prompt_features_run_the_shared_prefix_once_for_every_batch(smollm, prompts):
    """The system prompt's KV cache is computed once and every batch attends to a copy of it: the features are
    bit-identical to running the prefix again in each batch, and a batch-1 forward (the prefix) happens once."""
    lm, tokenizer = smollm
    prompts = prompts[:4]                                 # one system prompt (the fifth carries context rows)
    starts = [user_turn_start(tokenizer, p) for p in prompts]
    seen = []
    hook = lm.get_decoder().layers[0].register_forward_hook(lambda m, args, out: seen.append(args[0].size(0)))
    try:
        shared = prompt_features(lm, prompts, starts, tokenizer.pad_token_id or 0, batch_size=2, layer=14)
    finally:
        hook.remove()
    assert seen == [1, 2, 2]                              # the prefix, then two batches of 2
    per_batch = torch.zeros_like(shared)                  # the prefix run again in each batch, as before
    with torch.no_grad(), first_layers(lm, 14):
        for rows in length_buckets(prompts, 2):
            chunk = [prompts[i] for i in rows]
            p = common_prefix(chunk, limit=min(starts[i] for i in rows))
            ids, mask = left_pad([r[p:] for r in chunk], tokenizer.pad_token_id or 0)
            pool = torch.zeros_like(mask)
            for k, i in enumerate(rows):
                pool[k, mask.size(1) - (len(prompts[i]) - starts[i]):] = 1
            out = lm_forward(lm, ids, mask, torch.tensor(chunk[0][:p]))
            per_batch[rows] = masked_mean(out.hidden_states[-1].float(), pool)
    assert torch.equal(shared, per_batch)


def test_bad_arguments_are_refused(smollm):
    lm, tokenizer = smollm
    with pytest.raises(ValueError, match="mode"):
        decode(lm, tokenizer, [[1, 2]], 4, mode="kv-off")
    with pytest.raises(ValueError, match="bound"):
        decode(lm, tokenizer, [[1, 2]], 4, mode="exact", bound=0.0)


def test_default_bound_follows_the_dtype_and_autocast():
    """Autocast rounds like its dtype, so exact mode must pick that dtype's bound (tiny random Llama: wiring only)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    class Tok:
        eos_token_id = pad_token_id = 0

        def decode(self, ids):
            return " ".join(map(str, ids))

    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2)).eval()
    rows = [[1, 2, 3, 4], [5, 6]]
    ref, _ = decode(lm, Tok(), rows, 4, mode="reference")
    gens, stats = decode(lm, Tok(), rows, 4)
    assert stats.bound == DEFAULT_BOUNDS[torch.float32]
    assert [g.token_ids for g in gens] == [g.token_ids for g in ref]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert decode(lm, Tok(), rows, 4)[1].bound == DEFAULT_BOUNDS[torch.bfloat16]
    with pytest.raises(ValueError, match="no measured certification bound"):
        decode(lm.to(torch.float16), Tok(), rows, 4)
