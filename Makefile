# LipSDF developer commands. Needs only Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench venv clean

$(STAMP): requirements.txt requirements-blender.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-blender.txt
	touch $(STAMP)

venv: $(STAMP)

## demo: remesh and offset an embedded sample shape on the CPU; writes meshes and demo_out/demo.png
demo: $(STAMP)
	PYTHONPATH=. $(PY) scripts/demo.py --out demo_out

## test: the default test run (a few minutes on 2 cores)
test: $(STAMP)
	$(PY) -m pytest -q

## test-slow: the long tests on the real meshes in ../shared/meshes
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check lipsdf_blender tests benchmarks scripts

## bench: quality and speed of every preset on ../shared/meshes (long: see benchmarks/README)
bench: $(STAMP)
	PYTHONPATH=. $(PY) benchmarks/bench_core.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
