"""DVC stage `backbone`: convert params `backbone.name` into a plain HF directory at `backbone.out_dir`.

Writes the directory (with its backbone.json) and metrics/backbone.json with the same facts.
"""

from emoloom.core.config import from_section
from emoloom.core.io import write_json
from emoloom.core.params import load_section
from emoloom.core.stage import run_stage
from emoloom.modeling.backbones import BackboneConfig, convert_backbone

METRICS = "metrics/backbone.json"


def main() -> None:
    cfg = from_section(BackboneConfig, load_section("backbone"), "backbone")
    facts = convert_backbone(cfg.name, cfg.out_dir)
    write_json(METRICS, facts)
    print(
        f"{facts['name']}: {facts['parameters']:,} parameters -> {cfg.out_dir} "
        f"(load {facts['load_source_s']} s from source, {facts['load_converted_s']} s converted; "
        f"logits max abs diff {facts['logits_max_abs_diff']:.3g})"
    )


if __name__ == "__main__":
    run_stage("backbone", main)
