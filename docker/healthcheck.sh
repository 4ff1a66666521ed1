#!/bin/sh
# The invnet image's HEALTHCHECK (installed as /usr/local/bin/invnet-healthcheck): asks the
# running invnet-server's grpc.health.v1 service with `invnet health`, at the address and with
# the TLS of the server's own command line, so it follows whatever --address, --tls_cert_file
# and --tls_client_ca_file the container was started with (last occurrence wins, as for the
# server; both --flag=value and --flag value). Exit 0 when SERVING.
#
# The server is PID 1 (the image's exec-form ENTRYPOINT); otherwise the first process named
# invnet-server. Environment (all optional):
#   INVNET_HEALTHCHECK_PID        the server's process id (default: as above)
#   INVNET_HEALTHCHECK_HOST       host to dial (default: the --address host; for a wildcard
#                                 address 127.0.0.1, or localhost with TLS, the name
#                                 certificates for local use carry)
#   INVNET_HEALTHCHECK_CA_FILE    CA that signed the server's certificate (default: the
#                                 server's --tls_cert_file itself, right for a self-signed one)
#   INVNET_HEALTHCHECK_CERT_FILE, INVNET_HEALTHCHECK_KEY_FILE
#                                 a client certificate, needed when the server asks for one
#                                 (--tls_client_ca_file)
#   INVNET_CLI                    the invnet binary (default: invnet on PATH)
set -eu

server_pid() {
  if [ -n "${INVNET_HEALTHCHECK_PID:-}" ]; then echo "$INVNET_HEALTHCHECK_PID"; return; fi
  for dir in /proc/1 /proc/[0-9]*; do
    argv0=$(tr '\0' '\n' < "$dir/cmdline" 2> /dev/null | head -n 1) || continue
    if [ "${argv0##*/}" = invnet-server ]; then echo "${dir#/proc/}"; return; fi
  done
  echo "invnet-healthcheck: no invnet-server process" >&2
  exit 1
}

pid=$(server_pid)
[ -r "/proc/$pid/cmdline" ] || { echo "invnet-healthcheck: no process $pid" >&2; exit 1; }

# The server's defaults (server/server.h), then its flags in order.
address=127.0.0.1:50051
cert=""
client_ca=""
pending=""
while IFS= read -r arg; do
  if [ -n "$pending" ]; then
    eval "$pending=\$arg"
    pending=""
    continue
  fi
  case "$arg" in
    --address=* | -address=*) address=${arg#*=} ;;
    --tls_cert_file=* | -tls_cert_file=*) cert=${arg#*=} ;;
    --tls_client_ca_file=* | -tls_client_ca_file=*) client_ca=${arg#*=} ;;
    --address | -address) pending=address ;;
    --tls_cert_file | -tls_cert_file) pending=cert ;;
    --tls_client_ca_file | -tls_client_ca_file) pending=client_ca ;;
    --) break ;;
  esac
done <<EOF
$(tr '\0' '\n' < "/proc/$pid/cmdline")
EOF

port=${address##*:}
host=${address%:*}
case "$host" in
  "" | 0.0.0.0 | "[::]" | "[::0]") host="" ;;
esac
if [ -z "$host" ]; then
  if [ -n "$cert" ]; then host=localhost; else host=127.0.0.1; fi
fi
host=${INVNET_HEALTHCHECK_HOST:-$host}

set -- health --server="$host:$port" --timeout=4
if [ -n "$cert" ]; then
  set -- "$@" --tls --tls_ca_file="${INVNET_HEALTHCHECK_CA_FILE:-$cert}"
  if [ -n "$client_ca" ] || [ -n "${INVNET_HEALTHCHECK_CERT_FILE:-}" ]; then
    set -- "$@" --tls_cert_file="${INVNET_HEALTHCHECK_CERT_FILE:-}" \
      --tls_key_file="${INVNET_HEALTHCHECK_KEY_FILE:-}"
  fi
fi
exec "${INVNET_CLI:-invnet}" "$@"
