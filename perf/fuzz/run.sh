#!/usr/bin/env bash
# Runs each cargo-fuzz target of net/fuzz from its seeds (net/fuzz/seeds/<target>/), one
# libFuzzer process at a time, and records per target executions, exec/s, coverage (libFuzzer's
# final `cov:` and `ft:`), corpus size, crashes and wall time into a JSON report.
#
#   perf/fuzz/run.sh [SECONDS_PER_TARGET]
#
# Environment (defaults in brackets):
#   SECONDS_PER_TARGET  time limit per target, s [600]; the first argument overrides it
#   RUNS                stop a target after this many executions [10000000, the goal];
#                       -1 runs each target for the whole SECONDS_PER_TARGET
#   TARGETS             targets, in order ["packet body l2 block"]
#   MAX_LEN             libFuzzer -max_len [1400]
#   SANITIZER           cargo fuzz -s: address, none, ... [address]
#   NICE                niceness of the fuzzer [10]: leaves the other core's work undisturbed
#   OUT                 the report [perf/results/issue20-fuzz-2core.json]
#   CORPUS_DIR          where each target's growing corpus goes [a new temporary directory,
#                       kept]; the seeds themselves are only read
#   GOAL_EXECUTIONS     executions a target must reach to meet the goal [10000000]
#
# Needs a nightly toolchain (`cargo +nightly`) and cargo-fuzz (`cargo install cargo-fuzz
# --locked`). All targets are built with `--features block` so one build serves all four.
# A target that finds a crash stops (libFuzzer's default); the report lists the artifact and
# the script exits 1 after the other targets ran.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

SECONDS_PER_TARGET=${1:-${SECONDS_PER_TARGET:-600}}
RUNS=${RUNS:-10000000}
TARGETS=${TARGETS:-"packet body l2 block"}
MAX_LEN=${MAX_LEN:-1400}
SANITIZER=${SANITIZER:-address}
NICE=${NICE:-10}
OUT=${OUT:-perf/results/issue20-fuzz-2core.json}
CORPUS_DIR=${CORPUS_DIR:-$(mktemp -d /tmp/bastion-fuzz-corpus.XXXXXX)}
GOAL_EXECUTIONS=${GOAL_EXECUTIONS:-10000000}
LOGS=$(mktemp -d /tmp/bastion-fuzz-logs.XXXXXX)

echo "fuzz: targets [$TARGETS], ${SECONDS_PER_TARGET} s or ${RUNS} runs each, -max_len=$MAX_LEN," \
    "sanitizer $SANITIZER; corpora in $CORPUS_DIR, logs in $LOGS" >&2

(cd net && cargo +nightly fuzz build --features block -s "$SANITIZER") >&2

status=0
records=()
for t in $TARGETS; do
    seeds="net/fuzz/seeds/$t"
    corpus="$CORPUS_DIR/$t"
    artifacts="net/fuzz/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    before=$(find "$artifacts" -type f | sort)
    log="$LOGS/$t.log"
    start=$(date +%s.%N)
    set +e
    # One process: no -jobs/-workers (libFuzzer's -jobs=1 would fork a worker writing its own
    # log); cargo fuzz's own --jobs defaults to 1.
    (cd net && nice -n "$NICE" cargo +nightly fuzz run --features block -s "$SANITIZER" "$t" \
        "$corpus" "$ROOT/$seeds" -- \
        -max_len="$MAX_LEN" -max_total_time="$SECONDS_PER_TARGET" -runs="$RUNS" \
        -print_final_stats=1) >"$log" 2>&1
    rc=$?
    set -e
    end=$(date +%s.%N)
    after=$(find "$artifacts" -type f | sort)
    new=$(comm -13 <(echo "$before") <(echo "$after") | grep -v '^$' || true)
    [ "$rc" -eq 0 ] || status=1
    [ -z "$new" ] || status=1
    records+=("$t|$rc|$start|$end|$log|$corpus|$seeds|$(echo "$new" | tr '\n' ' ')")
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::|^==[0-9]+==|panicked|Test unit written' "$log" | sed "s/^/  $t: /" >&2 || true
done

python3 - "$OUT" "$SECONDS_PER_TARGET" "$RUNS" "$MAX_LEN" "$SANITIZER" "$GOAL_EXECUTIONS" "${records[@]}" <<'EOF'
import json, os, platform, re, subprocess, sys, time

