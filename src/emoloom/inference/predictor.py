"""`EmotionModel`: a trained bundle that answers for any text, under the same contract, prompt and decoding as the
evaluation (docs/usage.md).

    from emoloom.inference import EmotionModel
    model = EmotionModel.load("best")                  # or a bundle directory: data/sft/<run>/model
    for p in model.predict(["I can't believe you did this!", "thanks so much"]):
        print(p.labels, p.vad, p.status)
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch

from emoloom.core.contract import parse_output
from emoloom.core.errors import MissingInputError
from emoloom.core.io import read_json
from emoloom.core.labels import LABELS
from emoloom.evaluation.heads import heads_mode
from emoloom.evaluation.runner import EvalConfig, decode_rows, fit_prompt
from emoloom.inference.inputs import InputRow, rows_from_texts
from emoloom.modeling.model import heads_decisions, load_bundle

MODES = ("generate", "heads", "both")       # the generated answer, the heads' answer, or both
DECODERS = ("exact", "cached", "reference")  # exact = the protocol's KV-off outputs at cached speed (docs/decoding.md)
BEST_POINTER = Path("metrics/best.json")     # written by the `compare` stage
DEFAULT_MAX_NEW_TOKENS = 56                  # eval.max_new_tokens: the contract line's P99 + margin (docs/contract.md)


@dataclass
class Prediction:
    id: str
    text: str | None
    status: str                   # "ok"; a contract failure (docs/contract.md); or an input error (inputs.py, too_long)
    labels: list[str] | None = None
    vad: dict[str, float] | None = None
    rationale: str | None = None
    raw: str | None = None        # the generated text as decoded
    heads: dict | None = None     # mode heads/both: {"labels": [...], "probs": {label: p}, "vad": {"v", "a", "d"}}

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_model(path: str | Path) -> Path:
    """A bundle directory; `best` is the one metrics/best.json names (found from the current directory up)."""
    if str(path) != "best":
        return Path(path)
    for root in (Path.cwd(), *Path.cwd().parents):
        pointer = root / BEST_POINTER
        if pointer.is_file():
            return root / read_json(pointer)["bundle"]
    raise MissingInputError(f"`best` needs {BEST_POINTER} (written by `dvc repro compare`) in this directory or above; "
                            f"run `make repro` first, or pass a bundle directory such as data/sft/20_80-s11/model")


class EmotionModel:
    """A loaded bundle (LoRA-adapted LM + heads) with its tokenizer and bundle.json (`info`)."""

    def __init__(self, model, tokenizer, info: dict, path: Path, precision: str = "fp32"):
        self.model, self.tokenizer, self.info, self.path, self.precision = model, tokenizer, info, path, precision

    @classmethod
    def load(cls, path: str | Path = "best", precision: str = "fp32", device: str = "cpu") -> "EmotionModel":
        """Load a bundle directory (or `best`); precision fp32 (the protocol's) or bf16 (autocast)."""
        bundle = resolve_model(path)
        model, tokenizer, info = load_bundle(bundle, device)
        return cls(model, tokenizer, info, bundle, precision)

    @property
    def max_new_tokens(self) -> int:
        """The decoding budget the bundle was trained and evaluated with."""
        return int(self.info.get("config", {}).get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))

    def predict(self, texts: str | Sequence[str], context: Sequence[str] = (), **options) -> list[Prediction]:
        """Predictions for `texts` (each after the same earlier dialogue turns `context`); options as `predict_rows`."""
        rows = rows_from_texts([texts] if isinstance(texts, str) else list(texts), context)
        return [p for batch in self.predict_rows(rows, **options) for p in batch]

    def predict_rows(self, rows: Iterable[InputRow], mode: str = "generate", decode: str = "exact",
                     batch_size: int = 16, max_new_tokens: int | None = None,
                     max_len: int = 1536) -> Iterator[list[Prediction]]:
        """Predictions batch by batch (for progress bars and incremental writing), in input order."""
        if mode not in MODES or decode not in DECODERS:
            raise ValueError(f"mode must be one of {MODES} and decode one of {DECODERS}, got {mode!r}, {decode!r}")
        budget = max_new_tokens or self.max_new_tokens
        window = min(max_len, getattr(self.model.lm.config, "max_position_embeddings", max_len))
        cfg = EvalConfig(max_new_tokens=budget, decode_mode=decode, batch_size=batch_size, max_len=window,
                         precision=self.precision)
        rows = iter(rows)
        while chunk := list(itertools.islice(rows, batch_size)):
            yield self._predict_batch(chunk, mode, cfg)

    def _predict_batch(self, chunk: list[InputRow], mode: str, cfg: EvalConfig) -> list[Prediction]:
        prompts = {i: fit_prompt({"text": r.text, "context": "\n".join(r.context)}, self.tokenizer, cfg.max_len,
                                 cfg.max_new_tokens) for i, r in enumerate(chunk) if r.error is None}
        live = [i for i, p in prompts.items() if p is not None]
        device = next(self.model.parameters()).device          # CPU autocast would leave CUDA tensors in fp32
        amp = torch.autocast(device.type, dtype=torch.bfloat16) if self.precision == "bf16" else contextlib.nullcontext()
        gens, heads = {}, {}
        with amp, torch.no_grad():
            if live and mode != "heads":
                out, _ = decode_rows(self.model.lm, self.tokenizer, [prompts[i] for i in live], cfg)
                gens = dict(zip(live, out))
            if live and mode != "generate":
                logits, vad = heads_mode(self.model, self.tokenizer, [prompts[i] for i in live], cfg.batch_size)
                heads = dict(zip(live, _heads_answers(logits, vad)))
        return [_prediction(r, prompts.get(i), gens.get(i), heads.get(i)) for i, r in enumerate(chunk)]


def _heads_answers(label_logits: torch.Tensor, vad: torch.Tensor) -> list[dict]:
    probs = torch.sigmoid(label_logits.float())
    return [{**answer, "probs": {k: round(float(p), 4) for k, p in zip(LABELS, row)}}
            for answer, row in zip(heads_decisions(label_logits, vad), probs)]


def _prediction(row: InputRow, prompt, gen, heads: dict | None) -> Prediction:
    base = Prediction(row.id, row.text, row.error or ("too_long" if prompt is None else "ok"), heads=heads)
    if base.status != "ok" or gen is None:
        return base
    result = parse_output(gen.text)
    base.status, base.raw = ("ok" if result.ok else result.failure), gen.text
    if result.ok:
        base.labels, base.vad, base.rationale = result.labels, result.vad, result.rationale
    return base
