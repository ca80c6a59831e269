# LipSDF developer commands. Needs only Python 3.11 and make (and Python 3.13 for the Blender
# 5.1+ tests: their bpy is built for 3.13 only).
PYTHON ?= python3.11
# The first python3.13 that runs: on PATH, else pyenv's (a pyenv shim on PATH may not run).
PYTHON313 ?= $(shell for p in python3.13 $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13; do \
	"$$p" -c "import sys; sys.exit(sys.version_info[:2] != (3, 13))" 2>/dev/null && { echo "$$p"; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' lipsdf_blender/__init__.py)
ZIP := dist/lipsdf_blender-$(VERSION).zip

.PHONY: demo demo-core extension test test-slow lint bench bench-speed bench-speedups bench-peers bench-clouds bench-scans venv clean
.PHONY: test-blender test-blender-5.0 test-blender-all
.PHONY: venv-blender-4.2 venv-blender-4.5 venv-blender-5.2 venv-blender-5.3

$(STAMP): requirements.txt requirements-blender.txt requirements-ray.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-blender.txt -r requirements-ray.txt
	touch $(STAMP)

venv: $(STAMP)

## extension: build the Blender extension zip with Blender's own tool and validate it
extension: $(STAMP)
	$(PY) scripts/build_extension.py --out dist

## demo: headless Blender installs the add-on, remeshes, offsets and combines three shapes,
## saves demo_out/demo.blend and renders demo_out/demo.png with Cycles on the CPU
demo: extension
	rm -rf demo_out/user
	BLENDER_USER_RESOURCES=$(CURDIR)/demo_out/user LIPSDF_WORKER_PYTHON=$(CURDIR)/$(PY) \
		$(PY) scripts/demo_blender.py --zip $(ZIP) --out demo_out

## demo-core: the core library alone (no Blender): remesh and offsets drawn with matplotlib
demo-core: $(STAMP)
	PYTHONPATH=. $(PY) scripts/demo.py --out demo_out

## test: the default test run (a few minutes on 2 cores)
test: $(STAMP)
	$(PY) -m pytest -q

## test-slow: the long tests on the real meshes in ../shared/meshes
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

## Blender versions the manifest claims: 5.0 runs in the main venv (requirements-blender.txt),
## each other one in its own venv holding only its pinned bpy and numpy: 4.2 and 4.5 LTS made
## with PYTHON (3.11), 5.2 LTS and 5.3 with PYTHON313 (bpy 5.1+ exists for Python 3.13 only).
## The tests still run in the main venv (torch, core); only the bpy scenario processes use the
## chosen Blender's Python.
BLENDER_LTS := 4.2 4.5
BLENDER_313 := 5.2 5.3
BLENDER_OWN := $(BLENDER_LTS) $(BLENDER_313)
BLENDER_TESTS := tests/test_blender.py tests/test_blender_tools.py
bpy_pin = $(shell sed -n 's/^bpy==//p' $(1))
# The Python that makes a Blender version's venv, and what to install when it is missing.
blender_python = $(if $(filter $(1),$(BLENDER_313)),$(PYTHON313),$(PYTHON))
blender_python_hint = $(if $(filter $(1),$(BLENDER_313)),\
	"make: Blender $(1) needs Python 3.13 (bpy $(1) is built for 3.13 only): install Python 3.13 (python.org, apt python3.13 or pyenv install 3.13) or set PYTHON313=/path/to/python3.13",\
	"make: $(PYTHON) not found; set PYTHON=/path/to/python3.11")

.venv-blender-%/.installed: requirements-blender-%.txt
	@"$(call blender_python,$*)" -c "" >/dev/null 2>&1 || { echo $(call blender_python_hint,$*); exit 1; }
	"$(call blender_python,$*)" -m venv .venv-blender-$*
	.venv-blender-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-blender-$*/bin/python -m pip install --quiet -r $<
	touch $@

# Real files, not intermediates of the pattern rules: make must not delete them.
.SECONDARY: $(BLENDER_OWN:%=.venv-blender-%/.installed)
venv-blender-4.2: .venv-blender-4.2/.installed
venv-blender-4.5: .venv-blender-4.5/.installed
venv-blender-5.2: .venv-blender-5.2/.installed
venv-blender-5.3: .venv-blender-5.3/.installed

## test-blender (= test-blender-5.0): tests/test_blender.py with bpy 5.0 (the main venv)
test-blender test-blender-5.0: $(STAMP)
	LIPSDF_BLENDER_VERSION=$(call bpy_pin,requirements-blender.txt) \
		$(PY) -m pytest -q $(BLENDER_TESTS)

## test-blender-4.2, -4.5, -5.2, -5.3: the same tests, the scenarios in that Blender's venv.
## The versions in BLENDER_SMALL run the smaller set BLENDER_SMALL_K (CI: the oldest and the
## newest run everything): the scene (remesh, offsets, CSG, clouds, curve, refusals, drawing)
## and every field tool with the VDB hand-over, without the reopen, cancel, Ray, batch-script
## and PLY scenarios. Default: none, everything everywhere.
BLENDER_SMALL ?=
BLENDER_SMALL_K := not reopened and not cancel and not cluster and not batch_example and not scanned_ply
test-blender-%: $(STAMP) .venv-blender-%/.installed
	LIPSDF_BLENDER_PYTHON=$(CURDIR)/.venv-blender-$*/bin/python \
	LIPSDF_BLENDER_VERSION=$(call bpy_pin,requirements-blender-$*.txt) \
		$(PY) -m pytest -q $(BLENDER_TESTS) $(if $(filter $*,$(BLENDER_SMALL)),-k "$(BLENDER_SMALL_K)")

## test-blender-all: tests/test_blender.py once per Blender version, one after the other;
## runs them all, then fails if any failed, and says how long each took.
## BLENDER_VERSIONS="4.2 5.3" picks some.
BLENDER_VERSIONS ?= 5.0 $(BLENDER_OWN)
test-blender-all: $(STAMP)
	@failed=""; \
	for v in $(BLENDER_VERSIONS); do \
		echo "== Blender $$v"; start=$$(date +%s); \
		$(MAKE) --no-print-directory test-blender-$$v || failed="$$failed $$v"; \
		echo "== Blender $$v: $$(( $$(date +%s) - start )) s (venv included)"; \
	done; \
	if [ -n "$$failed" ]; then echo "test-blender-all: failed on Blender$$failed"; exit 1; fi; \
	echo "test-blender-all: passed on Blender $(BLENDER_VERSIONS)"

lint: $(STAMP)
	$(VENV)/bin/ruff check lipsdf_blender tests benchmarks scripts

## bench: quality and speed of every preset on ../shared/meshes (long: see benchmarks/README)
bench: $(STAMP)
	PYTHONPATH=. $(PY) benchmarks/bench_core.py

## bench-peers: LipSDF next to Blender's voxel remesh, MeshFix, Solidify and curve bevel
## (issue 9; long). Extra arguments: make bench-peers BENCH_ARGS='--inputs spot --quick'
bench-peers: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt
	PYTHONPATH=. $(PY) benchmarks/bench_peers.py $(BENCH_ARGS)

## bench-clouds: LipSDF on point clouds next to Open3D / MeshLab screened Poisson and ball
## pivoting (issue 10; hours; four of its shapes are fetched once). Extra arguments:
## make bench-clouds BENCH_ARGS='--shapes spot'
bench-clouds: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt
	-PYTHONPATH=. $(PY) benchmarks/scan_data.py --fetch
	PYTHONPATH=. $(PY) benchmarks/bench_clouds.py $(BENCH_ARGS)

## bench-scans: LipSDF on raw scans (Stanford bunny range scans, PCL's milk carton) next to
## screened Poisson (issue 23; fetches the public data once into ~/.cache/lipsdf-bench)
bench-scans: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt
	-PYTHONPATH=. $(PY) benchmarks/scan_data.py --fetch
	PYTHONPATH=. $(PY) benchmarks/bench_scans.py $(BENCH_ARGS)

## bench-speed: seconds per phase of a fresh CLI remesh of each input (read, prepare, label,
## train, detail, extract, write) and the peers' seconds in the same run (minutes; run it alone)
bench-speed: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt
	PYTHONPATH=. $(PY) benchmarks/bench_phases.py $(BENCH_ARGS)

## bench-speedups: issue 5's CPU speed numbers (about an hour on 2 cores; use a quiet machine)
bench-speedups: $(STAMP)
	PY=$(PY) bash benchmarks/run_cpu_speed.sh

clean:
	rm -rf $(VENV) $(BLENDER_OWN:%=.venv-blender-%) demo_out .pytest_cache build dist
