#!/bin/bash
# The dependency rules of README "Code layout", checked on the sources' #include lines:
#   proto/base/  Abseil and itself only (no torch, gRPC or protobuf: every layer links it)
#   models/      no gRPC, protobuf or generated protos; of ours only models/ and proto/base/
#   client/      no LibTorch; nothing of models/ or server/
#   server/      nothing of client/
# Usage: include_rules.sh ROOT         check the tree at ROOT; exit 1 listing every violation
#        include_rules.sh --self-test  plant one violation per rule in a scratch tree and
#                                      check that each is caught (so the check cannot pass
#                                      vacuously)
set -u

# rule DIR PATTERN WHY: every #include under ROOT/DIR matching the extended regex PATTERN
check() {
  local root=$1 dir=$2 pattern=$3 why=$4 hits
  [ -d "$root/$dir" ] || return 0
  hits=$(grep -rnE --include='*.h' --include='*.cc' "^[[:space:]]*#[[:space:]]*include[[:space:]]*$pattern" \
         "$root/$dir" 2>/dev/null | sed "s|^$root/||")
  if [ -n "$hits" ]; then
    echo "$why:"
    echo "$hits" | sed 's/^/  /'
    return 1
  fi
}

check_tree() {
  local root=$1 failed=0
  check "$root" proto/base '"(models|server|client|invnet|grpc|google)/|<(torch|ATen|c10|grpc|grpcpp|google)/' \
    "proto/base/ may include Abseil and itself only" || failed=1
  check "$root" proto/base '"proto/(invnet|timestamp)' \
    "proto/base/ may not include the generated contract" || failed=1
  check "$root" models '"(server|client|invnet|grpc|grpcpp|google)/|<(grpc|grpcpp|google)/|"proto/[^b]' \
    "models/ may not include gRPC, protobuf, protos, server/ or client/" || failed=1
  check "$root" client '"(models|server)/|[<"](torch|ATen|c10)/' \
    "client/ may not include LibTorch, models/ or server/" || failed=1
  check "$root" server '"client/' "server/ may not include client/" || failed=1
  return $failed
}

if [ "${1:-}" = "--self-test" ]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch"/{proto/base,models,client,server}
  printf '#include "proto/base/status.h"\n#include <torch/torch.h>\n' > "$scratch/models/ok.cc"
  printf '#include "proto/base/status.h"\n#include "invnet/v1/model.pb.h"\n' > "$scratch/client/ok.cc"
  check_tree "$scratch" > /dev/null || { echo "self-test: a clean tree failed"; exit 1; }
  status=0
  for plant in 'proto/base/a.h:#include <grpcpp/grpcpp.h>' 'proto/base/b.h:#include "models/iresnet.h"' \
               'proto/base/c.h:#include "proto/timestamp.h"' 'models/a.cc:#include "invnet/v1/model.pb.h"' \
               'models/b.h:  #include <grpcpp/grpcpp.h>' 'models/c.h:#include "proto/timestamp.h"' \
               'client/a.cc:#include "models/status_macros.h"' 'client/b.h:#include <torch/torch.h>' \
               'client/c.cc:#include "server/names.h"' 'server/a.cc:#include "client/client.h"'; do
    file=${plant%%:*}
    printf '%s\n' "${plant#*:}" > "$scratch/$file"
    if check_tree "$scratch" > /dev/null; then
      echo "self-test: not caught: $file: ${plant#*:}"
      status=1
    fi
    rm "$scratch/$file"
  done
  [ $status = 0 ] && echo "self-test: all 10 planted violations caught"
  exit $status
fi

root=${1:?usage: include_rules.sh ROOT | --self-test}
if check_tree "$root"; then
  echo "include rules hold in $root"
else
  exit 1
fi
