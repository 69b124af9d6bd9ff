"""Fitting the appraisal-atom verifier (stage `train_verifier`): masked soft-target BCE against the label prototypes,
over the lexical-token count features of emoloom.modeling.verifier; dev AUC / accuracy per atom. docs/verifier.md."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from emoloom.core.config import option, validate
from emoloom.core.contract import build_target
from emoloom.core.errors import DataError
from emoloom.data.lexicon import Lexicon
from emoloom.modeling.token_lexicon import lexical_tokens
from emoloom.modeling.verifier import ATOMS, AppraisalVerifier, prototype_targets, tokenizer_sha1


@dataclass
class VerifierConfig:
    """The verifier's fit (params.yaml `train_verifier`)."""
    seed: int = option(0, "init + minibatch order; same seed -> byte-identical verifier.pt")
    epochs: int = option(2, "passes over the training rows (more epochs overfit to the answer's label names)", ge=1)
    batch_size: int = option(256, "rows per AdamW step", ge=1)
    lr: float = option(0.01, "AdamW learning rate", gt=0)
    weight_decay: float = option(0.0, "AdamW (decoupled) weight decay", ge=0)
    hidden: int = option(0, "0: logistic regression; > 0: one tanh hidden layer of this width", ge=0)
    feature_scale: float = option(100.0, "features = feature_scale * counts / n_tokens", gt=0)
    with_answer: bool = option(True, "train on (x, a) as in the paper; False: on the text x alone (docs/verifier.md)")

    def __post_init__(self) -> None:
        validate(self, "train_verifier")


