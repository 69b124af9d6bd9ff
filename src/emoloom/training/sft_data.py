"""SFT examples: a record -> prompt tokens + answer tokens (+ the numeric targets), and left-padded batches.

Sequence layout: [pad ... pad | prompt | answer | eos]. Left padding lines every answer up at the end of the batch,
so the LM head only needs the last `answer_len + 1` positions (`logits_to_keep`), and position ids are counted from
the first real token, as `generate` does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields

import torch

from emoloom.core.contract import build_target, context_turns, encode_prompt
from emoloom.core.labels import LABEL_INDEX, NUM_LABELS
from emoloom.modeling.batching import left_pad

RATIONALE_KEY = '"rationale": "'


@dataclass
class SFTExample:
    id: str
    source: str
    prompt_ids: list[int]
    answer_ids: list[int]            # target line tokens + eos
    rationale_mask: list[int]        # 1 where an answer token belongs to the rationale text
    labels: list[float]              # multi-hot over LABELS
    vad: list[float]                 # target v, a, d
    flipped_prompt_ids: list[int] | None = None   # the Valence-Flip twin's prompt, when the text has one
    text_ids: list[int] = field(default_factory=list)        # the message alone (the verifier's view of x)
    appraisal: list[float] = field(default_factory=list)     # atom prototype targets of the gold labels
    appraisal_mask: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.answer_ids)


def encode(record: dict, tokenizer, flipped_text: str | None = None) -> SFTExample:
    """Tokenise one record into an SFT example (the answer is tokenised on its own, as a decoder would emit it)."""
    target = build_target(record["labels"], record["vad"], record.get("vad_cues") or [])
    enc = tokenizer(target, add_special_tokens=False, return_offsets_mapping=True)
    start = target.rindex(RATIONALE_KEY) + len(RATIONALE_KEY)
    end = len(target) - 2                                     # before the closing '"}'
    mask = [int(a < end and b > start) for a, b in enc.offset_mapping] + [0]
    multi_hot = [0.0] * NUM_LABELS
    for name in record["labels"]:
        multi_hot[LABEL_INDEX[name]] = 1.0
    turns = context_turns(record)
    return SFTExample(
        id=record["id"], source=record["source"], prompt_ids=encode_prompt(tokenizer, record["text"], turns),
        answer_ids=enc.input_ids + [tokenizer.eos_token_id], rationale_mask=mask, labels=multi_hot,
        vad=[record["vad"][k] for k in "vad"],
        flipped_prompt_ids=encode_prompt(tokenizer, flipped_text, turns) if flipped_text else None)


@dataclass
class Batch:
    input_ids: torch.Tensor          # (B, L)
    attention_mask: torch.Tensor     # (B, L)
    prompt_mask: torch.Tensor        # (B, L) 1 on prompt tokens (what the heads pool over)
    answer_targets: torch.Tensor     # (B, K) answer token ids right-aligned, -100 elsewhere
    rationale_mask: torch.Tensor     # (B, K)
    answer_mask: torch.Tensor        # (B, K) 1 on answer tokens
    labels: torch.Tensor             # (B, NUM_LABELS)
    vad: torch.Tensor                # (B, 3)
    flip_rows: torch.Tensor          # (F,) indices of rows with a flipped twin
    flip_ids: torch.Tensor | None    # (F, Lf) flipped prompts, left-padded
    flip_mask: torch.Tensor | None
    text_ids: torch.Tensor           # (B, Lt) the messages alone, left-padded
    text_mask: torch.Tensor
    appraisal: torch.Tensor          # (B, M)
    appraisal_mask: torch.Tensor     # (B, M)
    sources: list[str]
    n_tokens: int                    # real (non-pad) tokens in the batch

    @property
    def answer_len(self) -> int:
        return self.answer_targets.size(1)

    def to(self, device) -> "Batch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in moved.items()})


def collate(examples: list[SFTExample], pad_id: int) -> Batch:
    ids, mask = left_pad([e.prompt_ids + e.answer_ids for e in examples], pad_id)
    width, k = ids.size(1), max(len(e.answer_ids) for e in examples)
    prompt_mask = torch.zeros_like(mask)
    targets = torch.full((len(examples), k), -100, dtype=torch.long)
    rationale = torch.zeros((len(examples), k))
    for i, e in enumerate(examples):
        n = len(e.answer_ids)
        prompt_mask[i, width - len(e) : width - n] = 1
        targets[i, k - n:] = torch.tensor(e.answer_ids)
        rationale[i, k - n:] = torch.tensor(e.rationale_mask, dtype=torch.float)
    flips = [i for i, e in enumerate(examples) if e.flipped_prompt_ids]
    flip_ids, flip_mask = left_pad([examples[i].flipped_prompt_ids for i in flips], pad_id) if flips else (None, None)
    text_ids, text_mask = left_pad([e.text_ids for e in examples], pad_id)
    return Batch(ids, mask, prompt_mask, targets, rationale, (targets != -100).float(),
                 torch.tensor([e.labels for e in examples]), torch.tensor([e.vad for e in examples]),
                 torch.tensor(flips, dtype=torch.long), flip_ids, flip_mask, text_ids, text_mask,
                 torch.tensor([e.appraisal for e in examples]), torch.tensor([e.appraisal_mask for e in examples]),
                 [e.source for e in examples], int(mask.sum()))


class SourceStream:
    """Endless seeded passes over one source's examples; its position is part of the resumable state."""

    def __init__(self, examples: list[SFTExample], seed: int, name: str):
        if not examples:
            raise ValueError(f"source {name!r} has no training examples")
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
            raise ValueError(f"source {self.name!r}: no example fits max_len={max_len}")
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
