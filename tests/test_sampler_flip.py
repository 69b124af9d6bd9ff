import math

import pytest

from emoloom.data.flip import flip_text, load_antonyms
from emoloom.data.lexicon import Lexicon
from emoloom.training.sampler import MixtureSampler


def test_temperature_cools_linearly_and_probabilities_follow_algorithm_1():
    s = MixtureSampler({"A": 20, "B": 80}, t0=1.0, t1=0.2, total_steps=10)
    assert [s.temperature(t) for t in (0, 5, 10, 20)] == pytest.approx([1.0, 0.6, 0.2, 0.2])
    p = s.probabilities(5)
    za, zb = math.exp(0.2 / 0.6), math.exp(0.8 / 0.6)
    assert p["A"] == pytest.approx(za / (za + zb))
    s.update("A", entropy=2.0)                  # conf_A = 0.9 * 1 + 0.1 * exp(-2)
    assert s.conf["A"] == pytest.approx(0.9 + 0.1 * math.exp(-2.0))
    p2 = s.probabilities(5)
    assert p2["A"] > p["A"]                     # a less confident source gets drawn more


@pytest.mark.parametrize("t1, lo, hi", [(0.1, 0.0, 0.05), (1.0, 0.15, 0.40)])
def test_cooling_decides_whether_the_minority_source_is_drawn_late(t1, lo, hi):
    """20:80 over 640 steps at a typical answer entropy (0.6 nats): cooling to 0.1 stops drawing the 20 % source in
    the last third of training (E15's 20:80 run: 7 GoEmotions batches of 213 there); T held at 1 keeps it near its
    share."""
    s = MixtureSampler({"A": 20, "B": 80}, t0=1.0, t1=t1, total_steps=640, seed=11)
    draws = []
    for step in range(640):
        draws.append(s.draw(step))
        s.update(draws[-1], entropy=0.6)
    late = draws[427:]
    assert lo <= late.count("A") / len(late) <= hi


def test_draws_are_seeded_and_resumable():
    a = MixtureSampler({"A": 1, "B": 1}, total_steps=100, seed=3)
    first = [a.draw(t) for t in range(20)]
    state = a.state_dict()
    rest = [a.draw(t) for t in range(20, 40)]
    b = MixtureSampler({"A": 1, "B": 1}, total_steps=100, seed=3)
    assert [b.draw(t) for t in range(20)] == first
    c = MixtureSampler({"A": 1, "B": 1}, total_steps=100, seed=99)
    c.load_state_dict(state)
    assert [c.draw(t) for t in range(20, 40)] == rest


def test_rebalance_and_bad_weights():
    s = MixtureSampler({"A": 1, "B": 1})
    s.rebalance({"A": 1.0, "B": 3.0})
    assert s.weights["A"] == pytest.approx(0.75)
    with pytest.raises(ValueError):
        MixtureSampler({"A": -1, "B": 1})


def test_rebalance_keeps_the_weight_of_a_source_not_drawn_in_the_pass():
    s = MixtureSampler({"A": 20, "B": 80})
    s.rebalance({"B": 0.5})                      # only B was drawn: A has no entropy to judge it by
    assert s.weights == pytest.approx({"A": 0.2, "B": 0.8})
    s3 = MixtureSampler({"A": 1, "B": 1, "C": 2})
    s3.rebalance({"A": 1.0, "B": 3.0})           # A and B share their half 3:1, C keeps its half
    assert s3.weights == pytest.approx({"A": 0.375, "B": 0.125, "C": 0.5})
    s3.rebalance({})
    assert s3.weights == pytest.approx({"A": 0.375, "B": 0.125, "C": 0.5})


def test_flip_swaps_polar_antonyms_only(tmp_path):
    lex = Lexicon("toy", {"happy": (0.95, 0.7, 0.6), "unhappy": (0.1, 0.5, 0.3), "hot": (0.5, 0.7, 0.5),
                          "cold": (0.45, 0.4, 0.4), "win": (0.9, 0.8, 0.8), "lose": (0.1, 0.6, 0.2)})
    path = tmp_path / "ant.tsv"
    path.write_text("word\tantonym\tpos\nhappy\tunhappy\tadj\nunhappy\thappy\tadj\nhot\tcold\tadj\n"
                    "win\tlose\tverb\nlose\twin\tverb\n")
    ant = load_antonyms(path, lex)
    assert ant == {"happy": "unhappy", "unhappy": "happy", "win": "lose", "lose": "win"}
    assert flip_text("Happy that we WIN, hot day", ant) == "Unhappy that we LOSE, hot day"
    assert flip_text("a hot day", ant) is None


def test_flip_on_real_antonyms(nrc, raw_root):
    ant = load_antonyms(raw_root / "antonyms" / "wordnet30_antonym_pairs.tsv", nrc)
    assert ant["happy"] == "unhappy" and len(ant) > 500
    assert flip_text("i am wishing the yankees will win", ant) == "i am wishing the yankees will lose"
