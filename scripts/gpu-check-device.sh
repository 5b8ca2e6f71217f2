#!/usr/bin/env bash
# The GPU check on a lent accelerator machine (the device tool), as one short command:
#   run(command="bash scripts/gpu-check-device.sh", carry=["store"], timeout_s=480)
# That machine has PyTorch with CUDA, transformers, tokenizers, onnx and a CPU-only onnxruntime
# already; the repository's own code travels with the working tree and the default model
# with `carry` (about 15 MB). Results land in $OUT (gpu_check.md, gpu_check.json).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c "import torch, onnxruntime; print('torch', torch.__version__, torch.cuda.is_available(), 'ort', onnxruntime.__version__, onnxruntime.get_available_providers())"
python3 -m benchmarks.gpu_check --store store --name prism-movies --out "${OUT:-benchmarks/results}" "$@"