def verifier_inputs(records: Sequence[dict], tokenizer, with_answer: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded token ids (N, L) and mask of x (the record's text) followed, if with_answer, by its gold answer a
    (contract.build_target of labels, vad, vad_cues); both tokenized without special tokens."""
    seqs = tokenizer([r["text"] for r in records], add_special_tokens=False)["input_ids"]
    if with_answer:
        answers = [build_target(r["labels"], r["vad"], r.get("vad_cues") or ()) for r in records]
        seqs = [x + a for x, a in zip(seqs, tokenizer(answers, add_special_tokens=False)["input_ids"])]
    width = max(map(len, seqs), default=0)
    ids = torch.zeros(len(seqs), width, dtype=torch.int32)
    mask = torch.zeros(len(seqs), width, dtype=torch.bool)
    for i, seq in enumerate(seqs):
        ids[i, :len(seq)] = torch.tensor(seq, dtype=torch.int32)
        mask[i, :len(seq)] = True
    return ids, mask


def stacked_targets(records: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """prototype_targets of every record's labels, as (N, M) targets and masks."""
    pairs = [prototype_targets(r["labels"]) for r in records]
    return torch.stack([t for t, _ in pairs]), torch.stack([m for _, m in pairs])


@torch.no_grad()
def sparse_features(verifier: AppraisalVerifier, ids: torch.Tensor, mask: torch.Tensor,
                    chunk: int = 1024) -> torch.Tensor:
    """verifier.features of the hard counts of padded token ids, as a sparse (N, F) matrix: training batches are
    gathered from it (dense rows would cost N x F per epoch)."""
    parts = [verifier.features(*verifier.counts_from_ids(ids[i:i + chunk].long(), mask[i:i + chunk])).to_sparse()
             for i in range(0, len(ids), chunk)]
    return torch.cat(parts).coalesce()


@torch.no_grad()
def predict(verifier: AppraisalVerifier, ids: torch.Tensor, mask: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Scores (N, M) of padded token ids."""
    verifier.eval()
    out = [verifier(*verifier.counts_from_ids(ids[i:i + batch_size].long(), mask[i:i + batch_size]))
           for i in range(0, len(ids), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, len(verifier.atoms))


def atom_metrics(scores: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor,
                 majority: dict[str, int]) -> dict[str, dict]:
    """Per atom, over rows whose target is exactly 0 or 1: AUC, accuracy at 0.5, n, and the accuracy of always
    predicting the training majority class. A mean over atoms is under "mean"."""
    out = {}
    for m, atom in enumerate(ATOMS):
        keep = (masks[:, m] > 0) & ((targets[:, m] == 0) | (targets[:, m] == 1))
        y, s = targets[keep, m].numpy(), scores[keep, m].numpy()
        auc = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None
        out[atom] = {
            "n": int(keep.sum()), "auc": _round(auc),
            "acc": _round(float(((s >= 0.5) == (y == 1)).mean()) if len(y) else None),
            "majority_acc": _round(float((y == majority[atom]).mean()) if len(y) else None),
        }
    for key in ("auc", "acc", "majority_acc"):
        values = [out[a][key] for a in ATOMS if out[a][key] is not None]
        out.setdefault("mean", {})[key] = _round(sum(values) / len(values) if values else None)
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def majority_classes(targets: torch.Tensor, masks: torch.Tensor) -> dict[str, int]:
    """Per atom, the more frequent of 0 / 1 among rows whose target is exactly 0 or 1 (ties: 1)."""
    out = {}
    for m, atom in enumerate(ATOMS):
        t = targets[masks[:, m] > 0, m]
        out[atom] = int((t == 1).sum() >= (t == 0).sum())
    return out


def train_verifier(train_records: Sequence[dict], dev_records: Sequence[dict], tokenizer, lexicon: Lexicon,
                   cfg: VerifierConfig) -> tuple[AppraisalVerifier, dict]:
    """Fit f_app by masked (soft-target) BCE against the label prototypes, on (x, a) or, if not cfg.with_answer,
    on x alone; the features are the tokenizer's lexical tokens (token_lexicon.lexical_tokens). Deterministic for
    a given seed on CPU.

    Metrics on dev, per atom, both ways: with the gold answer in the input (x, a), and on the text x alone.
    """
    feature_ids, _ = lexical_tokens(tokenizer, lexicon)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        verifier = AppraisalVerifier(feature_ids, tokenizer_sha1(tokenizer), cfg.hidden, cfg.feature_scale)
    targets, masks = stacked_targets(train_records)
    keep = masks.sum(1) > 0                                 # rows with no determined atom (neutral) carry no loss
    if not keep.any():
        raise DataError("no training row has a label that determines an appraisal atom")
    kept = [r for r, k in zip(train_records, keep.tolist()) if k]
    features = sparse_features(verifier, *verifier_inputs(kept, tokenizer, cfg.with_answer))
    targets_kept, masks_kept = targets[keep], masks[keep]

    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(verifier.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses = []
    progress = tqdm(range(cfg.epochs), desc="train_verifier", unit=" epoch")
    for _ in progress:
        verifier.train()
        total, seen = 0.0, 0
        for batch in torch.randperm(len(kept), generator=generator).split(cfg.batch_size):
            logits = verifier.net(features.index_select(0, batch))
            bce = F.binary_cross_entropy_with_logits(logits, targets_kept[batch], reduction="none")
            loss = (bce * masks_kept[batch]).sum() / masks_kept[batch].sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, seen = total + loss.item() * len(batch), seen + len(batch)
        losses.append(round(total / seen, 4))
        progress.set_postfix(loss=losses[-1])
    verifier.eval().requires_grad_(False)

    majority = majority_classes(targets, masks)
    dev_targets, dev_masks = stacked_targets(dev_records)
    metrics = {
        "atoms": list(ATOMS), "features": verifier.num_features, "train_rows": len(train_records),
        "train_rows_with_targets": len(kept), "dev_rows": len(dev_records), "train_loss": losses,
        "config": asdict(cfg), "majority_class": majority,
        "dev": {name: atom_metrics(predict(verifier, *verifier_inputs(dev_records, tokenizer, with_answer)),
                                   dev_targets, dev_masks, majority)
                for name, with_answer in (("with_answer", True), ("text_only", False))},
    }
    return verifier, metrics
