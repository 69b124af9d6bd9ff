"""The one-line JSON contract: the frozen prompt, the target line, and the tail-scan parser.

Training and evaluation both import this module, so the model is taught and scored on the same strings.
The rules are documented in docs/contract.md; changing the prompt text requires bumping PROMPT_VERSION.
"""

from __future__ import annotations

import functools
import json
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

from emoloom.core.labels import LABEL_INDEX, LABELS

PROMPT_VERSION = "emoloom-v2"

SYSTEM_PROMPT = (
    "Label the emotions of the message. Reply with one line of JSON only:\n"
    '{"labels":[...],"vad":{"v":...,"a":...,"d":...},"rationale":"..."}\n'
    f"labels: one or more of {', '.join(LABELS)}.\n"
    "v, a, d: valence, arousal, dominance from 0 to 1, two decimals.\n"
    "rationale: the words that carry the emotion, at most 12."
)
CONTEXT_HEADER = "Context:"
MESSAGE_PREFIX = "Message: "
PLAIN_ANSWER_CUE = "JSON:\n"  # ends the plain-text prompt of tokenizers without a chat template

# Caps keep the target line within the decoding budgets: P99 48-49 tokens, max 56 (docs/contract.md, "Budget").
MAX_RATIONALE_WORDS = 12
MAX_RATIONALE_CUES = 2
NO_CUES_RATIONALE = "no cue words"

FAILURES = (
    "no_json",         # no balanced {...} object at all
    "bad_json",        # the last object does not decode as JSON (single quotes, trailing comma, NaN, ...)
    "truncated",       # the text ends inside an unclosed object (e.g. the new-token budget ran out)
    "missing_labels",  # no "labels" key (or null)
    "bad_labels",      # "labels" is not a list of strings
    "unknown_label",   # a label outside LABELS
    "missing_vad",     # no "vad" key (or null)
    "bad_vad",         # "vad" is not an object with numeric v, a, d
    "vad_range",       # v, a or d outside [0, 1]
    "bad_rationale",   # "rationale" present but not a string
)


# ---------------------------------------------------------------- prompt

def _user_turn(text: str, context: str | Sequence[str] | None) -> str:
    turns = [context] if isinstance(context, str) else list(context or ())
    turns = [t for t in turns if t and t.strip()]
    user = f"{MESSAGE_PREFIX}{text}"
    return "\n".join([CONTEXT_HEADER, *turns, "", user]) if turns else user


def build_messages(text: str, context: str | Sequence[str] | None = None,
                   examples: Sequence[tuple[str, str]] = ()) -> list[dict[str, str]]:
    """System + user chat messages; `context` is the previous turns (oldest first) or one string. `examples`
    ((message, answer line) pairs; screening's few-shot arm only) go before it as user/assistant turns."""
    shots = [m for text_, answer in examples for m in ({"role": "user", "content": _user_turn(text_, None)},
                                                      {"role": "assistant", "content": answer})]
    return [{"role": "system", "content": SYSTEM_PROMPT}, *shots, {"role": "user", "content": _user_turn(text, context)}]


def build_prompt(text: str, context: str | Sequence[str] | None, tokenizer=None,
                 examples: Sequence[tuple[str, str]] = ()) -> str:
    """The frozen prompt; the answer (the target line) is appended to it verbatim.

    Uses the tokenizer's chat template (with the generation prompt) when it has one; a template that rejects
    the system role gets the system text folded into the first user turn. Without a template (or tokenizer) the
    prompt is plain text ending in PLAIN_ANSWER_CUE (each example: its message, the cue and its answer). The result
    already holds the template's special tokens: tokenize it with add_special_tokens=False.
    """
    messages = build_messages(text, context, examples)
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # jinja templates raise their own error types, e.g. "system role not supported"
            merged = {"role": "user", "content": f"{messages[0]['content']}\n\n{messages[1]['content']}"}
            return tokenizer.apply_chat_template([merged, *messages[2:]], tokenize=False, add_generation_prompt=True)
    turns = [f"{m['content']}\n{PLAIN_ANSWER_CUE}" if m["role"] == "user" else f"{m['content']}\n\n"
             for m in messages[1:]]
    return f"{messages[0]['content']}\n\n" + "".join(turns)


def context_turns(record: dict) -> list[str]:
    """The dialogue turns before a record's text (oldest first), from its newline-joined `context`."""
    return [t for t in (record.get("context") or "").split("\n") if t.strip()]


def encode_prompt(tokenizer, text: str, turns: Sequence[str], examples: Sequence[tuple[str, str]] = ()) -> list[int]:
    """Token ids of the frozen prompt (the template already holds its special tokens)."""
    return tokenizer(build_prompt(text, turns, tokenizer, examples), add_special_tokens=False).input_ids


@functools.lru_cache(maxsize=8)
def _system_part(tokenizer) -> tuple[int, tuple[int, ...]]:
    """(length, ids) of the prompt before any message: the tokens two prompts with different messages share."""
    a, b = encode_prompt(tokenizer, "a", []), encode_prompt(tokenizer, "b", [])
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return n, tuple(a[:n])


def user_turn_start(tokenizer, prompt_ids: Sequence[int]) -> int:
    """Where a prompt's own part begins (its message, or its dialogue context): the tokens before it are the same
    system text for every record. The heads pool over the prompt from here on."""
    n, system = _system_part(tokenizer)
    return next((i for i, (x, y) in enumerate(zip(prompt_ids, system)) if x != y), min(n, len(prompt_ids)))


# ---------------------------------------------------------------- target

