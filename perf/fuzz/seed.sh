#!/usr/bin/env bash
# Regenerates the fuzz seeds (net/fuzz/seeds/<target>/) from a fresh devnet run: real signed
# client datagrams, their bodies, Ethernet frames carrying them, and blocks as peers send them.
#
#   perf/fuzz/seed.sh
#
# Steps: run `bastion devnet` (4 validators and the load generator) into a scratch data dir;
# rebuild the inputs from validator v0's block log with net/fuzz's `seeds` example (at most
# PER_KIND per kind of input, none over MAX_LEN bytes; see net/fuzz/examples/seeds.rs); keep
# those that add coverage with `cargo fuzz cmin` (block only, by default); replace net/fuzz/seeds/<target>/ with them.
#
# Environment (defaults in brackets):
#   DURATION   devnet seconds [20]         RATE      orders/s of the load generator [2000]
#   PER_KIND   inputs kept per kind [12]   MAX_LEN   longest input, bytes [1400]
#   BASTION    the binary [target/release/bastion, built with `cargo build --release` if absent]
#   WORK       scratch directory [a new temporary one, removed at the end unless KEEP=1]
#   TARGETS    targets to regenerate ["packet body l2 block"]
#   CMIN_TARGETS  targets whose inputs `cargo fuzz cmin` minimises (needs nightly and
#              cargo-fuzz) ["block"]. The ingress targets' inputs are small (~100 of 10-170
#              bytes each) and cmin would keep ~6 of them, one per code path, dropping the
#              variety of real orders (sides, types, flags, lengths) that mutation starts from;
#              CMIN_TARGETS="packet body l2 block" minimises all
#
# The inputs differ from run to run (keys, prices and timing are not fixed), so a regenerated
# seed set is not byte-identical to the committed one; its kinds and coverage are alike.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

DURATION=${DURATION:-20}
RATE=${RATE:-2000}
PER_KIND=${PER_KIND:-12}
MAX_LEN=${MAX_LEN:-1400}
BASTION=${BASTION:-target/release/bastion}
TARGETS=${TARGETS:-"packet body l2 block"}
CMIN_TARGETS=${CMIN_TARGETS:-block}
WORK=${WORK:-$(mktemp -d /tmp/bastion-fuzz-seed.XXXXXX)}
mkdir -p "$WORK"
if [ "${KEEP:-0}" != 1 ]; then
    trap 'rm -rf "$WORK"' EXIT
fi

if [ ! -x "$BASTION" ]; then
    cargo build --release --bin bastion
fi

echo "seed: devnet for ${DURATION} s at ${RATE} orders/s into $WORK/devnet" >&2
rm -rf "$WORK/devnet" "$WORK/raw"
"$BASTION" devnet --duration "$DURATION" --rate "$RATE" --data-dir "$WORK/devnet" >"$WORK/devnet.log" 2>&1 || {
    tail -40 "$WORK/devnet.log" >&2
    exit 1
}
grep -A20 '^devnet summary' "$WORK/devnet.log" | head -4 >&2 || true

# Validator v0's ingress address, as the genesis file gives it.
ingress=$(grep -o '"ingress": *"[^"]*"' "$WORK/devnet/genesis.json" | head -1 | sed 's/.*"\([^"]*\)"$/\1/')
echo "seed: v0's ingress is $ingress" >&2

(cd net/fuzz && cargo run --quiet --features seeds --example seeds -- \
    --log "$WORK/devnet/v0/data/log" --out "$WORK/raw" --ingress "$ingress" \
    --max-len "$MAX_LEN" --per-kind "$PER_KIND") >&2

for t in $TARGETS; do
    if [[ " $CMIN_TARGETS " == *" $t "* ]]; then
        # cmin merges the directory into itself, keeping the inputs that add coverage (named
        # by their SHA-1).
        (cd net && cargo +nightly fuzz cmin --features block "$t" "$WORK/raw/$t" -- -max_len="$MAX_LEN") \
            >"$WORK/cmin-$t.log" 2>&1 || { tail -20 "$WORK/cmin-$t.log" >&2; exit 1; }
    fi
    rm -rf "net/fuzz/seeds/$t"
    mkdir -p "net/fuzz/seeds/$t"
    cp "$WORK/raw/$t"/* "net/fuzz/seeds/$t/"
    echo "seed: $t: $(ls "net/fuzz/seeds/$t" | wc -l) files, $(du -sb "net/fuzz/seeds/$t" | cut -f1) bytes" >&2
done
