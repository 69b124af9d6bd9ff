"""A:B mixtures of two record pools with a frozen, seeded train/dev split.

Every decision is a hash of (seed, record id), never of a row's position, so re-sharding, re-ordering or adding rows
cannot move a record between train and dev, and a record is in dev in every mixture that takes it or in none.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from emoloom.core.config import option, require, validate
from emoloom.core.errors import DataError


@dataclass(frozen=True)
class MixConfig:
    """The mixtures and their frozen split (params.yaml `mix`)."""
    seed: int = option(42, "seed of the sample, the order and the train/dev split")
    dev_frac: float = option(0.05, "a record is in dev iff hash(seed, id) < dev_frac", gt=0, lt=1)
    max_rows: int | None = option(None, "cap on a mixture's size (null: as large as the ratio allows)", ge=2)
    mixtures: dict = option(default_factory=dict, help="name -> [GoEmotions weight, EmpatheticDialogues weight]")

    def __post_init__(self) -> None:
        validate(self, "mix")
        require(bool(self.mixtures), "mix.mixtures: at least one mixture is needed")
        for name, weights in self.mixtures.items():
            ok = (isinstance(weights, (list, tuple)) and len(weights) == 2
                  and all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights)
                  and sum(weights) > 0)
            require(ok, f"mix.mixtures.{name}: expected [GoEmotions weight, EmpatheticDialogues weight], numbers >= 0 "
                        f"and not both 0; got {weights!r}")


def unit_hash(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts."""
    digest = hashlib.sha1(":".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def is_dev(record_id: str, seed: int, dev_frac: float) -> bool:
    return unit_hash(seed, "split", record_id) < dev_frac


def mixture_sizes(n_a: int, n_b: int, weight_a: float, weight_b: float, max_rows: int | None = None) -> tuple[int, int]:
    """Largest (k_a, k_b) with k_a : k_b = weight_a : weight_b that both pools (and max_rows) allow."""
    if weight_a < 0 or weight_b < 0 or weight_a + weight_b <= 0:
        raise DataError(f"mixture weights must be >= 0 and not both 0, got {weight_a}:{weight_b}")
    share_a = weight_a / (weight_a + weight_b)
    limits = [n_a / share_a if share_a > 0 else math.inf, n_b / (1 - share_a) if share_a < 1 else math.inf]
    if max_rows is not None:
        limits.append(max_rows)
    total = math.floor(min(limits) + 1e-9)
    k_a = min(n_a, round(total * share_a))
    return k_a, min(n_b, total - k_a)


def take(records: list[dict], k: int, seed: int, pool: str) -> list[dict]:
    """The k records of a pool with the smallest hash of (seed, pool, id): a seeded sample that ignores file order."""
    return sorted(records, key=lambda r: unit_hash(seed, pool, r["id"]))[:k]


def build_mixture(pool_a: list[dict], pool_b: list[dict], weight_a: float, weight_b: float, seed: int,
                  dev_frac: float, max_rows: int | None = None) -> tuple[list[dict], list[dict]]:
    """(train, dev) of the A:B mixture; rows are in a seeded order that interleaves the two sources."""
    k_a, k_b = mixture_sizes(len(pool_a), len(pool_b), weight_a, weight_b, max_rows)
    rows = take(pool_a, k_a, seed, "A") + take(pool_b, k_b, seed, "B")
    rows.sort(key=lambda r: unit_hash(seed, "order", r["id"]))
    train = [r for r in rows if not is_dev(r["id"], seed, dev_frac)]
    dev = [r for r in rows if is_dev(r["id"], seed, dev_frac)]
    for split, part in (("train", train), ("dev", dev)):
        if not part:
            raise DataError(f"mixture {weight_a}:{weight_b}: the {split} split is empty ({len(rows)} rows sampled "
                            f"from pools of {len(pool_a)} and {len(pool_b)} rows, dev_frac={dev_frac}); "
                            f"check the weak_vad output (tau) and mix.dev_frac")
    return train, dev
