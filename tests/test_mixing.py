import random

import pytest

from emoloom.data.mixing import build_mixture, is_dev, mixture_sizes


def pool(source, n):
    return [{"id": f"{source}:train:{i}", "source": source} for i in range(n)]


A, B = pool("goemotions", 3000), pool("empathetic", 2000)


@pytest.mark.parametrize("wa, wb, expected", [(20, 80, (500, 2000)), (50, 50, (2000, 2000)), (80, 20, (3000, 750)),
                                              (1, 0, (3000, 0))])
def test_sizes_are_exact_and_maximal(wa, wb, expected):
    assert mixture_sizes(3000, 2000, wa, wb) == expected


def test_max_rows_caps_and_bad_weights_fail():
    assert mixture_sizes(3000, 2000, 50, 50, max_rows=100) == (50, 50)
    with pytest.raises(ValueError):
        mixture_sizes(10, 10, -1, 2)


def test_split_is_frozen_under_reordering_and_resharding():
    train, dev = build_mixture(A, B, 20, 80, seed=42, dev_frac=0.05)
    shuffled_a, shuffled_b = A[:], B[:]
    random.Random(0).shuffle(shuffled_a)
    random.Random(1).shuffle(shuffled_b)
    train2, dev2 = build_mixture(shuffled_a, shuffled_b, 20, 80, seed=42, dev_frac=0.05)
    assert [r["id"] for r in dev] == [r["id"] for r in dev2] and [r["id"] for r in train] == [r["id"] for r in train2]
    # a record's side never depends on which other records exist (re-sharding, growing pools, other mixtures)
    _, dev_big = build_mixture(A + pool("goemotions-extra", 500), B, 50, 50, seed=42, dev_frac=0.05)
    in_both = {r["id"] for r in train + dev} & {r["id"] for r in dev_big}
    assert in_both and all(rid in {r["id"] for r in dev} for rid in in_both)


def test_dev_fraction_ratio_and_seed():
    train, dev = build_mixture(A, B, 20, 80, seed=42, dev_frac=0.05)
    rows = train + dev
    assert len(rows) == 2500 and sum(r["source"] == "goemotions" for r in rows) == 500
    assert 0.03 < len(dev) / len(rows) < 0.07
    assert len({r["id"] for r in rows}) == len(rows)
    _, dev_other_seed = build_mixture(A, B, 20, 80, seed=7, dev_frac=0.05)
    assert {r["id"] for r in dev} != {r["id"] for r in dev_other_seed}
    assert all(is_dev(r["id"], 42, 0.05) for r in dev)
