#!/usr/bin/env bash
# The GPU checks of issue 7, run on the GPU machine from the repository root after
# perf/gpu/prepare.sh built target/gpu/ here and the device tool carried it there. Writes every
# output under $OUT (default target/gpu-out) and stops at the first failure.
#
#   OUT=/some/dir bash perf/gpu/run.sh [quick]
#
# 1. the accel GPU tests with a GPU required (Wycheproof and a mutation campaign against the
#    reference rule; the risk kernel against its host build);
# 2. `bastion sig backends`: the GPU, NVRTC and the calibrated crossovers;
# 3. `bastion-perf sigverify --backend gpu` and `bastion-perf risk --backend gpu`.
# The first run on a machine compiles the kernels with NVRTC (about a minute each); the
# compiled kernels are cached in ~/.cache/bastion/kernels for the later steps.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/gpu
out="${OUT:-target/gpu-out}"
mkdir -p "$out"
quick=()
if [ "${1:-}" = quick ]; then quick=(--quick); fi
export BASTION_REQUIRE_GPU=1 BASTION_VECTORS="$PWD/$bin/vectors" CI=true
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/nvidia-smi.txt" || true
echo "== accel GPU tests"
"$bin/accel-gpu-tests" --test-threads 1 2>&1 | tee "$out/accel-gpu-tests.txt"
echo "== bastion sig backends"
"$bin/bastion" sig backends --calibrate-ms 300 2>&1 | tee "$out/sig-backends.txt"
echo "== sigverify --backend gpu"
"$bin/bastion-perf" sigverify --backend gpu "${quick[@]}" --json "$out/sigverify-gpu.json" 2>&1 | tee "$out/sigverify-gpu.txt"
echo "== risk --backend gpu"
"$bin/bastion-perf" risk --backend gpu "${quick[@]}" --json "$out/risk-gpu.json" 2>&1 | tee "$out/risk-gpu.txt"
