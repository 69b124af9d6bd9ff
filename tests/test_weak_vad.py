import pytest

from emoloom.data.lexicon import Lexicon, load_lexicon
from emoloom.data.weak_vad import WeakVadConfig, annotate, score_text

EPS = 0.01


@pytest.fixture
def toy():
    """A hand-made lexicon, so expected values can be computed by hand."""
    return Lexicon("toy", {"happy": (1.0, 0.8, 0.7), "sad": (0.2, 0.3, 0.2), "day": (0.6, 0.4, 0.5),
                           "smile": (0.9, 0.6, 0.6), "ice cream": (0.8, 0.5, 0.5), "ice": (0.4, 0.3, 0.4)})


def smooth(x):
    return round((1 - 2 * EPS) * x + EPS, 4)


def test_mean_over_matched_terms_with_smoothing_and_coverage(toy):
    out = score_text("A happy day with Bob", toy)
    # content words: happy, day, bob (a, with are function words) -> 2 of 3 covered
    assert out.vad == {"v": smooth(0.8), "a": smooth(0.6), "d": smooth(0.6)}
    assert out.conf == pytest.approx(2 / 3, abs=1e-4)
    assert out.cues == ["happy", "day"]


def test_negation_flips_valence_damped_and_keeps_a_d(toy):
    plain, negated = score_text("happy", toy), score_text("I am not happy", toy)
    assert negated.vad["v"] == smooth(0.5 - 0.5 * (1.0 - 0.5))     # 0.25 before smoothing
    assert negated.vad["a"] == plain.vad["a"] and negated.vad["d"] == plain.vad["d"]
    assert score_text("I don't feel happy", toy).vad["v"] == negated.vad["v"]   # n't and a 2-token gap
    full = score_text("not happy", toy, WeakVadConfig(negation_strength=1.0))
    assert full.vad["v"] == smooth(0.0)


def test_negation_scope_ends_at_clause_and_after_one_term(toy):
    assert score_text("not today. happy", toy).vad == score_text("happy", toy).vad
    # the negation is spent on "sad"; "day" is unaffected
    out = score_text("not sad day", toy)
    assert out.vad["v"] == smooth(((0.5 - 0.5 * (0.2 - 0.5)) + 0.6) / 2)


def test_intensifiers_and_diminishers(toy):
    sad, very_sad, slightly_sad = (score_text(t, toy).vad for t in ("sad", "very sad", "slightly sad"))
    assert very_sad["v"] < sad["v"] < slightly_sad["v"]
    assert very_sad["v"] == smooth(0.5 + 1.5 * (0.2 - 0.5))
    assert very_sad["a"] == smooth(0.5 + 1.5 * (0.3 - 0.5)) and very_sad["d"] == sad["d"]


def test_modifiers_can_be_switched_off(toy):
    cfg = WeakVadConfig(use_modifiers=False)
    assert score_text("not very happy", toy, cfg).vad == score_text("happy", toy, cfg).vad


def test_multiword_terms_match_first_and_suffixes_fall_back(toy):
    assert score_text("ice cream", toy).cues == ["ice cream"]
    assert score_text("she smiled", toy).vad["v"] == smooth(0.9)          # smiled -> smile


def test_no_content_or_no_match(toy):
    assert score_text("it is what it is", toy).vad is None
    out = score_text("Bob went home", toy)
    assert out.vad is None and out.conf == 0.0


def test_real_nrc_vad_on_the_issue_sentences(nrc):
    v = {t: score_text(t, nrc).vad["v"] for t in ("happy", "not happy", "sad", "very sad")}
    assert v["not happy"] < 0.5 < v["happy"]
    assert v["very sad"] < v["sad"] < 0.5
    assert all(EPS <= x <= 1 - EPS for x in v.values())


def test_warriner_is_normalised_from_1_to_9(raw_root):
    lex = load_lexicon("warriner2013", raw_root)
    import csv
    with open(raw_root / "warriner2013" / "Ratings_Warriner_et_al.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["Word"] == "happy")
    assert lex.entries["happy"][0] == pytest.approx((float(row["V.Mean.Sum"]) - 1) / 8)
    assert all(0 <= x <= 1 for vad in lex.entries.values() for x in vad)


def test_unknown_lexicon(raw_root):
    with pytest.raises(ValueError, match="unknown lexicon"):
        load_lexicon("anew", raw_root)


def test_annotate_keeps_gold_vad(toy):
    gold = {"v": 0.1, "a": 0.2, "d": 0.3}
    rec = annotate({"text": "happy day", "vad": gold}, toy, WeakVadConfig())
    assert rec["vad"] == gold and rec["vad_conf"] == 1.0 and rec["vad_cues"] == ["happy", "day"]
