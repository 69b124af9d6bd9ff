"""The canonical label space (GoEmotions' 27 emotions + neutral) and the mapping tables into it."""

from __future__ import annotations

from importlib import resources

LABELS: tuple[str, ...] = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity",
    "desire", "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear",
    "gratitude", "grief", "joy", "love", "nervousness", "optimism", "pride", "realization", "relief",
    "remorse", "sadness", "surprise", "neutral",
)
LABEL_INDEX = {name: i for i, name in enumerate(LABELS)}
NUM_LABELS = len(LABELS)

DAILYDIALOG_TAGS: tuple[str, ...] = ("no_emotion", "anger", "disgust", "fear", "happiness", "sadness", "surprise")


def load_mapping(name: str, source_labels: list[str] | tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Read `mappings/<name>_to_goemotions.tsv`; every source label must be mapped, every target must be canonical."""
    fname = f"{name}_to_goemotions.tsv"
    text = resources.files("emoloom").joinpath("mappings", fname).read_text(encoding="utf-8")
    mapping: dict[str, tuple[str, ...]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split("\t") if p.strip()]
        if len(parts) != 2:
            raise ValueError(f"{fname}:{lineno}: expected '<source label><TAB><labels>', got {line!r}")
        targets = tuple(t.strip() for t in parts[1].split(","))
        unknown = [t for t in targets if t not in LABEL_INDEX]
        if unknown:
            raise ValueError(f"{fname}:{lineno}: {unknown} are not GoEmotions labels")
        mapping[parts[0]] = targets
    missing = [s for s in source_labels if s not in mapping]
    if missing:
        raise ValueError(f"{fname}: no mapping for source labels {missing}")
    return mapping


def sort_labels(labels) -> list[str]:
    """Unique labels in canonical order."""
    return sorted(set(labels), key=LABEL_INDEX.__getitem__)


def to_ekman(labels, ekman_mapping: dict[str, list[str]]) -> list[str]:
    """Project GoEmotions labels onto Ekman-7 (GoEmotions' ekman_mapping.json plus neutral)."""
    inverse = {fine: coarse for coarse, fines in ekman_mapping.items() for fine in fines}
    inverse["neutral"] = "neutral"
    return sorted({inverse[label] for label in labels})
