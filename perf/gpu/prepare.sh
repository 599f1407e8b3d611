#!/usr/bin/env bash
# Builds, on this (CPU) machine, everything the GPU checks of issue 7 run on a GPU machine that
# has no Rust toolchain and no network: stripped release binaries of `bastion`, `bastion-perf`
# and the GPU test binary of bastion-accel, and a copy of the Wycheproof vectors, all under
# target/gpu/ (ignored by git; carried to the device with the device tool's `carry`).
#
#   bash perf/gpu/prepare.sh            # then carry target/gpu and run perf/gpu/run.sh there
#
# Safe to re-run: it rebuilds and overwrites target/gpu/.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/gpu
mkdir -p "$out"
cargo build --release --locked -p bastion -p bastion-perf
cp target/release/bastion target/release/bastion-perf "$out/"
# The test binary's path is printed by cargo as an executable artifact.
test_bin=$(cargo test --release --locked -p bastion-accel --test gpu --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpu":
        print(m["executable"])')
cp "$test_bin" "$out/accel-gpu-tests"
strip "$out/bastion" "$out/bastion-perf" "$out/accel-gpu-tests"
vectors="${BASTION_VECTORS:-../shared/vectors}"
if [ -f "$vectors/wycheproof_ed25519_test.json" ]; then
    mkdir -p "$out/vectors"
    cp "$vectors/wycheproof_ed25519_test.json" "$out/vectors/"
else
    echo "warning: $vectors/wycheproof_ed25519_test.json not found: the GPU Wycheproof test will fail" >&2
fi
du -sh "$out"/*
