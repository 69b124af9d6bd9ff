"""The appraisal-atom verifier: prototype table, targets, hard vs expected counts, training, save/load, the stage."""

from __future__ import annotations

import json
import re
import runpy
from dataclasses import asdict
from importlib import resources

import pytest
import torch
import yaml
from conftest import REPO, vocabulary_texts, word_tokenizer
from transformers import AutoTokenizer

from emoloom.core.io import read_jsonl, write_jsonl
from emoloom.core.labels import LABELS
from emoloom.data.lexicon import Lexicon
from emoloom.data.prepare import PrepareConfig, prepare_corpus
from emoloom.data.weak_vad import WeakVadConfig, annotate
from emoloom.modeling.verifier import ATOMS, AppraisalVerifier, load_prototypes, prototype_targets, tokenizer_sha1
from emoloom.training.verifier_fit import VerifierConfig, train_verifier

PACKAGED = resources.files("emoloom").joinpath("mappings", "appraisal_prototypes.tsv").read_text(encoding="utf-8")


# ---------------------------------------------------------------- prototypes

def test_packaged_table_covers_every_label_in_range():
    table = load_prototypes()
    assert set(table) == set(LABELS)
    assert all(len(v) == len(ATOMS) and all(x is None or 0 <= x <= 1 for x in v) for v in table.values())
    assert table["neutral"] == (None,) * len(ATOMS)
    proto = {label: dict(zip(ATOMS, values)) for label, values in table.items()}
    assert proto["anger"] == {"goal_attainment": 0, "controllability": 1, "certainty": 1, "fairness": 0,
                              "self_agency": 0}
    assert proto["pride"]["self_agency"] == proto["remorse"]["self_agency"] == 1
    assert proto["fear"]["certainty"] == 0 and proto["joy"]["goal_attainment"] == 1


def _line_of(text: str, prefix: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(prefix))


@pytest.mark.parametrize("old,new,message", [
    ("anger\t0\t1\t1\t0\t0", "anger\t0\t1.5\t1\t0\t0", r"controllability = 1.5 is outside \[0,1\]"),
    ("anger\t0\t1\t1\t0\t0", "anger\t0\tyes\t1\t0\t0", r"controllability must be a number in \[0,1\] or '-'"),
    ("anger\t0\t1\t1\t0\t0", "anger\t0\t1\t1\t0", r"expected a label and 5 values, got 5 fields"),
    ("anger\t0\t1\t1\t0\t0", "rage\t0\t1\t1\t0\t0", r"'rage' is not a GoEmotions label"),
    ("neutral\t-\t-\t-\t-\t-", "anger\t-\t-\t-\t-\t-", r"duplicate row for 'anger' \(first at line 16\)"),
])
def test_broken_table_names_file_and_line(tmp_path, old, new, message):
    assert old in PACKAGED
    path = tmp_path / "protos.tsv"
    path.write_text(PACKAGED.replace(old, new), encoding="utf-8")
    line = _line_of(PACKAGED, old)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:{line}: {message}"):
        load_prototypes(path)


def test_table_without_header_or_with_a_missing_label(tmp_path):
    path = tmp_path / "protos.tsv"
    path.write_text(PACKAGED.replace("label\tgoal_attainment", "label\tgoal"), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"protos.tsv:{_line_of(PACKAGED, 'label')}: expected the header"):
        load_prototypes(path)
    path.write_text("\n".join(line for line in PACKAGED.splitlines() if not line.startswith("grief")))
    with pytest.raises(ValueError, match=r"protos.tsv: no row for labels \['grief'\]"):
        load_prototypes(path)


def test_prototype_targets_average_the_labels_that_determine_each_atom():
    target, mask = prototype_targets(["anger"])
    assert target.tolist() == [0, 1, 1, 0, 0] and mask.tolist() == [1] * 5
    # joy leaves controllability, fairness and self_agency open: anger alone decides them
    target, mask = prototype_targets(["joy", "anger"])
    assert target.tolist() == [0.5, 1, 1, 0, 0] and mask.tolist() == [1] * 5
    assert all(torch.equal(a, b) for a, b in zip(prototype_targets(["joy", "neutral", "joy"]),
                                                 prototype_targets(["joy"])))
    target, mask = prototype_targets(["amusement"])          # only goal_attainment is determined
    assert target.tolist() == [1, 0, 0, 0, 0] and mask.tolist() == [1, 0, 0, 0, 0]
    for labels in (["neutral"], []):
        target, mask = prototype_targets(labels)
        assert not mask.any() and not target.any()
    with pytest.raises(ValueError, match="unknown label"):
        prototype_targets(["rage"])


