#!/usr/bin/env bash
# Forward latency of the libtorch native runner (native/aoti_runner) on AOTInductor packages of the
# embedded model and r3d_18 (random weights) at the sizes of results/latency_forward_cpu.md, batch 8.
# Builds the runner with CMake into build/native and writes RESULTS/latency_forward_native_cpu.md.
# Usage: bash benchmarks/native_forward.sh   (from the repository root, with .venv set up)
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
RESULTS=${RESULTS:-benchmarks/results}
WORK=build/native-forward
BATCH=8
mkdir -p "$WORK" "$RESULTS"
cmake -S . -B build/native -DPython_EXECUTABLE="$PWD/$PYTHON" > "$WORK/configure.log"
cmake --build build/native -j 2 --target aoti_runner > "$WORK/build.log"
out="$RESULTS/latency_forward_native_cpu.md"
{
  echo "> device: cpu ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores); float32;" \
       "batch $BATCH; 20 timed passes after 2 warm-up; torch $("$PYTHON" -c 'import torch; print(torch.__version__)')  "
  echo "> command: bash benchmarks/native_forward.sh  "
  echo
  echo "| model | video size | batch | backend | forward median | p10 | p90 |"
  echo "|---|---|---|---|---:|---:|---:|"
} > "$out.tmp"
for spec in embedded:embedded:8x32x32 embedded:embedded:8x112x112 r3d_18:random:8x32x32 r3d_18:random:8x112x112; do
  IFS=: read -r model weights size <<< "$spec"
  package="$WORK/$model-$size.pt2"
  [ -f "$package" ] || "$PYTHON" -m leaps_engine export "$model" --weights "$weights" --format aoti --size "$size" \
      --out "$package" > /dev/null 2>&1
  shape="$BATCH,3,${size//x/,}"
  build/native/aoti_runner --package "$package" --shape "$shape" --label "$model" --iters 20 --warmup 2 | tail -n 1 \
      >> "$out.tmp"
done
mv "$out.tmp" "$out"
cat "$out"
