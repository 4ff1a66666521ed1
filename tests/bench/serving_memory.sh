#!/usr/bin/env bash
# Serving memory: invnet-server's resident memory with N small models loaded, and its growth
# over many Reconstruct requests (issue: "should be none"). Prints RSS samples and a summary.
#
# Usage: tests/bench/serving_memory.sh [MODELS=100] [REQUESTS=1000000] [CONCURRENCY=8]
# Needs build/server/invnet-server and build/client/invnet (cmake --build build).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODELS=${1:-100}
REQUESTS=${2:-1000000}
CONCURRENCY=${3:-8}
SERVER_BIN=build/server/invnet-server
CLI=build/client/invnet
WORK=$(mktemp -d /tmp/invnet-memory-XXXXXX)
trap 'kill $SERVER_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

start_server() {
  rm -f "$WORK/server.out"
  "$SERVER_BIN" --address=127.0.0.1:0 --repository="$WORK/repo" > "$WORK/server.out" \
    2>> "$WORK/server.log" &
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    grep -q "listening on" "$WORK/server.out" 2>/dev/null && break
    kill -0 $SERVER_PID 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
    sleep 0.1
  done
  SERVER=$(awk '/listening on/ {print $NF}' "$WORK/server.out")
}
stop_server() { kill -TERM $SERVER_PID && wait $SERVER_PID; }
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$SERVER_PID/status; }

echo "== one small model (bimodal2d preset: 2-D, 4 blocks x 64), copied to $MODELS names"
start_server
"$CLI" --server="$SERVER" train --preset=bimodal2d --model=m0 --loss=divergence --steps=200 \
  > /dev/null 2>&1
stop_server
for i in $(seq 1 "$MODELS"); do
  mkdir -p "$WORK/repo/models/m$i/1"
  cp "$WORK/repo/models/m0/1/model.ckpt" "$WORK/repo/models/m$i/1/model.ckpt"
done
rm -rf "$WORK/repo/models/m0"

start_server
echo "server pid $SERVER_PID, $("$CLI" --server="$SERVER" models list | grep -c '^m') models listed"
RSS_LOADED=$(rss_mib)
echo "RSS with $MODELS models loaded, before any request: $RSS_LOADED MiB"

# Warm-up: every model answers once, then 20,000 requests on one model.
for i in $(seq 1 "$MODELS"); do
  "$CLI" --server="$SERVER" bench --model="m$i" --requests=5 --warmup=0 > /dev/null
done
"$CLI" --server="$SERVER" bench --model=m1 --requests=20000 --concurrency="$CONCURRENCY" \
  --warmup=0 > /dev/null
RSS_WARM=$(rss_mib)
echo "RSS after warm-up (every model used once + 20,000 requests): $RSS_WARM MiB"

echo "== $REQUESTS Reconstruct requests (batch 1, $CONCURRENCY clients), spread over 10 models"
PER_MODEL=$((REQUESTS / 10))
(
  while kill -0 $SERVER_PID 2>/dev/null; do
    echo "  $(date +%T) RSS $(rss_mib) MiB"
    sleep 10
  done
) &
SAMPLER=$!
for i in $(seq 1 10); do
  "$CLI" --server="$SERVER" bench --model="m$((i * MODELS / 10))" --requests="$PER_MODEL" \
    --concurrency="$CONCURRENCY" --warmup=0 | grep -E 'requests|throughput|latency'
done
kill $SAMPLER 2>/dev/null || true
RSS_END=$(rss_mib)
echo
echo "summary: $MODELS models loaded $RSS_LOADED MiB; after warm-up $RSS_WARM MiB;" \
  "after $REQUESTS more requests $RSS_END MiB" \
  "(growth $(awk -v a="$RSS_WARM" -v b="$RSS_END" 'BEGIN {printf "%+.1f%%", 100 * (b - a) / a}'))"
stop_server
