"""SFT examples: a record -> prompt tokens + answer tokens (+ the numeric targets), and batches that share a prefix.

Every prompt starts with the same system text (the contract's instructions and label list, 159 of ~181 tokens).
A batch runs that shared prefix once and each row only its own part:

    prefix (P tokens, once)  +  rows: [pad ... pad | own prompt part | answer | eos]      (B example rows)
                                      [pad ... pad | own prompt part of a Valence-Flip twin]  (F flip rows)

Left padding lines every answer up at the end of the batch, so the LM head only needs the last `answer_len + 1`
positions (`logits_to_keep`); position ids continue from the prefix. The heads pool each row's user turn (its message
or context, through the chat template's end), never the system text. With P = 0 this is the plain forward over
whole prompts, which gives the same losses and gradients (tests/test_sft_data.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields

import torch

from emoloom.core.contract import build_target, context_turns, encode_prompt, user_turn_start
from emoloom.core.errors import DataError, ParamError
from emoloom.core.labels import LABEL_INDEX, NUM_LABELS
from emoloom.modeling.batching import left_pad

RATIONALE_KEY = '"rationale":"'


@dataclass
class SFTExample:
    id: str
    source: str
    prompt_ids: list[int]
    answer_ids: list[int]            # target line tokens + eos
    rationale_mask: list[int]        # 1 where an answer token belongs to the rationale text
    label_mask: list[int]            # 1 where an answer token spells the labels list
    vad_mask: list[int]              # 1 where an answer token spells the vad object
    labels: list[float]              # multi-hot over LABELS
    vad: list[float]                 # target v, a, d
    user_start: int = 0              # where the prompt's own part begins (the heads pool from here)
    flipped_prompt_ids: list[int] | None = None   # the Valence-Flip twin's prompt, when the text has one
    flipped_user_start: int = 0
    text_ids: list[int] = field(default_factory=list)        # the message alone (the verifier's view of x)
    appraisal: list[float] = field(default_factory=list)     # atom prototype targets of the gold labels
    appraisal_mask: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.answer_ids)


def _span_mask(offsets, start: int, end: int) -> list[int]:
    """1 for each answer token overlapping target[start:end] (and 0 for the final eos)."""
    return [int(a < end and b > start) for a, b in offsets] + [0]


def encode(record: dict, tokenizer, flipped_text: str | None = None) -> SFTExample:
    """Tokenise one record into an SFT example (the answer is tokenised on its own, as a decoder would emit it)."""
    target = build_target(record["labels"], record["vad"], record.get("vad_cues") or [])
    enc = tokenizer(target, add_special_tokens=False, return_offsets_mapping=True)
    start = target.rindex(RATIONALE_KEY) + len(RATIONALE_KEY)
    end = len(target) - 2                                     # before the closing '"}'
    mask = _span_mask(enc.offset_mapping, start, end)
    label_mask = _span_mask(enc.offset_mapping, target.index("["), target.index("]") + 1)   # the labels list
    vad_start = target.index('"vad":') + len('"vad":')
    vad_mask = _span_mask(enc.offset_mapping, vad_start, target.index("}", vad_start) + 1)  # the vad object
    multi_hot = [0.0] * NUM_LABELS
    for name in record["labels"]:
        multi_hot[LABEL_INDEX[name]] = 1.0
    turns = context_turns(record)
    prompt = encode_prompt(tokenizer, record["text"], turns)
    flipped = encode_prompt(tokenizer, flipped_text, turns) if flipped_text else None
    return SFTExample(
        id=record["id"], source=record["source"], prompt_ids=prompt, answer_ids=enc.input_ids + [tokenizer.eos_token_id],
        rationale_mask=mask, label_mask=label_mask, vad_mask=vad_mask, labels=multi_hot, vad=[record["vad"][k] for k in "vad"],
        user_start=user_turn_start(tokenizer, prompt), flipped_prompt_ids=flipped,
        flipped_user_start=user_turn_start(tokenizer, flipped) if flipped else 0)


@dataclass
class Batch:
    prefix_ids: torch.Tensor         # (P,) prompt tokens every row shares, run once (P = 0: plain forward)
    input_ids: torch.Tensor          # (R, L) rows after the prefix: B example rows, then F flip rows
    attention_mask: torch.Tensor     # (R, L)
    pool_mask: torch.Tensor          # (R, L) 1 on each row's user turn (what the heads pool over)
    answer_targets: torch.Tensor     # (B, K) answer token ids right-aligned, -100 elsewhere
    rationale_mask: torch.Tensor     # (B, K)
    label_mask: torch.Tensor         # (B, K) 1 on the tokens of the labels list
    vad_mask: torch.Tensor           # (B, K) 1 on the tokens of the vad object
    answer_mask: torch.Tensor        # (B, K) 1 on answer tokens
    labels: torch.Tensor             # (B, NUM_LABELS)
    vad: torch.Tensor                # (B, 3)
    flip_rows: torch.Tensor          # (F,) the example row of each flip row (rows B .. B+F-1)
    text_ids: torch.Tensor           # (B, Lt) the messages alone, left-padded
    text_mask: torch.Tensor
    appraisal: torch.Tensor          # (B, M)
    appraisal_mask: torch.Tensor     # (B, M)
    sources: list[str]
    n_tokens: int                    # tokens the forward computes: the prefix once + every row's real tokens

    @property
    def answer_len(self) -> int:
        return self.answer_targets.size(1)

    @property
    def n_examples(self) -> int:
        return self.answer_targets.size(0)

    def to(self, device) -> "Batch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in moved.items()})


def shared_prefix(prompts: list[list[int]], starts: list[int]) -> int:
    """How many leading tokens all rows share, up to the earliest user turn (so no pooled token is in the prefix)."""
    n = min(starts)
    first = prompts[0]
    for row in prompts[1:]:
        n = next((i for i in range(n) if row[i] != first[i]), n)
    return n


def collate(examples: list[SFTExample], pad_id: int, share_prefix: bool = True) -> Batch:
    flips = [i for i, e in enumerate(examples) if e.flipped_prompt_ids]
    prompts = [e.prompt_ids for e in examples] + [examples[i].flipped_prompt_ids for i in flips]
    starts = [e.user_start for e in examples] + [examples[i].flipped_user_start for i in flips]
    p = shared_prefix(prompts, starts) if share_prefix else 0
    rows = [e.prompt_ids[p:] + e.answer_ids for e in examples] + [prompts[len(examples) + j][p:] for j in range(len(flips))]
    ids, mask = left_pad(rows, pad_id)
    width, k = ids.size(1), max(len(e.answer_ids) for e in examples)
    pool = torch.zeros_like(mask)
    for r, (prompt, start) in enumerate(zip(prompts, starts)):
        answer = len(examples[r].answer_ids) if r < len(examples) else 0
        pool[r, width - answer - (len(prompt) - start): width - answer] = 1
    targets = torch.full((len(examples), k), -100, dtype=torch.long)
    rationale, label, vad = (torch.zeros((len(examples), k)) for _ in range(3))
    for i, e in enumerate(examples):
        n = len(e.answer_ids)
        targets[i, k - n:] = torch.tensor(e.answer_ids)
        rationale[i, k - n:] = torch.tensor(e.rationale_mask, dtype=torch.float)
        label[i, k - n:] = torch.tensor(e.label_mask, dtype=torch.float)
        vad[i, k - n:] = torch.tensor(e.vad_mask, dtype=torch.float)
    text_ids, text_mask = left_pad([e.text_ids for e in examples], pad_id)
    return Batch(torch.tensor(prompts[0][:p], dtype=torch.long), ids, mask, pool, targets, rationale, label, vad,
                 (targets != -100).float(), torch.tensor([e.labels for e in examples]),
                 torch.tensor([e.vad for e in examples]), torch.tensor(flips, dtype=torch.long), text_ids, text_mask,
                 torch.tensor([e.appraisal for e in examples]), torch.tensor([e.appraisal_mask for e in examples]),
                 [e.source for e in examples], p + int(mask.sum()))


class SourceStream:
    """Endless seeded passes over one source's examples; its position is part of the resumable state."""

    def __init__(self, examples: list[SFTExample], seed: int, name: str):
        if not examples:
            raise DataError(f"source {name!r} has no training examples")
        self.examples, self.seed, self.name = examples, seed, name
        self.epoch, self.pos = 0, 0
        self.order = self._order()

    def _order(self) -> list[int]:
        order = list(range(len(self.examples)))
        random.Random(f"{self.seed}:{self.name}:{self.epoch}").shuffle(order)
        return order

    def take(self, n: int, max_len: int) -> list[SFTExample]:
        """The next n examples of at most max_len tokens (longer ones are passed over)."""
        if not any(len(e) <= max_len for e in self.examples):
            raise ParamError(f"source {self.name!r}: no example fits max_len={max_len} (raise sft.train.max_len)")
        out = []
        while len(out) < n:
            if self.pos == len(self.order):
                self.epoch, self.pos = self.epoch + 1, 0
                self.order = self._order()
            example = self.examples[self.order[self.pos]]
            self.pos += 1
            if len(example) <= max_len:
                out.append(example)
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]
        self.order = self._order()
