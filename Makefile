# azdo-exporter — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast venv system-deps lint golden clean bench soak

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || { \
	  echo "azdo-exporter needs Python 3.11 or later; $(PYTHON) is $$($(PYTHON) --version 2>&1 || echo missing)." \
	    "Install python3.11 (or newer) and run: make PYTHON=python3.11 ..."; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing python3-venv with apt-get"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
	    rm -rf $(VENV); $(PYTHON) -m venv $(VENV); \
	  else echo "python3 -m venv failed: install python3-venv (sudo apt-get install python3-venv)"; exit 1; fi; }
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

## Run the exporter against the built-in simulated organization on http://127.0.0.1:9862/metrics
demo: venv
	$(VENV)/bin/azdo-exporter --demo

## Install what the tests need (system packages when root), then run the whole suite
test: venv system-deps
	$(PY) -m pytest -q

## The inner loop: unit and integration tests (simulator over HTTP) but not the slow ones, one worker per core;
## no system components; not a replacement for make test. --dist loadscope: a module's fixtures are built once.
test-fast: venv
	$(PY) -m pytest -q -p no:cacheprovider -n auto --dist loadscope tests/unit tests/integration -m "not slow"

## Benchmark at organization scale (simulator --scale large): one table of medians with min-max (~15 min)
bench: venv
	$(PY) -m bench.run

## Fault soak: 10+ minutes of injected faults against the exporter, then convergence checks
soak: venv
	$(PY) -m bench.soak --minutes 10.5

system-deps:
	@./scripts/system-deps.sh

## The whole repository: ruff, mypy (files in pyproject.toml) and the import contract (layers, pyproject.toml)
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## Regenerate the golden exposition file (fixed seed, fixed clock)
golden: venv
	$(PY) -m tests.golden

## Dependency wheels for the Dockerfile (build/wheelhouse), e.g. for `docker compose -f deploy/compose.yaml up --build`
wheelhouse: venv
	rm -rf build/wheelhouse
	$(PY) -m pip wheel -q --disable-pip-version-check -w build/wheelhouse '.[web,entra]' 'setuptools>=68' wheel
	rm -f build/wheelhouse/azdo_exporter-*.whl

## Container image with podman, offline (base image from Debian's packages); IMAGE=... to name it
image: venv
	./scripts/build-image.sh

## Regenerate deploy/kubernetes/prometheusrule.yaml from alerts/
deploy-rules: venv
	$(PY) deploy/generate.py

.PHONY: wheelhouse image deploy-rules

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache *.egg-info