def _ascii_word(word: str) -> str:
    word = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode().lower()
    return " ".join(re.sub(r"[^a-z0-9'\- ]+", " ", word).split())


def canonical_labels(labels: Sequence[str]) -> list[str]:
    """Deduplicated labels in canonical LABELS order; an unknown name raises ValueError."""
    unknown = [name for name in labels if name not in LABEL_INDEX]
    if unknown:
        raise ValueError(f"unknown label(s): {unknown}")
    return sorted(set(labels), key=LABEL_INDEX.__getitem__)


def build_rationale(cue_words: Sequence[str]) -> str:
    """The words that carry the emotion: '<cue>' or '<cue>, <cue>' within MAX_RATIONALE_WORDS, else NO_CUES_RATIONALE.

    Cue words keep the caller's (salience) order, are made lowercase ASCII and deduplicated; the longest prefix
    of at most MAX_RATIONALE_CUES of them that fits is used.
    """
    cues = list(dict.fromkeys(w for w in map(_ascii_word, cue_words) if w))[:MAX_RATIONALE_CUES]
    for k in range(len(cues), 0, -1):
        sentence = ", ".join(cues[:k])
        if len(sentence.split()) <= MAX_RATIONALE_WORDS:
            return sentence
    return NO_CUES_RATIONALE


def _vad_number(x: float) -> str:
    x = float(x)
    if math.isnan(x):
        raise ValueError("VAD value is NaN")
    return f"{min(max(x, 0.0), 1.0):.2f}"


def build_target(labels: Sequence[str], vad: dict[str, float], cue_words: Sequence[str] = ()) -> str:
    """The one-line JSON answer, compact (no spaces between tokens), e.g.
    {"labels":["gratitude"],"vad":{"v":0.81,"a":0.47,"d":0.58},"rationale":"thanks, love"}

    Labels in canonical order; v, a, d clipped to [0, 1] and written with exactly two decimals.
    """
    v, a, d = (_vad_number(vad[k]) for k in "vad")
    labels_json = json.dumps(canonical_labels(labels), separators=(",", ":"))
    return (f'{{"labels":{labels_json},"vad":{{"v":{v},"a":{a},"d":{d}}},'
            f'"rationale":{json.dumps(build_rationale(cue_words))}}}')


# ---------------------------------------------------------------- parser

@dataclass(frozen=True)
class ParseResult:
    ok: bool
    labels: list[str] | None = None
    vad: dict[str, float] | None = None
    rationale: str | None = None
    failure: str | None = None  # one of FAILURES when not ok


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def _spans(text: str) -> tuple[list[tuple[int, int]], bool]:
    """Top-level balanced '{...}' spans (start, end), and whether the text ends inside an unclosed one.

    Quotes open strings only inside an object, so braces in JSON strings are skipped while chatter
    outside objects may hold any characters; a stray '}' outside an object is ignored.
    """
    spans, depth, start, in_str, esc = [], 0, 0, False, False
    for i, ch in enumerate(text):
        if in_str:
            in_str, esc = (esc or ch != '"'), (not esc and ch == "\\")
        elif ch == '"' and depth:
            in_str = True
        elif ch == "{":
            start = i if depth == 0 else start
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                spans.append((start, i + 1))
    return spans, depth > 0


def _decode(text: str, start: int, end: int):
    """The JSON object text[start:end], or None if it does not decode."""
    try:
        return _DECODER.decode(text[start:end])
    except ValueError:
        return None


def json_end(text: str) -> int | None:
    """Index just past the first top-level object in `text` that decodes as JSON, else None.

    The early-stop rule for decoders: stop once this is not None (or at EOS) and keep text[:json_end].
    A plain '}' stop string would cut the answer at the end of the nested "vad" object.
    """
    spans, _ = _spans(text)
    return next((end for start, end in spans if _decode(text, start, end) is not None), None)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _validate(obj: dict) -> ParseResult:
    labels, vad, rationale = obj.get("labels"), obj.get("vad"), obj.get("rationale")
    if labels is None:
        return ParseResult(False, failure="missing_labels")
    if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
        return ParseResult(False, failure="bad_labels")
    labels = [name.strip().lower() for name in labels]
    if any(name not in LABEL_INDEX for name in labels):
        return ParseResult(False, failure="unknown_label")
    if vad is None:
        return ParseResult(False, failure="missing_vad")
    if not isinstance(vad, dict) or not all(_is_number(vad.get(k)) for k in "vad"):
        return ParseResult(False, failure="bad_vad")
    if not all(0.0 <= vad[k] <= 1.0 for k in "vad"):
        return ParseResult(False, failure="vad_range")
    if rationale is not None and not isinstance(rationale, str):
        return ParseResult(False, failure="bad_rationale")
    return ParseResult(True, canonical_labels(labels), {k: float(vad[k]) for k in "vad"}, rationale)


def parse_output(generated_text: str) -> ParseResult:
    """Tail-scan the generated text for the last top-level JSON object that satisfies the contract.

    Chatter, code fences and junk around the object are ignored. If no object is valid, the failure is
    'truncated' when the text ends inside an unclosed object, else that of the last object ('bad_json' if it
    does not decode), else 'no_json'.
    """
    spans, ends_open = _spans(generated_text)
    failure = None
    for start, end in reversed(spans):
        obj = _decode(generated_text, start, end)
        result = _validate(obj) if obj is not None else ParseResult(False, failure="bad_json")
        if result.ok:
            return result
        failure = failure or result.failure
    return ParseResult(False, failure="truncated" if ends_open else failure or "no_json")
