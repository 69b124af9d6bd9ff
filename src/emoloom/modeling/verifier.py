"""The appraisal-atom verifier f_app: appraisal prototypes per label, and a small classifier over token counts.

f_app(x, a) scores M appraisal atoms in (0,1) from the counts of "feature tokens" (vocabulary tokens that are lexicon
words) in the input x and the answer a. Counts are linear in the tokens, so SFT can feed the generator's *expected*
counts (counts_from_probs) and L_app = BCE(f_app(x, a), s~(y)) is differentiable (paper, Algorithm 1 line 11).
docs/verifier.md has the rationale and the measured metrics.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from emoloom.core.io import atomic_path
from emoloom.core.labels import LABEL_INDEX, LABELS

ATOMS: tuple[str, ...] = ("goal_attainment", "controllability", "certainty", "fairness", "self_agency")
PROTOTYPES_FILE = "appraisal_prototypes.tsv"
FORMAT_VERSION = 1


# ---------------------------------------------------------------- prototypes

def load_prototypes(path: str | os.PathLike | None = None) -> dict[str, tuple[float | None, ...]]:
    """label -> one value in [0,1] (or None for '-') per atom, from the packaged table or `path`.

    The table is TSV with '#' comments and a header row `label<TAB><atoms...>`; every GoEmotions label must have
    exactly one row. Errors name file:line.
    """
    name = str(path) if path else PROTOTYPES_FILE
    text = (Path(path).read_text(encoding="utf-8") if path
            else resources.files("emoloom").joinpath("mappings", PROTOTYPES_FILE).read_text(encoding="utf-8"))
    table: dict[str, tuple[float | None, ...]] = {}
    first_line: dict[str, int] = {}
    header_seen = False
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split("\t")]
        where = f"{name}:{lineno}"
        if not header_seen:
            if tuple(fields) != ("label", *ATOMS):
                raise ValueError(f"{where}: expected the header 'label<TAB>{'<TAB>'.join(ATOMS)}', got {fields}")
            header_seen = True
            continue
        if len(fields) != 1 + len(ATOMS):
            raise ValueError(f"{where}: expected a label and {len(ATOMS)} values, got {len(fields)} fields")
        label, raw = fields[0], fields[1:]
        if label not in LABEL_INDEX:
            raise ValueError(f"{where}: {label!r} is not a GoEmotions label")
        if label in first_line:
            raise ValueError(f"{where}: duplicate row for {label!r} (first at line {first_line[label]})")
        first_line[label] = lineno
        table[label] = tuple(_prototype_value(v, atom, where) for v, atom in zip(raw, ATOMS))
    missing = [label for label in LABELS if label not in table]
    if missing:
        raise ValueError(f"{name}: no row for labels {missing}")
    return table


def _prototype_value(raw: str, atom: str, where: str) -> float | None:
    if raw == "-":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{where}: {atom} must be a number in [0,1] or '-', got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{where}: {atom} = {value} is outside [0,1]")
    return value


@lru_cache(maxsize=1)
def _prototype_matrix() -> tuple[torch.Tensor, torch.Tensor]:
    """(values, defined) as (K, M) tensors in LABELS order; values are 0 where undefined."""
    table = load_prototypes()
    defined = torch.tensor([[v is not None for v in table[label]] for label in LABELS], dtype=torch.float32)
    values = torch.tensor([[v or 0.0 for v in table[label]] for label in LABELS], dtype=torch.float32)
    return values, defined


def prototype_targets(labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(target (M,), mask (M,)) of a label set: per atom, the mean prototype over the labels that determine it;
    mask is 0 (and target 0) where none does."""
    unknown = [label for label in labels if label not in LABEL_INDEX]
    if unknown:
        raise ValueError(f"unknown label(s): {unknown}")
    values, defined = _prototype_matrix()
    rows = [LABEL_INDEX[label] for label in dict.fromkeys(labels)]
    n = defined[rows].sum(0)
    target = torch.where(n > 0, values[rows].sum(0) / n.clamp_min(1), torch.zeros(()))
    return target, (n > 0).float()


# ---------------------------------------------------------------- verifier

