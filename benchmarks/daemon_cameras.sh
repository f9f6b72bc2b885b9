#!/usr/bin/env bash
# The real daemon with N cameras on one video file (realtime at its native rate, looped), measured as
# an operator sees it: frames read / scored / dropped, capture-to-score latency (from the daemon's own
# histogram, so bucket bounds), process CPU and RSS over a window after a warm-up.
#   benchmarks/daemon_cameras.sh N VIDEO [WARMUP_S] [WINDOW_S]
# A seed for the capacity harness of the capacity issue; no broker, the committed model.
set -euo pipefail
cd "$(dirname "$0")/.."
N=$1; SRC=$(realpath "$2"); WARM=${3:-15}; WIN=${4:-40}
PORT=$((19300 + N)); D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
{ printf '[metrics]\nport = %d\n[storage]\npath = "%s/var"\n' "$PORT" "$D"
  for i in $(seq 1 "$N"); do printf '[cameras.c%d]\nsource = "%s"\nloop = true\n' "$i" "$SRC"; done; } > "$D/c.toml"
.venv/bin/stream-detector run --config "$D/c.toml" > "$D/out" 2> "$D/err" & PID=$!
sleep "$WARM"
t0=$(awk '{print $14 + $15}' /proc/$PID/stat); curl -s "127.0.0.1:$PORT/metrics" > "$D/m0"
sleep "$WIN"
t1=$(awk '{print $14 + $15}' /proc/$PID/stat); curl -s "127.0.0.1:$PORT/metrics" > "$D/m1"
rss=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
kill -INT $PID; wait $PID || true
.venv/bin/python - "$D" "$t0" "$t1" "$rss" "$N" "$WIN" "$(getconf CLK_TCK)" <<'PY'
import os, re, sys
d, t0, t1, rss, n, win, tck = sys.argv[1], *map(float, sys.argv[2:])

def parse(path):
    out = {}
    for line in open(path):
        m = re.match(r'(\S+?)(\{.*\})? (\S+)$', line.strip())
        if m and not line.startswith('#'):
            out[(m.group(1), m.group(2) or '')] = float(m.group(3))
    return out

a, b = parse(d + '/m0'), parse(d + '/m1')
def delta(name):
    return sum(v - a.get(k, 0.0) for k, v in b.items() if k[0] == name)
buckets = {}
for (name, labels), v in b.items():
    if name == 'stream_detector_scoring_latency_seconds_bucket':
        le = float(re.search(r'le="([^"]+)"', labels).group(1))
        buckets[le] = buckets.get(le, 0.0) + v - a.get((name, labels), 0.0)
bounds = sorted(buckets)
def q(p):
    return next((le for le in bounds if buckets[le] >= p * buckets[bounds[-1]]), float('nan'))
print(f"cameras {n:.0f}: read {delta('stream_detector_frames_read_total'):.0f} "
      f"scored {delta('stream_detector_frames_scored_total'):.0f} "
      f"dropped {delta('stream_detector_frames_dropped_total'):.0f} in {win:.0f} s; "
      f"latency p50 <= {q(0.5)} s, p99 <= {q(0.99)} s; CPU {(t1 - t0) / tck / win * 100:.0f} % "
      f"(of {100 * os.cpu_count():.0f}); RSS {rss / 1024:.0f} MB")
PY
