#!/usr/bin/env bash
# Builds the invnet image from docker/Dockerfile and proves that it serves:
#   1. start invnet-server from the image, the repository on a volume, and wait until healthy
#      (the image's own HEALTHCHECK command is run too);
#   2. from outside the container, train a small model with the host's invnet CLI and reconstruct;
#   3. stop the server with SIGTERM and check it exited cleanly (0);
#   4. start it again on the same volume: the model is still served, with identical outputs.
# With a Docker engine it uses docker; without one (as on our CI machines) it builds with
# buildah and runs the image with `buildah run --isolation=chroot` (host network), from local
# debian:bookworm / bookworm-slim base images made with debootstrap, so no registry is needed.
#
# Usage: docker/smoke-test.sh      (from the repository root, after build/ has the invnet CLI)
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=${INVNET_CLI:-$PWD/build/client/invnet}
IMAGE=localhost/invnet:smoke
WORK=$(mktemp -d /tmp/invnet-smoke-XXXXXX)
VOLUME=$WORK/volume
mkdir -p "$VOLUME" && chmod 777 "$VOLUME"
# The smoke test's own container store. With the vfs driver (the one that works without a kernel
# overlay here) every layer is a full copy of the file system (1.3 to 2.4 GB), so the image is
# built without per-step layers (one commit per stage), and prune_store leaves only the base
# images behind: the cached layers of earlier commits had filled the disk in a few runs.
STORE=${INVNET_SMOKE_STORE:-/var/lib/containers/invnet-smoke}
STORAGE=(--storage-driver=vfs --root="$STORE/root" --runroot="$STORE/run")
NEEDED_GB=10  # one build's peak, measured: 7.1 GB
SECONDS=0
stage() { printf '\n== %s (%s, +%ds)\n' "$1" "$(date +%T)" "$SECONDS"; }
[ -x "$CLI" ] || { echo "smoke test: no invnet CLI at $CLI (build it first)"; exit 1; }

if docker info > /dev/null 2>&1; then ENGINE=docker; else ENGINE=buildah; fi
echo "container engine: $ENGINE"

ensure_base_images() {
  local have=1
  for tag in bookworm bookworm-slim; do
    podman "${STORAGE[@]}" image exists "docker.io/library/debian:$tag" || have=0
  done
  [ "$have" = 1 ] && return
  local rootfs=/var/tmp/invnet-bookworm-rootfs
  if [ ! -x "$rootfs/usr/bin/apt-get" ]; then
    stage "debootstrap a local debian:bookworm base image (no registry here)"
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian > "$WORK/debootstrap.log"
    rm -rf "$rootfs/var/cache/apt/archives/"*.deb
  fi
  tar -C "$rootfs" -c . | podman "${STORAGE[@]}" import - docker.io/library/debian:bookworm > /dev/null
  podman "${STORAGE[@]}" tag docker.io/library/debian:bookworm docker.io/library/debian:bookworm-slim
}

# Everything but the base images, in this store only.
prune_store() {
  local id name
  buildah "${STORAGE[@]}" rm --all > /dev/null 2>&1 || true
  while read -r id name; do
    case "$name" in
      docker.io/library/debian:*) ;;
      *) buildah "${STORAGE[@]}" rmi -f "$id" > /dev/null 2>&1 || true ;;
    esac
  done < <(buildah "${STORAGE[@]}" images --all --format '{{.ID}} {{.Name}}:{{.Tag}}')
}

stage "build the image from docker/Dockerfile"
if [ "$ENGINE" = docker ]; then
  docker build -f docker/Dockerfile -t "$IMAGE" .
  SIZE=$(docker image inspect "$IMAGE" --format '{{.Size}}')
else
  mkdir -p "$STORE"
  prune_store
  FREE_GB=$(df --output=avail -BG "$STORE" | tail -1 | tr -dc 0-9)
  echo "container store: $STORE ($(du -sh "$STORE" | cut -f1) kept, $FREE_GB GB free)"
  [ "$FREE_GB" -ge "$NEEDED_GB" ] \
    || { echo "smoke test: a build needs $NEEDED_GB GB free beside $STORE"; exit 1; }
  ensure_base_images
  # Docker format: the OCI image format has no HEALTHCHECK.
  buildah "${STORAGE[@]}" bud --pull=never --isolation=chroot --layers=false --format=docker \
    -f docker/Dockerfile -t "$IMAGE" . > "$WORK/build.log" 2>&1 \
    || { tail -50 "$WORK/build.log"; prune_store; exit 1; }
  SIZE=$(buildah "${STORAGE[@]}" inspect --type image --format '{{.Size}}' "$IMAGE" 2>/dev/null \
         || podman "${STORAGE[@]}" image inspect "$IMAGE" --format '{{.Size}}')
fi
echo "image size: $((SIZE / 1024 / 1024)) MiB"

PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SERVER_PID=""
CONTAINER=""
start_server() {
  if [ "$ENGINE" = docker ]; then
    CONTAINER=$(docker run -d -p "127.0.0.1:$PORT:50051" -v "$VOLUME:/var/lib/invnet" "$IMAGE")
  else
    CONTAINER=$(buildah "${STORAGE[@]}" from "$IMAGE")
    # The image's ENTRYPOINT, exactly as the image says (exec form), plus the port for this run.
    mapfile -t ENTRYPOINT < <(buildah "${STORAGE[@]}" inspect --format \
      '{{range .OCIv1.Config.Entrypoint}}{{println .}}{{end}}' "$CONTAINER" | sed '/^$/d')
    # A shell records the server's exit code on the volume: buildah itself sometimes crashes
    # while cleaning up after the command (a buildah 1.28 bug), so its own status is no proof.
    rm -f "$VOLUME/.server-exit-code"
    buildah "${STORAGE[@]}" run --isolation=chroot -v "$VOLUME:/var/lib/invnet" "$CONTAINER" -- \
      /bin/sh -c '"$@"; echo $? > /var/lib/invnet/.server-exit-code' sh \
      "${ENTRYPOINT[@]}" --address="127.0.0.1:$PORT" >> "$WORK/server.log" 2>&1 &
    SERVER_PID=$!
  fi
  local deadline=$((SECONDS + 120))
  until "$CLI" health --server="127.0.0.1:$PORT" --timeout=2 > /dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "server not healthy"; tail -30 "$WORK/server.log"; exit 1; }
    sleep 0.5
  done
}
# The server itself (not the buildah process that started it): named invnet-server, with this
# run's port on its command line.
server_process() {
  local pid candidate
  for candidate in $(pgrep -x invnet-server); do
    if tr '\0' ' ' < "/proc/$candidate/cmdline" | grep -q "127.0.0.1:$PORT"; then
      pid=$candidate
    fi
  done
  echo "$pid"
}
stop_server() {  # SIGTERM; prints the server's exit code
  if [ "$ENGINE" = docker ]; then
    docker stop --time 30 "$CONTAINER" > /dev/null
    docker inspect "$CONTAINER" --format '{{.State.ExitCode}}'
    docker rm "$CONTAINER" > /dev/null
  else
    kill -TERM "$(server_process)"
    wait "$SERVER_PID" || true
    local deadline=$((SECONDS + 60))
    until [ -s "$VOLUME/.server-exit-code" ] || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
    cat "$VOLUME/.server-exit-code" 2> /dev/null || echo "none"
    buildah "${STORAGE[@]}" rm "$CONTAINER" > /dev/null 2>&1 || true
  fi
}
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2> /dev/null; then
    pkill -KILL -f "address=127.0.0.1:$PORT" || true
  fi
  [ "$ENGINE" = docker ] && [ -n "$CONTAINER" ] && docker rm -f "$CONTAINER" > /dev/null 2>&1
  [ "$ENGINE" = buildah ] && prune_store
  rm -rf "$WORK"
}
trap cleanup EXIT

stage "start the server from the image"
start_server
echo "healthy on 127.0.0.1:$PORT"
if [ "$ENGINE" = buildah ]; then
  # The image's HEALTHCHECK command, run inside the image (buildah does not run health checks).
  PROBE=$(buildah "${STORAGE[@]}" from "$IMAGE")
  CHECK=$(buildah "${STORAGE[@]}" inspect --format '{{.Docker.Config.Healthcheck.Test}}' "$PROBE")
  echo "image HEALTHCHECK: $CHECK"
  # The server is not PID 1 here (no PID namespace): tell the check which process it is.
  buildah "${STORAGE[@]}" run --isolation=chroot --env INVNET_HEALTHCHECK_PID="$(server_process)" \
    "$PROBE" -- invnet-healthcheck
  echo "runs as: $(buildah "${STORAGE[@]}" run --isolation=chroot "$PROBE" -- id -un)"
  buildah "${STORAGE[@]}" rm "$PROBE" > /dev/null
fi

stage "train and reconstruct from outside the container"
cat > "$WORK/small.spec" <<'SPEC'
model_name: "smoke" preset: "bimodal2d"
architecture { num_blocks: 2 hidden_width: 16 }
training { loss: LOSS_DIVERGENCE steps: 200 batch_size: 128 validation_size: 200 }
SPEC
"$CLI" train --server="127.0.0.1:$PORT" --spec="$WORK/small.spec"
printf '0.9,0.1\n-0.9,-0.1\n0.2,0.3\n1.5,-0.4\n' > "$WORK/y.csv"
"$CLI" reconstruct --server="127.0.0.1:$PORT" --model=smoke --input="$WORK/y.csv" \
  --output="$WORK/before.csv"

stage "SIGTERM: graceful shutdown"
CODE=$(stop_server)
echo "server exit code: $CODE"
[ "$CODE" = 0 ] || { tail -30 "$WORK/server.log"; exit 1; }
test -f "$VOLUME/models/smoke/1/model.ckpt" || { echo "model not on the volume"; exit 1; }

stage "restart on the same volume: the model persisted"
start_server
"$CLI" reconstruct --server="127.0.0.1:$PORT" --model=smoke --input="$WORK/y.csv" \
  --output="$WORK/after.csv"
cmp "$WORK/before.csv" "$WORK/after.csv" || { echo "outputs differ after restart"; exit 1; }
CODE=$(stop_server)
[ "$CODE" = 0 ] || exit 1
stage "smoke test passed (image $((SIZE / 1024 / 1024)) MiB)"
