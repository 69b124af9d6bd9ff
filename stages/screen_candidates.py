"""DVC stage `screen_candidates` (always_changed): which screening candidates this machine can load, with their
weights' checksums (emoloom.modeling.backbones.candidate_fingerprint).

Usage: python stages/screen_candidates.py
Writes metrics/screen_candidates.json. It runs on every `dvc repro` (a second or two) but writes the same bytes
while nothing is installed or removed, so `screen`, which depends on the file, re-runs only when the set of loadable
candidates or their weights change.
"""

from emoloom.core.config import from_section
from emoloom.core.io import write_json
from emoloom.core.params import load_section
from emoloom.core.stage import run_stage
from emoloom.evaluation.screening import ScreenConfig
from emoloom.modeling.backbones import candidate_fingerprint


def main() -> None:
    section = {k: v for k, v in load_section("screen").items() if k in ("candidates",)}
    cfg = from_section(ScreenConfig, section, "screen")
    fingerprints = {name: candidate_fingerprint(name) for name in cfg.candidates}
    write_json("metrics/screen_candidates.json", fingerprints)
    for name, fp in fingerprints.items():
        print(f"screen_candidates: {name}: {fp['status']}")


if __name__ == "__main__":
    run_stage("screen_candidates", main)
