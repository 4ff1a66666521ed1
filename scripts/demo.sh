#!/usr/bin/env bash
# The quick-start demo on a fresh Debian 12 machine: installs the packages, builds invnet, starts
# invnet-server on a fresh repository, trains bimodal2d with the four losses through the CLI, and
# prints each network's reconstruction MSE on held-out pairs next to the exact posterior mean's
# and MAP's. A few minutes on 2 cores.
#
# Usage: scripts/demo.sh [WORK_DIR]        (default: a new directory under /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${1:-$(mktemp -d /tmp/invnet-demo-XXXXXX)}
mkdir -p "$WORK"
PY=/usr/bin/python3

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

echo "== training bimodal2d with the four losses (4 concurrent jobs, progress below)"
JOBS=()
for LOSS in approximation logdet divergence reconstruction; do
  JOBS+=("$("${INVNET[@]}" train --preset=bimodal2d --loss=$LOSS --model=bimodal2d-$LOSS --detach)")
done
for JOB in "${JOBS[@]}"; do "${INVNET[@]}" jobs watch "$JOB"; done

echo "== drawing 5000 held-out pairs x ~ prior, y = A x + 0.2 noise"
$PY - "$WORK" <<'PYEOF'
import random, sys
random.seed(2025)
with open(sys.argv[1] + "/x.csv", "w") as fx, open(sys.argv[1] + "/y.csv", "w") as fy:
    for i in range(5000):
        x0 = random.choice([-1.0, 1.0]) + 0.3 * random.gauss(0, 1)
        x1 = 0.3 * random.gauss(0, 1)
        y0 = 0.9 * x0 + 0.2 * x1 + 0.2 * random.gauss(0, 1)
        y1 = 0.1 * x0 + 0.5 * x1 + 0.2 * random.gauss(0, 1)
        fx.write("%r,%r\n" % (x0, x1))
        fy.write("%r,%r\n" % (y0, y1))
PYEOF

echo "== reconstructing with each network and computing the exact references"
for LOSS in approximation logdet divergence reconstruction; do
  "${INVNET[@]}" reconstruct --model=bimodal2d-$LOSS --input="$WORK/y.csv" \
    --output="$WORK/xhat-$LOSS.csv" 2> /dev/null
done
"${INVNET[@]}" estimate --model=bimodal2d-divergence --input="$WORK/y.csv" \
  --output="$WORK/ref.csv" --estimators=posterior_mean,map,pseudo_inverse 2> /dev/null

$PY - "$WORK" <<'PYEOF'
import sys
work = sys.argv[1]
def read(name):
    with open(work + "/" + name) as f:
        return [[float(v) for v in line.split(",")] for line in f if line.strip()]
x = read("x.csv")
def mse(est):
    return sum((a - b) ** 2 for r, s in zip(est, x) for a, b in zip(r, s)) / len(x)
rows = [("exact posterior mean", "ref.posterior_mean.csv"), ("exact MAP", "ref.map.csv"),
        ("A^-1 y", "ref.pseudo_inverse.csv"),
        ("approximation training", "xhat-approximation.csv"),
        ("log-det regularised", "xhat-logdet.csv"),
        ("divergence regularised", "xhat-divergence.csv"),
        ("reconstruction training", "xhat-reconstruction.csv")]
pm = mse(read(rows[0][1]))
print("\nbimodal2d, %d held-out pairs: reconstruction MSE = mean ||x_hat - x||^2\n" % len(x))
print("| %-26s | %8s | %6s |" % ("estimator", "MSE", "x PM"))
print("|%s|%s|%s|" % ("-" * 28, "-" * 10, "-" * 8))
for label, name in rows:
    m = mse(read(name))
    print("| %-26s | %8.4f | %6.3f |" % (label, m, m / pm))
PYEOF

kill -TERM $SERVER_PID && wait $SERVER_PID
trap - EXIT
echo
echo "models, datasets and job records: $WORK/repo ; inputs and outputs: $WORK"
