"""Utterance-level weak VAD from a word lexicon, with minimal negation and intensifier handling.

Rules (docs/weak_vad.md):
- Text is split into clauses at punctuation; tokens are words. Function words (emoloom.core.text.FUNCTION_WORDS),
  negators and degree adverbs are not content words; every other token is.
- Lexicon terms are matched longest first (multi-word terms, then single words with a light suffix fallback).
- A negator ("not", "never", "no", "n't" ...) flips the valence of the next matched term within 3 tokens of the same
  clause towards the other pole, damped: v -> 0.5 - negation_strength * (v - 0.5). Arousal and dominance stay.
- A degree adverb ("very" x1.5, "slightly" x0.5 ...) right before a matched term (within 2 tokens) scales that term's
  valence and arousal distance from 0.5 by its factor.
- The utterance's VAD is the mean over matched terms (weights 1), then smoothed: x -> (1 - 2 eps) x + eps.
- vad_conf = matched content tokens / content tokens (0 when the text has no content word).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emoloom.core.config import option, require, validate
from emoloom.core.text import FUNCTION_WORDS, clauses, words
from emoloom.data.lexicon import VAD, Lexicon

NEGATORS = frozenset({"not", "no", "never", "nothing", "nobody", "none", "neither", "nor", "nowhere", "without",
                      "hardly", "barely", "cannot", "cant", "dont", "didnt", "doesnt", "isnt", "wasnt", "arent",
                      "werent", "wont", "wouldnt", "shouldnt", "couldnt", "aint"})
DEGREE_ADVERBS = {"very": 1.5, "really": 1.5, "so": 1.5, "too": 1.5, "extremely": 1.8, "incredibly": 1.8,
                  "absolutely": 1.8, "totally": 1.5, "completely": 1.5, "super": 1.5, "truly": 1.5, "highly": 1.5,
                  "deeply": 1.5, "quite": 1.2, "slightly": 0.5, "somewhat": 0.6, "kinda": 0.6, "sorta": 0.6,
                  "fairly": 0.8}
NEGATION_SCOPE = 3
DEGREE_SCOPE = 2


@dataclass(frozen=True)
class WeakVadConfig:
    """How a text is scored (params.yaml `weak_vad`, scoring keys)."""
    epsilon: float = option(0.01, "label smoothing: x -> (1 - 2 eps) x + eps", ge=0, lt=0.5)
    negation_strength: float = option(0.5, "how far a negated term's valence is mirrored across 0.5 (1 = full flip)",
                                      ge=0, le=1)
    use_modifiers: bool = option(True, "apply negation and degree adverbs at all")

    def __post_init__(self) -> None:
        validate(self, "weak_vad")


@dataclass(frozen=True)
class WeakVadFilter:
    """Which lexicon scores the texts and which training rows are kept (params.yaml `weak_vad`, the other keys)."""
    lexicon: str = option("nrc_vad", "the lexicon's folder in the raw root", choices=("nrc_vad", "warriner2013"))
    tau: float = option(0.75, "keep training rows with vad_conf >= tau (coverage of content words)", ge=0, le=1)
    retention_taus: tuple[float, ...] = option((0.0, 0.5, 0.75, 0.8, 1.0), "thresholds of the retention table")

    def __post_init__(self) -> None:
        validate(self, "weak_vad")
        require(all(0 <= t <= 1 for t in self.retention_taus), "weak_vad.retention_taus: every tau must be in [0, 1]")


@dataclass
class WeakVad:
    vad: dict | None                  # {"v","a","d"} in [0,1], None when no term matched
    conf: float                       # share of content tokens the lexicon covers
    cues: list[str] = field(default_factory=list)   # matched terms, most emotional first


def is_negator(token: str) -> bool:
    return token in NEGATORS or token.endswith("n't")


def is_content(token: str) -> bool:
    return token not in FUNCTION_WORDS and token not in DEGREE_ADVERBS and not is_negator(token)


def _modified(vad: VAD, negated: bool, degree: float, cfg: WeakVadConfig) -> VAD:
    v, a, d = vad
    if negated:
        v = 0.5 - cfg.negation_strength * (v - 0.5)
    v = min(1.0, max(0.0, 0.5 + degree * (v - 0.5)))
    a = min(1.0, max(0.0, 0.5 + degree * (a - 0.5)))
    return v, a, d


def score_text(text: str, lexicon: Lexicon, cfg: WeakVadConfig = WeakVadConfig()) -> WeakVad:
    """Weak VAD of one text (see the module docstring for the rules)."""
    matched: list[tuple[str, VAD]] = []
    n_content = n_covered = 0
    for clause in clauses(text):
        tokens = [t.lower() for t in words(clause)]
        negated_until = -1                       # index up to which a negation is pending
        degree, degree_until = 1.0, -1
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if cfg.use_modifiers and is_negator(tok):
                negated_until = i + NEGATION_SCOPE
                i += 1
                continue
            if cfg.use_modifiers and tok in DEGREE_ADVERBS:
                degree, degree_until = DEGREE_ADVERBS[tok], i + DEGREE_SCOPE
                i += 1
                continue
            term, vad, width = _match(tokens, i, lexicon)
            content = sum(is_content(t) for t in tokens[i:i + width])
            n_content += content
            if vad is not None:
                n_covered += content
                negated = i <= negated_until
                scale = degree if i <= degree_until else 1.0
                matched.append((term, _modified(vad, negated, scale, cfg) if cfg.use_modifiers else vad))
                if negated:
                    negated_until = -1
                degree_until = -1
            i += width
    conf = n_covered / n_content if n_content else 0.0
    if not matched:
        return WeakVad(None, conf)
    mean = [sum(vad[k] for _, vad in matched) / len(matched) for k in range(3)]
    smoothed = {key: round((1 - 2 * cfg.epsilon) * x + cfg.epsilon, 4) for key, x in zip("vad", mean)}
    return WeakVad(smoothed, round(conf, 4), _cues(matched))


def _match(tokens: list[str], i: int, lexicon: Lexicon) -> tuple[str, VAD | None, int]:
    """Longest lexicon term starting at token i (only content words start a term)."""
    if not is_content(tokens[i]):
        return tokens[i], None, 1
    for width in range(min(lexicon.max_words, len(tokens) - i), 1, -1):
        term = " ".join(tokens[i:i + width])
        if term in lexicon.entries:
            return term, lexicon.entries[term], width
    return tokens[i], lexicon.lookup(tokens[i]), 1


def _cues(matched: list[tuple[str, VAD]], k: int = 6) -> list[str]:
    """Distinct matched terms, most emotional first (distance of V and A from 0.5), stable on ties."""
    salience: dict[str, float] = {}
    for term, (v, a, _d) in matched:
        salience[term] = max(salience.get(term, 0.0), abs(v - 0.5) + abs(a - 0.5))
    return sorted(salience, key=lambda t: -salience[t])[:k]


def annotate(record: dict, lexicon: Lexicon, cfg: WeakVadConfig) -> dict:
    """The record with weak VAD, its coverage and cue words filled in (gold VAD, e.g. EmoBank's, is kept)."""
    weak = score_text(record["text"], lexicon, cfg)
    out = dict(record, vad_conf=weak.conf, vad_cues=weak.cues)
    if record.get("vad") is None:
        out["vad"] = weak.vad
    return out