# ---------------------------------------------------------------- counts and gradients

@pytest.fixture
def verifier() -> AppraisalVerifier:
    torch.manual_seed(0)
    v = AppraisalVerifier([3, 5, 7], tokenizer_sha1="test", hidden=4)
    with torch.no_grad():
        for p in v.parameters():
            p.normal_(std=0.1)                           # small: tanh and sigmoid stay unsaturated
    return v


def test_expected_counts_of_one_hot_probs_are_the_hard_counts(verifier):
    ids = torch.tensor([[3, 3, 5, 0, 8, 9, 7], [7, 1, 2, 3, -100, 0, 0]])    # 8, 9: past the largest feature id
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0, 0]])
    counts, n = verifier.counts_from_ids(ids, mask)
    assert counts.tolist() == [[2, 1, 0], [1, 0, 1]] and n.tolist() == [6, 4]
    probs = torch.nn.functional.one_hot(ids.clamp_min(0), 10).float()
    soft_counts, soft_n = verifier.counts_from_probs(probs[..., verifier.feature_ids], mask)
    assert torch.equal(soft_counts, counts) and torch.equal(soft_n, n)
    assert torch.equal(verifier(soft_counts, soft_n), verifier(counts, n))


def test_scores_are_probabilities_and_differentiable_in_the_token_distributions(verifier):
    verifier.requires_grad_(False)
    logits = torch.randn(2, 4, 10, requires_grad=True)
    positions = torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0]])
    x_counts, x_n = verifier.counts_from_ids(torch.tensor([[3, 4], [5, 6]]), torch.ones(2, 2))
    a_counts, a_n = verifier.counts_from_probs(logits.softmax(-1)[..., verifier.feature_ids], positions)
    scores = verifier(x_counts + a_counts, x_n + a_n)
    assert scores.shape == (2, len(verifier.atoms)) and ((scores > 0) & (scores < 1)).all()
    torch.nn.functional.binary_cross_entropy(scores, torch.full_like(scores, 0.9)).backward()
    grad = logits.grad
    assert grad[0, :3].abs().sum() > 0 and torch.isfinite(grad).all()
    assert not grad[0, 3].any() and not grad[1].any()        # positions 0 get no gradient


# ---------------------------------------------------------------- training

TOY = Lexicon("toy", {"wonderful": (0.9, 0.6, 0.7), "happy": (0.95, 0.6, 0.7), "terrible": (0.1, 0.6, 0.3),
                      "gloomy": (0.15, 0.3, 0.3), "week": (0.5, 0.3, 0.5), "news": (0.5, 0.4, 0.5)})


def toy_records(n: int, offset: int = 0) -> list[dict]:
    """70% joy ('wonderful'/'happy'), 30% sadness ('terrible'/'gloomy'), with shared filler words."""
    rows = []
    for i in range(offset, offset + n):
        joyful = i % 10 < 7
        cue = ("wonderful", "happy")[i % 2] if joyful else ("terrible", "gloomy")[i % 2]
        text = f"what a {cue} {('week', 'news', 'day')[i % 3]} for us"
        rows.append({"id": f"toy:{i}", "text": text, "labels": ["joy" if joyful else "sadness"],
                     "vad": {"v": 0.8 if joyful else 0.2, "a": 0.5, "d": 0.5}, "vad_cues": [cue]})
    return rows


@pytest.fixture(scope="module")
def toy_data():
    train, dev = toy_records(200), toy_records(60, offset=200)
    return train, dev, word_tokenizer(vocabulary_texts(train + dev))


FAST = dict(epochs=30, batch_size=32, lr=0.1)


def test_training_beats_the_majority_baseline_on_an_easy_case(toy_data):
    train, dev, tokenizer = toy_data
    verifier, metrics = train_verifier(train, dev, tokenizer, TOY, VerifierConfig(**FAST))
    assert verifier.num_features == 6                        # the TOY words; "day" is not in TOY
    assert metrics["majority_class"]["goal_attainment"] == 1 and metrics["train_rows"] == 200
    assert metrics["train_loss"][-1] < metrics["train_loss"][0]
    for mode in ("with_answer", "text_only"):
        goal = metrics["dev"][mode]["goal_attainment"]
        assert goal["n"] == 60 and goal["majority_acc"] == pytest.approx(0.7)
        assert goal["acc"] == 1.0 and goal["auc"] == 1.0
    # joy leaves controllability undetermined, so only the sadness rows count and AUC is undefined
    control = metrics["dev"]["text_only"]["controllability"]
    assert control["n"] == 18 and control["auc"] is None and control["acc"] == 1.0


