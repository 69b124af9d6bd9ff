"""Integration: the data stages under real DVC on a small real subset of the raw data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

DATA_STAGES = ["mix"]          # `dvc repro mix` runs prepare -> weak_vad -> mix@*


def dvc(work: Path, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(work / "src"), DVC_NO_ANALYTICS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def set_param(work: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((work / "params.yaml").read_text())
    params[section][key] = value
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def project(small_raw_root, tmp_path_factory) -> Path:
    """A copy of the project as a fresh git + DVC repo whose raw root is the small subset, after one `dvc repro`."""
    work = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, work / name)
    for name in ("stages", "src"):
        shutil.copytree(REPO / name, work / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    dvc(work, "init", "-q")
    set_param(work, "data", "raw_root", str(small_raw_root))
    dvc(work, "repro", *DATA_STAGES)
    return work


@pytest.mark.slow
def test_repro_writes_mixtures_probe_and_reports(project):
    for name in ("20_80", "50_50", "80_20"):
        manifest = json.loads((project / "data/mix" / name / "manifest.json").read_text())
        train, dev = manifest["splits"]["train"], manifest["splits"]["dev"]
        assert train["rows"] > 0 and manifest["dev_frac"] == 0.05 and len(train["sha1"]) == 40
        wa, wb = (int(x) for x in name.split("_"))
        by_source = {s: train["by_source"][s] + dev["by_source"][s] for s in ("goemotions", "empathetic")}
        assert by_source["goemotions"] * wb == pytest.approx(by_source["empathetic"] * wa, abs=max(wa, wb))
    probe = project / "data/weak/dailydialog/dev_dailydialog_weak.jsonl"
    rows = [json.loads(line) for line in probe.read_text().splitlines()]
    assert rows and all(r["vad"] is not None and r["source"] == "dailydialog" for r in rows)
    report = json.loads((project / "metrics/prepare.json").read_text())
    assert report["goemotions"]["train"]["rows_in"] == 600
    retention = json.loads((project / "metrics/retention.json").read_text())
    assert retention["goemotions/train"]["kept"]["0.75"] <= retention["goemotions/train"]["kept"]["0.5"]


@pytest.mark.slow
def test_second_repro_is_a_no_op_and_tau_reruns_only_downstream(project):
    assert "up to date" in dvc(project, "status", *DATA_STAGES)
    assert "Running stage" not in dvc(project, "repro", *DATA_STAGES)
    set_param(project, "weak_vad", "tau", 0.5)
    assert set(json.loads(dvc(project, "status", "--json", "--with-deps", *DATA_STAGES))) == {"weak_vad"}
    log = dvc(project, "repro", *DATA_STAGES)
    ran = {line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")}
    assert ran == {"weak_vad", "mix@20_80", "mix@50_50", "mix@80_20"}
    assert "up to date" in dvc(project, "status", *DATA_STAGES)
