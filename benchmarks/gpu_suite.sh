#!/usr/bin/env bash
# The GPU work in one call, on a machine whose Python already has torch, triton, click, tqdm, pillow and
# torchmetrics: installs this project without its dependencies, runs the GPU-marked tests, the Table 4
# latency grid (slow_r50, x3d_m, swin3d_b; 8x182^2, 8x224^2, 16x224^2; batch 1 and 8; bf16) and the
# kernel micro-benchmark, the forward-only backends (torch; onnxruntime and tensorrt where installed,
# otherwise rows marked skipped with the reason), and writes every table under RESULTS (default
# benchmarks/results).
# pytorchvideo models (slow_r50, x3d_m) need the pytorchvideo, fvcore and iopath wheels on the path.
# Not yet exercised: written for the first GPU run.
set -euo pipefail
RESULTS=${RESULTS:-benchmarks/results}
GPU=$(python3 -c "import torch; print(torch.cuda.get_device_name().split()[1].lower())")
mkdir -p "$RESULTS"
python3 -m pip install -q --no-deps --no-build-isolation -e .
python3 -m pytest -q -m "gpu or tensorrt" tests/test_gpu.py tests/test_kernels.py tests/test_kernels_benchmark.py \
    tests/test_tensorrt.py \
    2>&1 | tee "$RESULTS/gpu_tests_$GPU.log" | tail -3
for batch in 1 8; do
  python3 -m leaps_engine bench --device cuda --model slow_r50 --model x3d_m --model swin3d_b --batch "$batch" \
      --dtype bfloat16 --iters 20 --warmup 5 --out "$RESULTS/latency_${GPU}_batch$batch.md" > /dev/null
done
python3 -m leaps_engine bench --device cuda --model slow_r50 --model x3d_m --size 8x224x224 --batch 8 \
    --dtype float16 --forward-backend torch --forward-backend onnxruntime --forward-backend tensorrt \
    --out "$RESULTS/latency_forward_${GPU}.md" > /dev/null
python3 benchmarks/kernels.py --device cuda --dtype bfloat16 --out "$RESULTS/kernels_${GPU}_bf16.md" > /dev/null
tail -n 25 "$RESULTS/latency_${GPU}_batch1.md"
