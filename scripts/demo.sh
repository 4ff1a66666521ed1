#!/usr/bin/env bash
# The quick-start demo on a fresh Debian 12 machine: installs the packages, builds invnet, starts
# invnet-server on a fresh repository and runs `invnet experiment` on bimodal2d: the four losses
# trained as concurrent jobs, evaluated on the same held-out pairs next to the exact posterior
# mean, MAP, Wiener and A^+ y, and written up as a report folder (report.md, results.csv, SVG
# figures). Prints the results table and where the report is. A few minutes on 2 cores.
#
# Usage: scripts/demo.sh [WORK_DIR]        (default: a new directory under /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${1:-$(mktemp -d /tmp/invnet-demo-XXXXXX)}
mkdir -p "$WORK"

echo "== installing packages and building (build/)"
scripts/install-deps.sh > "$WORK/install.log" 2>&1 || { cat "$WORK/install.log"; exit 1; }
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > "$WORK/configure.log"
cmake --build build -j 2 --target invnet-server invnet

echo "== starting invnet-server (repository $WORK/repo)"
build/server/invnet-server --address=127.0.0.1:0 --repository="$WORK/repo" --max_jobs=4 \
  --torch_threads=1 > "$WORK/server.out" 2> "$WORK/server.log" &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q "listening on" "$WORK/server.out" 2>/dev/null && break
  kill -0 $SERVER_PID 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
  sleep 0.1
done
SERVER=$(awk '/listening on/ {print $NF}' "$WORK/server.out")
INVNET=(build/client/invnet --server="$SERVER")
"${INVNET[@]}" health

echo "== invnet experiment: bimodal2d with the four losses (4 concurrent jobs), then the report"
REPORT="$WORK/report"
"${INVNET[@]}" experiment --preset=bimodal2d --output_dir="$REPORT" > "$WORK/experiment.out"

echo
head -n 1 "$WORK/experiment.out"  # "bimodal2d, 5000 held-out pairs: ..."
echo
sed -n '/^| estimator/,/^$/p' "$REPORT/report.md"
echo "report (tables and SVG figures; open it in a browser or a Markdown viewer):"
echo "  $REPORT/report.md"

kill -TERM $SERVER_PID && wait $SERVER_PID
trap - EXIT
echo
echo "models, datasets and job records: $WORK/repo ; logs: $WORK"
