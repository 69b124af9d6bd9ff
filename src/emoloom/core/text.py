"""Word tokenisation and the quality-control flags every record carries (docs/data.md, "QC")."""

from __future__ import annotations

import itertools
import re
import unicodedata

WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
CLAUSE_RE = re.compile(r"[.,;:!?()\[\]\"]+|\s[-–—]+\s")
_MOJIBAKE_RE = re.compile("Ã.|â€|\ufffd")
_SYMBOL_CATEGORIES = {"So", "Sk", "Mn", "Cf"}  # emoji, modifiers, variation selectors, zero-width joiners

# Closed-class English words: articles, pronouns, auxiliaries, prepositions, conjunctions. They decide which tokens
# are "content words" for lexicon coverage, and whether a longer text looks English at all.
FUNCTION_WORDS = frozenset("""
a an the this that these those there here
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself she her hers
herself it its itself they them their theirs themselves one ones someone something anyone anything everyone
everything who whom whose which what where when why how
am is are was were be been being have has had having do does did doing will would shall should can could may might
must ought im i'm you're we're they're he's she's it's that's there's what's i've you've we've they've i'd you'd
he'd she'd we'd they'd i'll you'll he'll she'll we'll they'll let's
and or but if then else than because as until while so though although whether nor either
of at by for with about against between into through during before after above below to from up down in out on off
over under again further once onto upon within along across around behind beyond among toward towards via per
all any both each few more most other some such own same just also only even still yet ever already
s t d ll m re ve y
""".split())


def undecodable(*fields: str) -> bool:
    """Whether text read with errors="surrogateescape" holds bytes that were not UTF-8 (lone surrogates)."""
    return any("\udc80" <= c <= "\udcff" for f in fields for c in f)


def words(text: str) -> list[str]:
    """Word tokens (letters/digits, inner apostrophes kept: "don't" is one token)."""
    return WORD_RE.findall(text)


def clauses(text: str) -> list[str]:
    """Split at punctuation that ends a negation's scope."""
    return [c for c in CLAUSE_RE.split(text) if c.strip()]


def clean_text(text: str) -> str:
    """NFC-normalise, straighten curly apostrophes, collapse whitespace and strip, so equal texts compare equal."""
    return " ".join(unicodedata.normalize("NFC", text).replace("\u2019", "'").split())


def normalized_for_dedup(text: str) -> str:
    return " ".join(w.lower() for w in words(text))


def is_garbled(text: str) -> bool:
    """Replacement characters, mojibake, control characters, or mostly non-letters.

    Emoji and other symbols don't count against a text, and runs of one repeated character ("!!!!") count once.
    """
    if _MOJIBAKE_RE.search(text) or any(unicodedata.category(c) == "Cc" for c in text):
        return True
    chars = [c for c, _ in itertools.groupby(text)
             if not c.isspace() and unicodedata.category(c) not in _SYMBOL_CATEGORIES]
    return sum(c.isalpha() for c in chars) < 0.3 * len(chars)


def looks_english(text: str, tokens: list[str]) -> bool:
    """Cheap, deterministic language check: mostly Latin letters, and a long text (12+ words) uses an English function
    word. It only catches clear cases; short exclamations without function words are common in English comments."""
    letters = [c for c in text if c.isalpha()]
    if letters and sum(c.isascii() for c in letters) < 0.8 * len(letters):
        return False
    if len(tokens) >= 12 and not any(t.lower() in FUNCTION_WORDS for t in tokens):
        return False
    return True


def qc_flags(text: str, min_tokens: int, max_tokens: int) -> tuple[dict, str | None]:
    """QC flags for a cleaned text, and the first reason to drop it (None when it passes)."""
    tokens = words(text)
    flags = {"n_tokens": len(tokens), "len_ok": min_tokens <= len(tokens) <= max_tokens,
             "lang": "en" if looks_english(text, tokens) else "other", "garbled": bool(text) and is_garbled(text)}
    if not text:
        return flags, "empty"
    if flags["garbled"]:
        return flags, "garbled"
    if len(tokens) < min_tokens:
        return flags, "too_short"
    if len(tokens) > max_tokens:
        return flags, "too_long"
    if flags["lang"] != "en":
        return flags, "not_english"
    return flags, None