def tokenizer_sha1(tokenizer) -> str:
    """sha1 of the tokenizer's id -> token table: what the verifier's feature ids mean."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return hashlib.sha1(json.dumps(tokens, ensure_ascii=False).encode("utf-8")).hexdigest()


class AppraisalVerifier(nn.Module):
    """scores = sigmoid(net(feature_scale * counts / n_tokens)), with counts over the feature tokens `feature_ids`."""

    def __init__(self, feature_ids: Sequence[int], tokenizer_sha1: str, hidden: int = 0, feature_scale: float = 100.0,
                 atoms: Sequence[str] = ATOMS):
        super().__init__()
        ids = torch.as_tensor(list(feature_ids), dtype=torch.long)
        if ids.numel() == 0:
            raise ValueError("the verifier needs at least one feature token")
        self.atoms = tuple(atoms)
        self.tokenizer_sha1 = tokenizer_sha1
        self.hidden, self.feature_scale = int(hidden), float(feature_scale)
        self.register_buffer("feature_ids", ids)
        # token id -> feature column; ids past the largest feature id (and padding) go to the dropped column F
        lookup = torch.full((int(ids.max()) + 2,), len(ids), dtype=torch.long)
        lookup[ids] = torch.arange(len(ids))
        self.register_buffer("_column", lookup, persistent=False)
        n_in, n_out = len(ids), len(self.atoms)
        self.net = (nn.Linear(n_in, n_out) if self.hidden == 0
                    else nn.Sequential(nn.Linear(n_in, self.hidden), nn.Tanh(), nn.Linear(self.hidden, n_out)))

    @property
    def num_features(self) -> int:
        return self.feature_ids.numel()

    def counts_from_ids(self, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hard counts (B, F) of feature tokens among the masked-in positions of input_ids (B, L), and n_tokens (B,)."""
        mask = mask.to(torch.float32)
        last = len(self._column) - 1
        ids = torch.where((input_ids >= 0) & (input_ids < last), input_ids, last)
        counts = torch.zeros(ids.size(0), self.num_features + 1, device=ids.device)
        counts.scatter_add_(1, self._column[ids], mask)
        return counts[:, :-1], mask.sum(1)

    def counts_from_probs(self, feature_probs: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Expected counts (B, F) = sum_j p_j(feature token f) over positions (B, J) = 1, and n_tokens (B,).

        feature_probs (B, J, F) are next-token probabilities of the feature tokens `feature_ids`, in that order (e.g.
        the teacher-forced answer distributions, gathered); one-hot rows give exactly counts_from_ids. Differentiable.
        """
        positions = positions.to(torch.float32)
        counts = (feature_probs.float() * positions.unsqueeze(-1)).sum(1)
        return counts, positions.sum(1)

    def features(self, counts: torch.Tensor, n_tokens: torch.Tensor) -> torch.Tensor:
        """The fixed transform: occurrences per `feature_scale` tokens, feature_scale * counts / max(n_tokens, 1)."""
        return self.feature_scale * counts / n_tokens.clamp_min(1.0).unsqueeze(-1)

    def forward(self, counts: torch.Tensor, n_tokens: torch.Tensor) -> torch.Tensor:
        """Atom scores (B, M) in (0, 1) from counts (B, F) and n_tokens (B,) (hard, expected, or their sum)."""
        return torch.sigmoid(self.net(self.features(counts, n_tokens)))

    def check_tokenizer(self, tokenizer) -> None:
        """Raise ValueError unless `tokenizer` is the one the verifier was built for."""
        got = tokenizer_sha1(tokenizer)
        if got != self.tokenizer_sha1:
            raise ValueError(f"the appraisal verifier was built for tokenizer {self.tokenizer_sha1}, not {got}: "
                             "retrain it for this backbone (dvc repro train_verifier)")

    def save(self, path: str | os.PathLike) -> None:
        """One torch file with the weights, atoms, feature ids, tokenizer sha1 and config; byte-identical for equal
        verifiers (written atomically)."""
        state = {
            "format": FORMAT_VERSION, "atoms": list(self.atoms), "tokenizer_sha1": self.tokenizer_sha1,
            "config": {"hidden": self.hidden, "feature_scale": self.feature_scale},
            "state": {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)  # into memory: the file name would otherwise become the archive's record prefix
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike, tokenizer=None) -> "AppraisalVerifier":
        """A frozen verifier in eval mode; with `tokenizer`, refuse one built for another tokenizer."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: not an appraisal verifier file (format {FORMAT_VERSION})")
        verifier = cls(state["state"]["feature_ids"].tolist(), state["tokenizer_sha1"], atoms=state["atoms"],
                       **state["config"])
        verifier.load_state_dict(state["state"])
        if tokenizer is not None:
            verifier.check_tokenizer(tokenizer)
        return verifier.eval().requires_grad_(False)
