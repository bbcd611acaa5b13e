# speechdistill — two commands: `make demo` (the mini recipe end to end) and `make test`.
# Both create .venv when missing and install into it. Nothing here may pull a CUDA torch:
# torch==2.13.0 (the CPU wheel) is installed first, and every other requirement accepts it.

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.speechdistill-installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

# apt-get install (through sudo unless root), for sysdeps and testdeps
APT_INSTALL = SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q

.PHONY: demo test check lint bench install sysdeps testdeps clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	@$(PY) -c "import torch; assert '+cu' not in torch.__version__, torch.__version__"
	@touch $@

# System packages the demo and tests need: espeak-ng (speech synthesis for the mini corpus).
sysdeps:
	@command -v espeak-ng >/dev/null 2>&1 || { $(APT_INSTALL) espeak-ng; }

# Tools only some tests use (they skip without them): shellcheck (lints the recipes) and sox
# (wav.scp pipes).
testdeps: sysdeps
	@{ command -v shellcheck && command -v sox; } >/dev/null 2>&1 || { $(APT_INSTALL) shellcheck sox \
	  || echo "testdeps: shellcheck/sox not installed; the tests that need them skip"; }

demo: install sysdeps
	cd egs/mini_en && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" ./run.sh

# Everything CI runs: lint, format check, the test tiers (unit, reliability, then integration).
test: install testdeps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q --durations=15 tests/unit tests/reliability tests/integration

# The fast tiers for development: lint, the unit and reliability tests (tiny random models).
check: install
	$(PY) -m ruff check .
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q tests/unit tests/reliability -m "not slow"

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: install sysdeps
	@for b in bench/*.py; do echo "== $$b"; PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) egs/*/data egs/*/dump egs/*/exp
