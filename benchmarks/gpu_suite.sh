#!/usr/bin/env bash
# The one command to run when a GPU is available (about 5 minutes on a cold machine).
#
# On a machine whose python3 has torch, torchvision, triton, click, tqdm, pillow and torchmetrics but no
# network: installs the wheels that benchmarks/gpu_carry.sh prepared (carried in .whl/) and this
# project without its dependencies, then runs benchmarks/gpu_suite.py (environment, copy bandwidth,
# `pytest -m gpu`, the kernel benchmark, the Table 4 grid) within the budget, and writes
# RESULTS/gpu_suite_<device>.{json,md} and the logs. The summary is printed last.
#
# Usage (repository root):
#   bash benchmarks/gpu_suite.sh [--results DIR] [--budget SECONDS]
#   bash benchmarks/gpu_suite.sh --dry-run [--results DIR]   # CPU, tiny sizes, the current environment
#
# Environment: PYTHON (default python3), WHEELS (default .whl), SITE (default /tmp/leaps-engine-site).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/leaps-engine-site}

if [[ " $* " != *" --dry-run "* ]]; then
  if compgen -G "$WHEELS/*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$WHEELS"/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "warning: no wheels in $WHEELS (bash benchmarks/gpu_carry.sh makes them): pytorchvideo models will fail" >&2
  fi
  if ! "$PYTHON" -m pip install -q --no-deps --no-build-isolation --no-index -e .; then
    echo "warning: installing the project failed; running it from the source tree" >&2
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
export PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/gpu_suite.py "$@"
