#!/usr/bin/env bash
# Issue 5's CPU numbers in one command (about an hour on a 2-core CPU; run it on a quiet one).
#   1. before/after of each CPU speed-up, one pinned core, 1 thread (both sides alike);
#   2. extraction of the H100-trained 20 x 128 spot field (benchmarks/data) at 128..512, 2 threads,
#      and labelling time against the input's size, 2 threads;
#   3. our fast preset against the reference recipe (10 min cap per mesh), one pinned core each,
#      1 thread, then their quality curves (2 threads; not timed).
# Tables go to stdout and benchmarks/results/*.md; JSON beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONPATH=.
R=benchmarks/results
mkdir -p "$R"
taskset -c 1 "$PY" benchmarks/bench_speedups.py --threads 1 | tee "$R/speedups.md"
"$PY" benchmarks/bench_scaling.py --extract benchmarks/data/spot_high.lipsdf \
    --resolutions 128,256,384,512 --label --threads 2 | tee "$R/scaling.md"
taskset -c 1 "$PY" benchmarks/bench_vs_reference.py train --threads 1 --cap 600
"$PY" benchmarks/bench_vs_reference.py eval --threads 2 | tee "$R/vs_reference.md"