def test_training_is_deterministic_and_the_seed_matters(toy_data, tmp_path):
    train, dev, tokenizer = toy_data
    paths = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        verifier, _ = train_verifier(train, dev, tokenizer, TOY, VerifierConfig(seed=seed, hidden=8, **FAST))
        verifier.save(tmp_path / f"{name}.pt")
        paths.append((tmp_path / f"{name}.pt").read_bytes())
    assert paths[0] == paths[1] and paths[0] != paths[2]


def test_save_load_round_trip_and_tokenizer_check(toy_data, tmp_path):
    train, dev, tokenizer = toy_data
    verifier, _ = train_verifier(train, dev, tokenizer, TOY, VerifierConfig(hidden=3, **FAST))
    verifier.save(tmp_path / "v.pt")
    loaded = AppraisalVerifier.load(tmp_path / "v.pt", tokenizer=tokenizer)
    assert loaded.atoms == ATOMS and (loaded.hidden, loaded.feature_scale) == (3, 100.0)
    assert torch.equal(loaded.feature_ids, verifier.feature_ids)
    assert loaded.tokenizer_sha1 == tokenizer_sha1(tokenizer) and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    ids = torch.tensor([tokenizer("a happy gloomy week")["input_ids"]])
    counts = verifier.counts_from_ids(ids, torch.ones_like(ids))
    assert torch.equal(loaded(*counts), verifier(*counts))
    other = word_tokenizer(["a completely different vocabulary"])
    with pytest.raises(ValueError, match=f"built for tokenizer {tokenizer_sha1(tokenizer)}, not"):
        AppraisalVerifier.load(tmp_path / "v.pt", tokenizer=other)
    torch.save({"something": "else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an appraisal verifier file"):
        AppraisalVerifier.load(tmp_path / "other.pt")


# ---------------------------------------------------------------- real data and the stage

@pytest.fixture
def project(small_raw_root, nrc, tmp_path):
    """A stage working directory: data/weak/{goemotions,empathetic}/{train,dev}.jsonl made from the small real subset
    by prepare + weak VAD, a word-level tokenizer over its words in data/backbone, and params.yaml."""
    for corpus in ("goemotions", "empathetic"):
        prepare_corpus(corpus, small_raw_root, tmp_path / "data/prepared", PrepareConfig())
        for split in ("train", "dev"):
            rows = [annotate(r, nrc, WeakVadConfig())
                    for r in read_jsonl(tmp_path / "data/prepared" / corpus / f"{split}.jsonl")]
            write_jsonl(tmp_path / "data/weak" / corpus / f"{split}.jsonl", [r for r in rows if r["vad"] is not None])
    word_tokenizer(vocabulary_texts(read_split(tmp_path, "train") + read_split(tmp_path, "dev"))).save_pretrained(
        tmp_path / "data/backbone")
    params = {"data": {"raw_root": str(small_raw_root)}, "weak_vad": {"lexicon": "nrc_vad"},
              "backbone": {"out_dir": "data/backbone"}, "train_verifier": asdict(VerifierConfig(epochs=4))}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def read_split(project, split: str) -> list[dict]:
    return [r for corpus in ("goemotions", "empathetic")
            for r in read_jsonl(project / "data/weak" / corpus / f"{split}.jsonl")]


def test_stage_trains_on_real_rows_and_writes_a_loadable_verifier(project, monkeypatch):
    monkeypatch.chdir(project)
    runpy.run_path(str(REPO / "stages/train_verifier.py"), run_name="__main__")

    tokenizer = AutoTokenizer.from_pretrained(project / "data/backbone")
    verifier = AppraisalVerifier.load(project / "data/verifier/verifier.pt", tokenizer=tokenizer)
    metrics = json.loads((project / "metrics/verifier.json").read_text())
    assert metrics["train_rows"] == len(read_split(project, "train"))
    assert metrics["features"] == verifier.num_features > 100
    assert set(metrics["dev"]) == {"with_answer", "text_only"}
    assert all(set(metrics["dev"]["text_only"][a]) == {"n", "auc", "acc", "majority_acc"} for a in ATOMS)
    # with the gold answer in the input the label names give the atoms away
    mean = metrics["dev"]["with_answer"]["mean"]
    assert mean["auc"] > 0.9 and mean["acc"] > mean["majority_acc"]
