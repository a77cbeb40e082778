#!/usr/bin/env bash
# Issue 11's proof on a lent GPU machine, as one prepared run (../shared/docs/GPU.md):
# the loop benchmarks at the target settings, the device check and the `cuda` tests.
# Figures go to the terminal and, as JSON and logs, to $OUT (default: gpu_out/).
#
# The machine lacks some small packages; download their wheels here first (GPU.md lists
# them; add pytest, pluggy, iniconfig and packaging for the tests) into .whl/, then:
#   bash benchmarks/gpu_loop.sh            # about 10 minutes on an H200
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

bench() {  # name, then fit_throughput.py arguments
  local name=$1
  shift
  echo "== $name"
  python3 benchmarks/fit_throughput.py --device cuda "$@" --out "$OUT/$name.json" \
    2>"$OUT/$name.log" | tail -8
}
bench resnet50_b256_eager --backbone resnet50 --size 224 --batch-size 256 --n 16384 --compile false
bench resnet50_b256_compiled --backbone resnet50 --size 224 --batch-size 256 --n 16384 --compile true
bench resnet50_b32_eager --backbone resnet50 --size 224 --batch-size 32 --n 4096 --compile false
bench effb0_aux_b32_eager --backbone efficientnet_b0 --size 224 --batch-size 32 --aux-genes 5000 \
  --n 4096 --compile false
bench effb0_aux_b32_compiled --backbone efficientnet_b0 --size 224 --batch-size 32 \
  --aux-genes 5000 --n 4096 --compile true

echo "== device check (resume, RNG, prediction paths)"
python3 benchmarks/device_check.py --device cuda --backbone resnet50 --size 224 --n 1024 \
  --out "$OUT/device_check.json" 2>"$OUT/device_check.log" | tail -9

echo "== cuda tests"
python3 -m pytest --noconftest -p no:cacheprovider -q -m cuda tests/training/test_cuda.py \
  2>&1 | tee "$OUT/cuda_tests.txt" | tail -5
