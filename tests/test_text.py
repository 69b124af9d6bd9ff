import pytest

from emoloom.core.text import clauses, clean_text, qc_flags, words


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("so cute", "too_short"),
    ("I love this so much", None),
    ("So cute!!!!!!!!!! I love it", None),                     # repeated punctuation is not garbling
    ("I stan ❤️🧡💛💚💙💜 them all", None),                      # emoji are content, not garbling
    ("Ã¢â‚¬Å“this was broken by encoding", "garbled"),
    ("??? !!! ### 12 ab ... ;;; ::: ---", "garbled"),
    ("Это очень хороший и добрый день", "not_english"),
    ("Heute gehen wir zusammen zum Markt und kaufen frisches Obst sowie Gemüse ein", "not_english"),
    (" ".join(["word"] * 129), "too_long"),
])
def test_qc_reasons(text, reason):
    assert qc_flags(clean_text(text), 3, 128)[1] == reason


def test_qc_flags_fields():
    flags, reason = qc_flags("I am not happy about this.", 3, 128)
    assert reason is None and flags == {"n_tokens": 6, "len_ok": True, "lang": "en", "garbled": False}


def test_clean_text_and_words():
    text = clean_text("  I don’t\tknow,\n it's   fine ")
    assert text == "I don't know, it's fine"
    assert words(text) == ["I", "don't", "know", "it's", "fine"]
    assert clauses("not bad. happy, really") == ["not bad", " happy", " really"]
