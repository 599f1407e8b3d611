#!/usr/bin/env bash
# The GPU checks of issue 7, run on the GPU machine from the repository root after
# perf/gpu/prepare.sh built target/gpu/ here and the device tool carried it there. Writes every
# output under $OUT (default target/gpu-out). Every step runs even when an earlier one failed
# (a device session is short: gather everything), and the script exits 1 if any step failed.
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
failed=()
step() {
    local name="$1"
    shift
    echo "== $name"
    if ! "$@" 2>&1 | tee "$out/$name.txt"; then
        failed+=("$name")
    fi
}
step accel-gpu-tests "$bin/accel-gpu-tests" --test-threads 1
step sig-backends "$bin/bastion" sig backends --calibrate-ms 300
step sigverify-gpu "$bin/bastion-perf" sigverify --backend gpu "${quick[@]}" --json "$out/sigverify-gpu.json"
step risk-gpu "$bin/bastion-perf" risk --backend gpu "${quick[@]}" --json "$out/risk-gpu.json"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed: ${failed[*]}"
    exit 1
fi
echo "all GPU checks passed"
