#!/usr/bin/env bash
# The GPU check, as one prepared run on a machine with a CUDA GPU (../shared/docs/GPU.md):
#  1. the CUDA tests (tests/training/test_cuda.py);
#  2. the real `fit` against the bare model step (benchmarks/fit_throughput.py): resnet50
#     at batch 256 and 32, efficientnet_b0 with the auxiliary head (5,000 genes) at batch
#     32, eager and compiled;
#  3. the device check (resume, random state, prediction paths);
#  4. 1 / 2 / 4 trainings sharing the GPU through the Dask runner's cluster (cluster:
#     local_cuda, gpu_per_training 1 / 0.5 / 0.25; benchmarks/gpu_sharing.py);
# then one table with the ratios (benchmarks/gpu_table.py). Figures go to the terminal and,
# as JSON and logs, to $OUT (default: gpu_out/).
#
# A bare GPU machine lacks some small packages: download their wheels here first into
# .whl/ (GPU.md lists them; add pytest, pluggy, iniconfig and packaging for the tests, and
# dask, distributed, dask-cuda with their dependencies for step 4), then:
#   bash benchmarks/gpu_check.sh            # about 12 minutes on an H200
#   QUICK=1 bash benchmarks/gpu_check.sh    # smaller stores, for a first try
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
if [ -d .whl ]; then
  rm -rf .site
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target .site .whl/*.whl
fi
export PYTHONPATH="$PWD/.site:$PWD/src:$PWD" DO_NOT_TRACK=true
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
N256=16384 N32=4096
if [ -n "${QUICK:-}" ]; then N256=2048 N32=1024; fi

echo "== cuda tests"
python3 -m pytest --noconftest -p no:cacheprovider -q -m cuda tests/training/test_cuda.py \
  2>&1 | tee "$OUT/cuda_tests.txt" | tail -5

bench() {  # name, then fit_throughput.py arguments
  local name=$1
  shift
  echo "== $name"
  python3 benchmarks/fit_throughput.py --device cuda "$@" --out "$OUT/fit_$name.json" \
    2>"$OUT/fit_$name.log" | tail -8
}
bench resnet50_b256_eager --backbone resnet50 --size 224 --batch-size 256 --n $N256 --compile false
bench resnet50_b256_compiled --backbone resnet50 --size 224 --batch-size 256 --n $N256 --compile true
bench resnet50_b32_eager --backbone resnet50 --size 224 --batch-size 32 --n $N32 --compile false
bench resnet50_b32_compiled --backbone resnet50 --size 224 --batch-size 32 --n $N32 --compile true
bench effb0_aux_b32_eager --backbone efficientnet_b0 --size 224 --batch-size 32 --aux-genes 5000 \
  --n $N32 --compile false
bench effb0_aux_b32_compiled --backbone efficientnet_b0 --size 224 --batch-size 32 \
  --aux-genes 5000 --n $N32 --compile true

echo "== device check (resume, RNG, prediction paths)"
python3 benchmarks/device_check.py --device cuda --backbone resnet50 --size 224 --n 1024 \
  --out "$OUT/device_check.json" 2>"$OUT/device_check.log" | tail -9

echo "== trainings sharing one GPU (Dask, local_cuda)"
python3 benchmarks/gpu_sharing.py --device cuda --backbone efficientnet_b0 --aux-genes 5000 \
  --size 224 --batch-size 32 --n $N32 --trainings 1 2 4 --out "$OUT/sharing.json" \
  2>"$OUT/sharing.log" | tail -6

echo "== table"
python3 benchmarks/gpu_table.py "$OUT" | tee "$OUT/table.md"
