#!/usr/bin/env bash
# The GPU check on a lent accelerator machine (the device tool), as one short command:
#   run(command="bash scripts/gpu-check-device.sh", carry=["store", "build/device/whl"], timeout_s=480)
# That machine has PyTorch with CUDA, transformers, tokenizers, onnx and a CPU-only
# onnxruntime already, and no network. What it lacks travels with `carry`:
# - `store/`: the default model (`make model`, about 18 MB);
# - `build/device/whl/`: wheels for Python 3.12 that the check imports and the machine lacks (pydantic,
#   pydantic-core, annotated-types, typing-inspection), installed into /tmp/site;
# - `build/device/ortgpu0/` to `ortgpuN/` (optional): onnxruntime-gpu's wheel (about 256 MB, for CUDA
#   13) cut into parts that each fit one call's 64 MiB, carried over successive calls of a
#   warm machine (paths that .gitignore names stay there between calls; ones
#   ignored only by .git/info/exclude do not, since that file does not travel); `build/device/ortgpu0/parts.txt` names the
#   wheel, its SHA-256 and the part count. With every part there, the wheel is put back
#   together, checked and installed ahead of the CPU-only onnxruntime, and the check
#   measures ONNX Runtime on CUDA too; without them it says that it could not.
#   Cut it here with `bash scripts/gpu-check-device.sh --split WHEEL`.
# Results land in $OUT (gpu_check.md, gpu_check.json).
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=build/device/whl
parts=build/device/ortgpu  # parts.txt in ${parts}0, part k in $parts$k

if [ "${1:-}" = "--split" ]; then  # here, before the calls: cut a wheel into parts
    wheel=$2
    part_mib=${3:-59}
    rm -rf "$parts"[0-9]*
    mkdir -p "${parts}0" "$parts-split"
    split -b "${part_mib}M" -d -a 1 "$wheel" "$parts-split/part"
    n=0
    for part in "$parts-split"/part*; do
        n=$((n + 1))
        mkdir -p "$parts$n"
        mv "$part" "$parts$n/part"
    done
    rmdir "$parts-split"
    printf '%s %s %s\n' "$(basename "$wheel")" "$(sha256sum "$wheel" | cut -d' ' -f1)" "$n" \
        > "${parts}0/parts.txt"
    cat "${parts}0/parts.txt"
    du -sh "$parts"[0-9]*
    exit 0
fi

export PYTHONUNBUFFERED=1
site=$PWD
if compgen -G "$wheels/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$wheels"/*.whl
    site=$site:/tmp/site
fi
if [ -f "${parts}0/parts.txt" ]; then
    read -r name sha count < "${parts}0/parts.txt"
    have=$(find build/device -maxdepth 2 -path "$parts[1-9]*/part" | wc -l)
    if [ "$have" -eq "$count" ]; then
        mkdir -p /tmp/ortgpu
        for k in $(seq 1 "$count"); do cat "$parts$k/part"; done > "/tmp/ortgpu/$name"
        if echo "$sha  /tmp/ortgpu/$name" | sha256sum -c --quiet -; then
            python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
                --upgrade --target /tmp/site-ortgpu "/tmp/ortgpu/$name"
            site=/tmp/site-ortgpu:$site  # ahead of the machine's CPU-only onnxruntime
            # CUDA and cuDNN come from the machine's NVIDIA pip packages (PyTorch's); ORT's
            # preload looks for them beside itself, so name their folders to the loader.
            nv=$(python3 -c "import nvidia, os; print(':'.join(os.path.join(p, d, 'lib') for p in nvidia.__path__ for d in sorted(os.listdir(p)) if os.path.isdir(os.path.join(p, d, 'lib'))))" 2>/dev/null || true)
            export LD_LIBRARY_PATH=${nv}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
            echo "onnxruntime-gpu: $name installed from $count parts"
        else
            echo "onnxruntime-gpu: the parts do not add up to $name (SHA-256 differs); CPU-only"
        fi
    else
        echo "onnxruntime-gpu: $have of $count parts here; running with the CPU-only onnxruntime"
    fi
fi
export PYTHONPATH=$site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c "import torch, onnxruntime; print('torch', torch.__version__, torch.cuda.is_available(), 'ort', onnxruntime.__version__, onnxruntime.get_available_providers())"
python3 -m benchmarks.gpu_check --store store --name prism-movies --out "${OUT:-benchmarks/results}" "$@"
