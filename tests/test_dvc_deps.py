"""dvc.yaml's deps cover every project file a stage's script imports (transitively, function-local imports too), so a
code change can never leave a stale result marked up to date."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from conftest import REPO, imported_modules

SRC = REPO / "src"


def module_files(name: str, src: Path = SRC) -> list[Path]:
    """The files importing `name` loads: every package __init__.py on the way and the module itself ([] if `name` is
    not a project module, e.g. an attribute imported from a package)."""
    parts, files = name.split("."), []
    for i in range(1, len(parts) + 1):
        base = src.joinpath(*parts[:i])
        if (base / "__init__.py").is_file():
            files.append(base / "__init__.py")
        elif base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py"))
        else:
            break
    return files


def project_imports(script: Path, src: Path = SRC) -> set[Path]:
    """Every project file `script` imports, transitively."""
    seen: set[Path] = set()
    todo = [(script, None)]
    while todo:
        path, package = todo.pop()
        for name in imported_modules(path, package):
            for f in module_files(name, src):
                if f not in seen:
                    seen.add(f)
                    todo.append((f, ".".join(f.relative_to(src).parts[:-1])))
    return seen


def stage_scripts(dvc_yaml: dict):
    """(name, stage definition, its stages/*.py script) for every stage; foreach stages keep cmd and deps under do:."""
    for name, stage in dvc_yaml["stages"].items():
        stage = stage.get("do", stage)
        yield name, stage, next(w for w in stage["cmd"].split() if w.startswith("stages/") and w.endswith(".py"))


def uncovered(dvc_yaml: dict, repo: Path = REPO) -> dict[str, list[str]]:
    """stage -> the project files its script imports that none of its deps (file or folder) covers."""
    out = {}
    for name, stage, script in stage_scripts(dvc_yaml):
        deps = [repo / d for d in stage.get("deps", []) if "${" not in d]
        missing = [str(f.relative_to(repo)) for f in sorted(project_imports(repo / script, repo / "src"))
                   if not any(f == d or d in f.parents for d in deps)]
        if (repo / script) not in deps:
            missing.insert(0, script)
        if missing:
            out[name] = missing
    return out


def load_dvc_yaml() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))


def test_every_stage_depends_on_every_project_file_it_imports():
    assert uncovered(load_dvc_yaml()) == {}


def test_the_check_sees_transitive_and_function_local_imports():
    files = {str(f.relative_to(SRC)) for f in project_imports(REPO / "stages/sft.py")}
    # sft.py -> training.loop -> training.dev_eval -> evaluation.runner (module level) -> evaluation.heads;
    # evaluation.runner imports evaluation.decoding inside a function body
    assert {"emoloom/__init__.py", "emoloom/training/loop.py", "emoloom/evaluation/heads.py",
            "emoloom/evaluation/decoding.py", "emoloom/core/io.py"} <= files
    eval_files = {str(f.relative_to(SRC)) for f in project_imports(REPO / "stages/eval_dev.py")}
    assert "emoloom/evaluation/baselines.py" in eval_files          # imported inside evaluate_file's body


def test_a_missing_folder_dep_is_reported():
    broken = copy.deepcopy(load_dvc_yaml())
    broken["stages"]["eval_dev"]["deps"].remove("src/emoloom/modeling")
    report = uncovered(broken)
    assert list(report) == ["eval_dev"] and "src/emoloom/modeling/model.py" in report["eval_dev"]


def test_the_flat_layout_deps_of_before_would_fail():
    """The deps of the old dvc.yaml, which named single modules: eval_dev listed no model code at all."""
    old = copy.deepcopy(load_dvc_yaml())
    old["stages"]["eval_dev"]["deps"] = ["stages/eval_dev.py", "src/emoloom/evaluation/runner.py",
                                         "src/emoloom/evaluation/decoding.py", "src/emoloom/evaluation/metrics.py"]
    assert "src/emoloom/modeling/model.py" in uncovered(old)["eval_dev"]


def stages_reading_the_lexicon_without_its_dep(dvc_yaml: dict, repo: Path = REPO) -> list[str]:
    """Stages whose script loads the weak-VAD lexicon but whose deps or params do not name it (a new lexicon file
    would then leave their results marked up to date)."""
    out = []
    for name, stage, script in stage_scripts(dvc_yaml):
        if "load_lexicon(" not in (repo / script).read_text(encoding="utf-8"):
            continue
        has_dep = "${data.raw_root}/${weak_vad.lexicon}" in stage.get("deps", [])
        has_param = {"weak_vad.lexicon", "weak_vad"} & set(stage.get("params", []))
        if not (has_dep and has_param):
            out.append(name)
    return out


def test_every_stage_that_loads_the_lexicon_depends_on_it():
    assert stages_reading_the_lexicon_without_its_dep(load_dvc_yaml()) == []
    broken = copy.deepcopy(load_dvc_yaml())
    broken["stages"]["eval_dev"]["deps"].remove("${data.raw_root}/${weak_vad.lexicon}")
    assert stages_reading_the_lexicon_without_its_dep(broken) == ["eval_dev"]