out, secs, runs, max_len, sanitizer, goal = sys.argv[1:7]
goal = int(goal)

def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except Exception as e:
        return f"unavailable: {e}"

def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()

def mem_gib():
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return None

status_re = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)(?:.*exec/s: (\d+))?")
targets, goals = {}, []
for rec in sys.argv[7:]:
    name, rc, start, end, log, corpus, seeds, new = rec.split("|", 7)
    text = open(log, errors="replace").read()
    lines = text.splitlines()
    inited = last = None
    stats = {}
    for line in lines:
        m = status_re.match(line)
        if m:
            if m.group(2) == "INITED":
                inited = m
            last = m
        if line.startswith("stat::"):
            k, v = line[len("stat::"):].split(":", 1)
            stats[k.strip()] = int(v.strip())
    wall = float(end) - float(start)
    execs = stats.get("number_of_executed_units", int(last.group(1)) if last else 0)
    files = [os.path.join(corpus, f) for f in os.listdir(corpus)] if os.path.isdir(corpus) else []
    seed_files = [os.path.join(seeds, f) for f in os.listdir(seeds)] if os.path.isdir(seeds) else []
    crashes = [a for a in new.split() if a]
    panic = next((l.strip() for l in lines if "panicked at" in l), None)
    fuzz_s = stats.get("average_exec_per_sec")
    t = {
        "executions": execs,
        "exec_per_s": fuzz_s,
        "cov": int(last.group(3)) if last else None,
        "ft": int(last.group(4)) if last else None,
        "corpus_units": int(last.group(5)) if last else None,
        "corpus_files": len(files),
        "corpus_bytes": sum(os.path.getsize(f) for f in files),
        "seeds": {
            "files": len(seed_files),
            "bytes": sum(os.path.getsize(f) for f in seed_files),
            "cov": int(inited.group(3)) if inited else None,
            "ft": int(inited.group(4)) if inited else None,
        },
        "new_units_added": stats.get("new_units_added"),
        "peak_rss_mb": stats.get("peak_rss_mb"),
        "crashes": len(crashes),
        "crash_artifacts": crashes,
        "panic": panic,
        "exit_code": int(rc),
        "wall_s": round(wall, 1),
        "final_status_line": last.group(0) if last else None,
    }
    met = execs >= goal and not crashes and int(rc) == 0
    t["met"] = met
    targets[name] = t
    goals.append({
        "name": f"fuzz-{name}",
        "target": "executions >= 1e7 per target, no crash",
        "measured": f"{execs} executions in {wall:.0f} s ({fuzz_s} exec/s), {len(crashes)} crashes",
        "met": met,
    })

report = {
    "suite": "fuzz",
    "issue": 20,
    "started_unix_s": int(min(float(r.split("|")[2]) for r in sys.argv[7:])) if sys.argv[7:] else int(time.time()),
    "commit": sh("git", "rev-parse", "HEAD"),
    "machine": {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "memory_gib": mem_gib(),
        "kernel": platform.release(),
    },
    "toolchain": {
        "rustc": sh("rustc", "+nightly", "--version"),
        "cargo_fuzz": sh("cargo", "fuzz", "--version"),
    },
    "settings": {
        "seconds_per_target": int(secs),
        "runs": int(runs),
        "max_len": int(max_len),
        "sanitizer": sanitizer,
        "build": "cargo +nightly fuzz build --features block (release, debug assertions, -s " + sanitizer + ")",
        "jobs": 1,
        "seeds": "net/fuzz/seeds/<target>/ (perf/fuzz/seed.sh)",
    },
    "command": "perf/fuzz/run.sh " + secs + f"  (RUNS={runs} MAX_LEN={max_len} SANITIZER={sanitizer})",
    "targets": targets,
    "goals": goals,
}
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out, "w") as f:
    json.dump(report, f, indent=2)
    f.write("\n")
print(f"fuzz: report in {out}", file=sys.stderr)
for name, t in targets.items():
    print(f"  {name:>6}: {t['executions']} execs, {t['exec_per_s']} exec/s, cov {t['cov']}, ft {t['ft']}, "
          f"corpus {t['corpus_units']} units, {t['crashes']} crashes, {t['wall_s']} s, met {t['met']}", file=sys.stderr)
EOF

exit $status
