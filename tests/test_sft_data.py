"""SFT batches: the shared-prefix forward gives the plain forward's losses and gradients, and so does its frozen
layers' part kept between steps; the pooled user turn; a middle-layer read-out gives training and heads mode the same
features; the Valence-Flip twins stopped at the heads' layer give the full forward's outputs and gradients."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
import torch
from conftest import TINY_CFG, TINY_LORA

from emoloom.core.errors import ParamError
from emoloom.core.io import read_jsonl
from emoloom.core.labels import NUM_LABELS
from emoloom.data.flip import load_antonyms
from emoloom.modeling.model import layer_output, lm_forward, masked_mean
from emoloom.modeling.token_lexicon import lexical_tokens
from emoloom.modeling.verifier import AppraisalVerifier
from emoloom.training.config import LOSS_TERMS
from emoloom.training.objective import step_losses
from emoloom.training.setup import build_examples, build_model
from emoloom.training.sft_data import collate


def build_parts(tiny_run, nrc, lora=TINY_LORA, cfg=TINY_CFG):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_run / "backbone")
    torch.manual_seed(0)
    model = build_model(tiny_run / "backbone", cfg, lora, torch.device("cpu"))
    for name, p in model.named_parameters():             # LoRA B starts at 0: make every path carry gradient
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    verifier = AppraisalVerifier.load(tiny_run / "verifier.pt", tokenizer).requires_grad_(False)
    rows = list(read_jsonl(tiny_run / "train.jsonl"))
    examples = build_examples(rows, tokenizer, replace(TINY_CFG, flip_prob=1.0),
                              load_antonyms(tiny_run / "antonyms.tsv", nrc), random.Random(0))
    ids, lexical_vad = lexical_tokens(tokenizer, nrc)
    table, lexical = torch.tensor(ids), lexical_vad
    return model.eval(), tokenizer, verifier, examples, table, lexical       # eval: no dropout, gradients still on


@pytest.fixture(scope="module")
def parts(tiny_run, nrc):
    return build_parts(tiny_run, nrc)


def losses_and_grads(parts, batch) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    model, _, verifier, _, table, lexical = parts
    model.zero_grad(set_to_none=True)
    terms, _ = step_losses(model, batch, verifier, table, lexical)
    sum(terms.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return {t: float(v) for t, v in terms.items()}, grads


def test_the_shared_prefix_gives_the_plain_forwards_losses_and_gradients(parts):
    _, tokenizer, _, examples, _, _ = parts
    chosen = [e for e in examples if e.flipped_prompt_ids][:2] + [e for e in examples if not e.flipped_prompt_ids][:2]
    shared = collate(chosen, tokenizer.pad_token_id)
    plain = collate(chosen, tokenizer.pad_token_id, share_prefix=False)
    assert shared.prefix_ids.numel() > 0 and plain.prefix_ids.numel() == 0
    assert shared.n_tokens < plain.n_tokens                        # the system prompt once instead of per row
    loss_s, grad_s = losses_and_grads(parts, shared)
    loss_p, grad_p = losses_and_grads(parts, plain)
    assert set(loss_s) == set(LOSS_TERMS) and set(grad_s) == set(grad_p)
    for term in LOSS_TERMS:
        assert loss_s[term] == pytest.approx(loss_p[term], rel=1e-5, abs=1e-6), term
    for name in grad_p:
        assert torch.allclose(grad_s[name], grad_p[name], rtol=1e-4, atol=1e-6), name
    assert any(g.abs().sum() > 0 for n, g in grad_s.items() if "lora_A" in n and ".layers.0." in n)   # through the prefix


def test_eager_attention_gives_sdpas_losses_and_gradients(tiny_run, nrc, parts):
    """sft.train.attention: "auto" trains with eager attention on CPU (faster at these shapes); it computes the same
    function as sdpa, so a shared-prefix batch with twins gives the same losses and gradients in fp32."""
    eager = build_parts(tiny_run, nrc, cfg=replace(TINY_CFG, attention="auto"))
    sdpa = build_parts(tiny_run, nrc, cfg=replace(TINY_CFG, attention="sdpa"))
    assert eager[0].lm.config._attn_implementation == "eager" and sdpa[0].lm.config._attn_implementation == "sdpa"
    _, tokenizer, _, examples, _, _ = parts
    batch = collate([e for e in examples if e.flipped_prompt_ids][:2] + [e for e in examples
                                                                         if not e.flipped_prompt_ids][:2],
                    tokenizer.pad_token_id)
    loss_e, grad_e = losses_and_grads(eager, batch)
    loss_s, grad_s = losses_and_grads(sdpa, batch)
    assert set(grad_e) == set(grad_s) and loss_e.keys() == loss_s.keys()
    for term in loss_s:
        assert loss_e[term] == pytest.approx(loss_s[term], rel=1e-5, abs=1e-6), term
    for name in grad_s:
        assert torch.allclose(grad_e[name], grad_s[name], rtol=1e-4, atol=1e-6), name


def test_the_prefix_frozen_layers_run_once_and_give_the_same_losses_and_gradients(tiny_run, nrc):
    """LoRA on the last of 2 layers: layer 0 sees the system prompt once per model (the first step), layer 1 at every
    step; every step's losses and gradients equal those of the prefix recomputed whole, with the twins (heads on
    layer 1, below LoRA) and without them (heads on the last layer)."""
    from emoloom.modeling.prefix_kv import PrefixKV, frozen_depth

    parts = build_parts(tiny_run, nrc, replace(TINY_LORA, last_layers=1))
    model, tokenizer, _, examples, _, _ = parts
    assert frozen_depth(model.lm) == 1
    twins = [e for e in examples if e.flipped_prompt_ids]
    batches = [collate(twins[:2] + [e for e in examples if not e.flipped_prompt_ids][:2], tokenizer.pad_token_id),
               collate(twins[2:5], tokenizer.pad_token_id)]
    assert all(b.prefix_ids.numel() and b.flip_rows.numel() for b in batches)
    layers = model.lm.get_decoder().layers
    seen = {0: [], 1: []}                                                # input shapes, with the kept part only

    def record(k, inputs):
        if model.prefix_kv is kept:
            seen[k].append(tuple(inputs[0].shape[:2]))

    hooks = [layers[k].register_forward_pre_hook(lambda m, a, k=k: record(k, a)) for k in (0, 1)]
    kept = model.prefix_kv
    try:
        for heads_layer in (1, 0):
            model.heads.layer = heads_layer
            for batch in batches:
                model.prefix_kv = kept
                loss_k, grad_k = losses_and_grads(parts, batch)
                model.prefix_kv = PrefixKV(keep=False)                   # the prefix through every layer, per step
                loss_w, grad_w = losses_and_grads(parts, batch)
                assert loss_k == pytest.approx(loss_w, rel=1e-5, abs=1e-6)
                assert set(grad_k) == set(grad_w) and any(".layers.1." in n and "lora_A" in n for n in grad_k)
                for name in grad_w:
                    assert torch.allclose(grad_k[name], grad_w[name], rtol=1e-4, atol=1e-6), name
    finally:
        model.prefix_kv, model.heads.layer = kept, 0
        for hook in hooks:
            hook.remove()
    p = batches[0].prefix_ids.numel()
    # layer 0 saw the prefix (1, P) once, in the first call's whole-prefix forward; layer 1 there and in all 4 calls
    assert seen[0].count((1, p)) == 1 and seen[1].count((1, p)) == 1 + 4
    assert model.lm.config.num_hidden_layers == 2 and len(layers) == 2     # layers_from restored the decoder


def test_the_heads_pool_only_the_user_turn(parts):
    _, tokenizer, _, examples, _, _ = parts
    batch = collate(examples[:3], tokenizer.pad_token_id)
    for row, e in enumerate(examples[:3]):
        own = len(e.prompt_ids) - e.user_start
        pooled = batch.pool_mask[row].nonzero().flatten()
        assert len(pooled) == own and 0 < e.user_start
        # the pooled tokens are the prompt's own part, right before the answer
        assert batch.input_ids[row, pooled].tolist() == e.prompt_ids[e.user_start:]


def test_the_label_mask_covers_the_labels_list(parts):
    _, tokenizer, _, examples, _, _ = parts
    e = examples[0]
    spelled = tokenizer.decode([t for t, m in zip(e.answer_ids, e.label_mask) if m]).replace(" ", "")
    labels_list = tokenizer.decode(e.answer_ids[:-1]).replace(" ", "").split('"vad"')[0]     # '{"labels":[...],'
    assert labels_list[labels_list.index("["):labels_list.rindex("]") + 1] in spelled
    assert "vad" not in spelled and "rationale" not in spelled


def test_the_rationale_and_vad_masks_spell_their_fields(parts):
    """The vad object and the rationale (the paper's order: labels, vad, rationale) each get a mask that covers its own
    field's tokens (and at most the separators a token shares with them), not the other field's."""
    _, tokenizer, _, examples, _, _ = parts

    def spell(ids) -> str:                                    # this tokenizer's decode puts spaces between tokens
        return tokenizer.decode(ids).replace(" ", "")

    for e in examples[:4]:
        line = spell(e.answer_ids[:-1])
        answer = json.loads(line)
        rationale = spell([t for t, m in zip(e.answer_ids, e.rationale_mask) if m])
        vad = spell([t for t, m in zip(e.answer_ids, e.vad_mask) if m])
        assert list(answer) == ["labels", "vad", "rationale"]
        assert answer["rationale"].replace(" ", "") in rationale and "vad" not in rationale      # a token may hold
        assert line[line.index('"vad":') + 6:line.index(',"rationale"')] in vad and "rationale" not in vad   # a brace
        assert not any(r and v for r, v in zip(e.rationale_mask, e.vad_mask))


def test_the_heads_refit_learns_new_features_from_scratch_and_folds_the_thresholds():
    from emoloom.modeling.model import Heads, heads_decisions
    from emoloom.training.heads_fit import refit_heads

    torch.manual_seed(0)
    x = torch.randn(400, 6) * 3 + 5                    # features on another scale than the heads were set up for
    y = torch.zeros(400, 28)
    y[:, 0] = (x[:, 0] > 7.4).float()                  # a rare label (~20 %), readable from one feature
    y[:, 1] = (x[:, 1] > 3.5).float()                  # a frequent one
    v = torch.sigmoid(x[:, 2:5] - 5)
    heads = Heads(6)
    heads.init_from_data(torch.randn(50, 6), y[:50], v[:50])
    summary = refit_heads(heads, x, y, v, seed=0)
    assert summary["rows"] == 400 and max(summary["held_out_macro_f1_tuned"].values()) > summary[
        "held_out_macro_f1_before"]
    assert torch.allclose(heads.feature_mean, x.mean(0)) and torch.allclose(heads.feature_scale, x.std(0) * 6 ** 0.5)
    fresh = torch.randn(400, 6) * 3 + 5                 # new rows: the refit generalises, the rare label included
    with torch.no_grad():
        answers = heads_decisions(*heads(fresh))
    predicted_rare = torch.tensor(["admiration" in a["labels"] for a in answers])
    never = (fresh[:, 0] <= 7.4).float().mean()         # the priors' answer: the rare label never
    assert (predicted_rare == (fresh[:, 0] > 7.4)).float().mean() > never + 0.05


def test_the_refit_sample_follows_the_mixture_and_its_seed():
    from emoloom.training.heads_fit import refit_sample

    examples = {"goemotions": [("g", i) for i in range(500)], "empathetic": [("e", i) for i in range(500)]}
    mixture = {"goemotions": 20.0, "empathetic": 80.0}
    sample = refit_sample(examples, mixture, 100, seed=11)
    assert [s for s, _ in sample].count("g") == 20 and [s for s, _ in sample].count("e") == 80
    assert len(set(sample)) == 100 and sample == refit_sample(examples, mixture, 100, seed=11)
    assert sample != refit_sample(examples, mixture, 100, seed=12)
    assert len(refit_sample(examples, {"goemotions": 1.0, "empathetic": 0.0}, 900, seed=11)) == 500   # what there is
    reused = {"empathetic": examples["empathetic"][:90]}      # features at hand: first, up to the source's share
    first = refit_sample(examples, mixture, 100, seed=11, reused=reused)
    assert first[:80] == examples["empathetic"][:80] and len(set(first)) == 100     # sources in name order
    assert [s for s, _ in first].count("g") == 20
    topped = refit_sample(examples, mixture, 100, seed=11, reused={"goemotions": examples["goemotions"][:5]})
    assert topped[80:85] == examples["goemotions"][:5] and len(set(topped)) == 100       # a seeded draw tops it up


def test_the_refit_features_in_bf16_autocast_stay_fp32_and_close_to_the_fp32_ones(parts):
    """The refit extracts its features in the run's precision (bf16 autocast where training runs in bf16): they come
    back as fp32 vectors within bf16 rounding of the fp32 features, and differ from them (autocast took effect)."""
    from emoloom.training.setup import example_features

    model, tokenizer, _, examples, _, _ = parts
    cfg = replace(TINY_CFG, eval_batch=4)
    plain, labels, vad = example_features(model, examples[:6], cfg, tokenizer.pad_token_id)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, labels_low, vad_low = example_features(model, examples[:6], cfg, tokenizer.pad_token_id)
    assert low.dtype == torch.float32 and low.shape == plain.shape
    assert torch.equal(labels, labels_low) and torch.equal(vad, vad_low)
    scale = plain.abs().max()
    assert 0 < (low - plain).abs().max() < 0.05 * scale
    assert torch.nn.functional.cosine_similarity(low, plain).min() > 0.99


def test_heads_at_a_middle_layer_read_in_training_what_heads_mode_reads(parts):
    """With `heads_layer` k the training forward pools decoder layer k's output through the final norm; heads mode
    (the refit's and the evaluation's features) stops the forward at layer k and pools the same vectors."""
    model, tokenizer, _, examples, _, _ = parts
    rows = examples[:3]
    batch = collate(rows, tokenizer.pad_token_id)
    served = {}
    try:
        for layer in (0, 1):
            model.heads.layer = layer
            with torch.no_grad():
                trained = model(batch.input_ids, batch.attention_mask, batch.pool_mask, prefix_ids=batch.prefix_ids,
                                logit_rows=len(rows)).label_logits[:len(rows)]
            served[layer], _ = model.predict_heads([e.prompt_ids for e in rows], [e.user_start for e in rows],
                                                   tokenizer.pad_token_id)
            assert torch.allclose(trained, served[layer], atol=1e-5), layer
        assert not torch.allclose(served[0], served[1], atol=1e-3)           # layer 1 of 2 is not the last layer
        model.heads.layer = 3
        with pytest.raises(ParamError, match=r"sft.train.heads_layer: this backbone has 2 decoder layers .* got 3"):
            model.predict_heads([rows[0].prompt_ids], [rows[0].user_start], tokenizer.pad_token_id)
        assert model.lm.config.num_hidden_layers == 2                        # the depth is restored
    finally:
        model.heads.layer = 0


def test_twins_stopped_at_the_heads_layer_give_the_full_forwards_outputs_and_gradients(parts):
    """With the heads on layer 1 of 2, the Valence-Flip twins (rows past `logit_rows`) run one layer in a forward of
    their own, narrower than the batch; outputs and gradients (LoRA on both layers, heads) match every row through the
    whole depth, and the last layer sees only the example rows."""
    model, tokenizer, _, examples, _, _ = parts
    chosen = [e for e in examples if e.flipped_prompt_ids][:3] + [e for e in examples if not e.flipped_prompt_ids][:1]
    batch = collate(chosen, tokenizer.pad_token_id)
    b, k = batch.n_examples, batch.answer_len + 1
    assert batch.input_ids.size(0) == b + 3 and not batch.attention_mask[b:, 0].any()    # twins are left-padded
    seen = []
    hook = model.lm.get_decoder().layers[-1].register_forward_hook(lambda m, args, out: seen.append(args[0].size(0)))
    torch.manual_seed(1)
    w_logits = torch.randn(b, k, model.lm.config.vocab_size)          # a random linear read-out of every output
    w_labels, w_vad = torch.randn(b + 3, NUM_LABELS), torch.randn(b + 3, 3)

    def outputs_and_grads(forward):
        model.zero_grad(set_to_none=True)
        logits, labels, vad = forward()
        ((logits * w_logits).sum() + (labels * w_labels).sum() + (vad * w_vad).sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return (logits.detach(), labels.detach(), vad.detach()), grads

    def full_depth():
        out = lm_forward(model.lm, batch.input_ids, batch.attention_mask, batch.prefix_ids)
        logits = model.lm.get_output_embeddings()(out.hidden_states[-1][:b, -k:])
        return (logits, *model.heads(masked_mean(layer_output(model.lm, out.hidden_states, 1), batch.pool_mask)))

    try:
        model.heads.layer = 1
        split, grad_s = outputs_and_grads(lambda: model(batch.input_ids, batch.attention_mask, batch.pool_mask, k,
                                                        batch.prefix_ids, logit_rows=b))
        assert seen == [1, b]                                # the prefix, then the example rows only
        full, grad_f = outputs_and_grads(full_depth)
    finally:
        model.heads.layer = 0
        hook.remove()
    for a, c in zip(split, full):
        assert torch.allclose(a, c, atol=1e-5)
    assert set(grad_s) == set(grad_f) and any("lora" in n and ".layers.0." in n for n in grad_s)
    for name in grad_f:
        assert torch.allclose(grad_s[name], grad_f[name], rtol=1e-4, atol=1e-6), name


def test_the_decoder_alone_gives_the_lms_hidden_states_without_running_the_lm_head(parts):
    """`lm_forward(..., logits=False)` (the training forward and the heads' features) runs the decoder only: the same
    hidden states as the whole LM, bit for bit, in fp32 and in bf16 autocast, and the LM head is never called."""
    model, tokenizer, _, examples, _, _ = parts
    batch = collate(examples[:3], tokenizer.pad_token_id)
    head = model.lm.get_output_embeddings()
    calls = []
    hook = head.register_forward_hook(lambda m, args, out: calls.append(1))
    try:
        for amp in (False, True):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                whole = lm_forward(model.lm, batch.input_ids, batch.attention_mask, batch.prefix_ids)
                assert len(calls) == 1
                decoder = lm_forward(model.lm, batch.input_ids, batch.attention_mask, batch.prefix_ids, logits=False)
            assert len(calls) == 1 and not hasattr(decoder, "logits")
            assert len(whole.hidden_states) == len(decoder.hidden_states)
            for a, b in zip(whole.hidden_states, decoder.hidden_states):
                assert torch.equal(a, b)
            calls.clear()
    finally:
        hook.remove()


def test_the_lm_head_cast_once_under_bf16_autocast_gives_autocasts_logits_and_gradients_exactly(parts):
    """Under bf16 autocast `EmoModel.lm_head` casts the frozen vocabulary matrix once and keeps it: two steps give
    bit-identical logits and gradients to the head autocast casts at every call, from one kept copy."""
    model, tokenizer, _, examples, _, _ = parts
    batches = [collate(examples[:2], tokenizer.pad_token_id), collate(examples[2:5], tokenizer.pad_token_id)]

    def logits_and_grads(batch):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(batch.input_ids, batch.attention_mask, batch.pool_mask, batch.answer_len + 1,
                           batch.prefix_ids).logits
        assert logits.dtype == torch.bfloat16
        logits.float().log_softmax(-1).mean().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    kept = []
    for batch in batches:
        cached, grad_c = logits_and_grads(batch)
        kept.append(model.head_cast[1])
        model.lm_head = model.lm.get_output_embeddings()              # the head as autocast runs it, every call
        try:
            plain, grad_p = logits_and_grads(batch)
        finally:
            del model.lm_head
        assert torch.equal(cached, plain)
        assert set(grad_c) == set(grad_p) and any("lora" in n for n in grad_c)
        for name in grad_p:
            assert torch.equal(grad_c[name], grad_p[name]), name
    assert kept[0] is kept[1] and kept[0].dtype == torch.bfloat16
    with torch.no_grad():                                              # fp32: the head itself, no copy involved
        hidden = torch.randn(2, 3, model.lm.config.hidden_size)
        assert torch.equal(model.lm_head(hidden), model.lm.get_output_embeddings()(hidden))
