#!/usr/bin/env bash
# Prepare the wheels that benchmarks/gpu_suite.sh installs offline on a GPU machine that has torch,
# torchvision, triton and the project's other dependencies but not pytorchvideo (for slow_r50,
# r2plus1d_r50 and x3d_m) and its helpers.
#
# pytorchvideo, fvcore and iopath publish source distributions only, so they are built here with
# `pip wheel` (pure Python: py3-none-any); termcolor and yacs are downloaded as published wheels. Every
# wheel is checked to install on CPython 3.12, manylinux x86-64, and the folder to stay under 10 MiB.
#
# Usage (repository root, network access to PyPI):  bash benchmarks/gpu_carry.sh [DIR]   (default .whl)
# DIR is what the device call carries; add it to .git/info/exclude so that git ignores it.
set -euo pipefail
DIR=${1:-.whl}
PYTHON=${PYTHON:-python3}
LIMIT_BYTES=$((10 * 1024 * 1024))
BUILT=(pytorchvideo==0.1.5 fvcore==0.1.5.post20221221 iopath==0.1.10)
DOWNLOADED=(termcolor==3.3.0 yacs==0.1.8)

mkdir -p "$DIR"
rm -f "$DIR"/*.whl
"$PYTHON" -m pip wheel --quiet --no-deps --no-binary :all: --wheel-dir "$DIR" "${BUILT[@]}"
"$PYTHON" -m pip download --quiet --no-deps --only-binary :all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --dest "$DIR" "${DOWNLOADED[@]}"

for wheel in "$DIR"/*.whl; do
  tags=$(basename "$wheel" .whl | rev | cut -d- -f1-3 | rev)  # python-abi-platform
  case "$tags" in
    py3-none-any | py2.py3-none-any | cp312-cp312-manylinux*x86_64) ;;
    *) echo "error: $wheel does not install on CPython 3.12, manylinux x86-64 ($tags)" >&2; exit 2 ;;
  esac
done
expected=$((${#BUILT[@]} + ${#DOWNLOADED[@]}))
count=$(find "$DIR" -maxdepth 1 -type f -name '*.whl' | wc -l)
if [ "$count" -ne "$expected" ]; then
  echo "error: expected $expected wheels in $DIR, found $count" >&2
  exit 2
fi
bytes=$(du -cb "$DIR"/*.whl | tail -n 1 | cut -f1)
if [ "$bytes" -gt "$LIMIT_BYTES" ]; then
  echo "error: the wheels in $DIR take $bytes bytes, over the 10 MiB limit" >&2
  exit 2
fi
echo "wrote $count wheels ($((bytes / 1024)) KiB) to $DIR"
