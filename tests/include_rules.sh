#!/bin/bash
# The dependency rules of README "Code layout", checked on the sources' #include lines:
#   proto/base/  Abseil, itself and C++/POSIX headers only (every layer links it)
#   models/      no gRPC, protobuf or generated protos; of ours only models/ and proto/base/
#   client/      no LibTorch; nothing of models/ or server/
#   server/      nothing of client/
#   everywhere   no ".." in an include path
# Usage: include_rules.sh ROOT         check the tree at ROOT; exit 1 listing every violation
#        include_rules.sh --self-test  plant one violation per rule in a scratch tree and
#                                      check that each is caught (so the check cannot pass
#                                      vacuously)
set -u

# The #include lines under ROOT/DIR as "path:line:text" (comments and strings never match: the
# line must start with the directive).
include_lines() {
  local root=$1 dir=$2
  [ -d "$root/$dir" ] || return 0
  grep -rnE --include='*.h' --include='*.cc' '^[[:space:]]*#[[:space:]]*include' "$root/$dir" \
    2>/dev/null | sed "s|^$root/||"
}

# report WHY HITS: prints the violations, fails when there are any.
report() {
  [ -z "$2" ] && return 0
  echo "$1:"
  echo "$2" | sed 's/^/  /'
  return 1
}

# deny ROOT DIR PATTERN WHY: no include under DIR may name a path matching PATTERN.
deny() {
  report "$4" "$(include_lines "$1" "$2" | grep -E "#[[:space:]]*include[[:space:]]*($3)")"
}

# allow ROOT DIR PATTERN WHY: every include under DIR must name a path matching PATTERN.
allow() {
  report "$4" "$(include_lines "$1" "$2" | grep -vE "#[[:space:]]*include[[:space:]]*($3)")"
}

check_tree() {
  local root=$1 failed=0
  allow "$root" proto/base '"(absl|proto/base)/[^".]*\.h"|<[a-z_]+(\.h)?>|<sys/[a-z_]+\.h>' \
    "proto/base/ may include Abseil, itself and the C++/POSIX headers only" || failed=1
  deny "$root" models '"(server|client|invnet|grpc|grpcpp|google)/|<(grpc|grpcpp|google)/|"proto/[^b]' \
    "models/ may not include gRPC, protobuf, protos, server/ or client/" || failed=1
  deny "$root" client '"(models|server)/|[<"](torch|ATen|c10)/' \
    "client/ may not include LibTorch, models/ or server/" || failed=1
  deny "$root" server '"client/' "server/ may not include client/" || failed=1
  for dir in proto models client server; do
    deny "$root" "$dir" '["<][^">]*\.\./' "$dir/: no '..' in include paths (it hides the layer)" \
      || failed=1
  done
  return $failed
}

if [ "${1:-}" = "--self-test" ]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch"/{proto/base,models,client,server}
  printf '#include "proto/base/status.h"\n#include <torch/torch.h>\n' > "$scratch/models/ok.cc"
  printf '#include "proto/base/status.h"\n#include "invnet/v1/model.pb.h"\n// not <torch/torch.h>\n' \
    > "$scratch/client/ok.cc"
  printf '#include <sys/stat.h>\n#include <atomic>\n#include "absl/strings/str_cat.h"\n' \
    > "$scratch/proto/base/ok.cc"
  printf 'const char* k = "proto/timestamp";\n' > "$scratch/models/string.cc"
  check_tree "$scratch" > /dev/null || { echo "self-test: a clean tree failed"; exit 1; }
  status=0
  plants=('proto/base/a.h:#include <grpcpp/grpcpp.h>' 'proto/base/b.h:#include "models/iresnet.h"'
          'proto/base/c.h:#include "proto/timestamp.h"' 'proto/base/d.h:#include <glog/logging.h>'
          'proto/base/e.h:#include "tests/testing/x.h"' 'models/a.cc:#include "invnet/v1/model.pb.h"'
          'models/b.h:  #include <grpcpp/grpcpp.h>' 'models/c.h:#include "proto/timestamp.h"'
          'client/a.cc:#include "models/status_macros.h"' 'client/b.h:#include <torch/torch.h>'
          'client/c.cc:#include "server/names.h"' 'client/d.cc:#include "client/../models/iresnet.h"'
          'server/a.cc:#include "client/client.h"')
  for plant in "${plants[@]}"; do
    file=${plant%%:*}
    printf '%s\n' "${plant#*:}" > "$scratch/$file"
    if check_tree "$scratch" > /dev/null; then
      echo "self-test: not caught: $file: ${plant#*:}"
      status=1
    fi
    rm "$scratch/$file"
  done
  [ $status = 0 ] && echo "self-test: all ${#plants[@]} planted violations caught"
  exit $status
fi

root=${1:?usage: include_rules.sh ROOT | --self-test}
if check_tree "$root"; then
  echo "include rules hold in $root"
else
  exit 1
fi
