#!/usr/bin/env bash
# A boxoffice cluster on loopback, data in ${DATA:-data/cluster}.
#
#   deploy/local-cluster.sh            three storage nodes (127.0.0.1:7001-7003) and an API node
#                                      (127.0.0.1:8080, dev tokens); the first run bootstraps and
#                                      generates the cluster key ($DATA/cluster.key) and the API
#                                      secrets, later runs restart from the data dirs. Ctrl-C
#                                      stops them all.
#   deploy/local-cluster.sh add N      starts node N (127.0.0.1:700N, empty) and adds it to the
#                                      running cluster; move replicas onto it with
#                                      `boxoffice admin groups move`.
#   deploy/local-cluster.sh drain N    moves every leadership and replica off node N, shows the
#                                      progress until it is removed, then stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/cluster}
BIN=${BOXOFFICE_BIN:-target/release/boxoffice}
API=http://127.0.0.1:8080
[ -x "$BIN" ] || cargo build --release -p boxoffice-node --bin boxoffice
mkdir -p "$DATA"
KEY="$DATA/cluster.key"
secret() { # a 32-byte hex secret kept in $DATA/$1
  [ -f "$DATA/$1" ] || (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DATA/$1")
  cat "$DATA/$1"
}
secret cluster.key >/dev/null

admin() { # boxoffice admin … with a dev admin token from the API node
  local token
  token=$(curl -sf -X POST "$API/v1/auth/token" -H 'content-type: application/json' \
    -d '{"user":"ops","role":"admin"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
  BOXOFFICE_API=$API BOXOFFICE_ADMIN_TOKEN=$token "$BIN" admin "$@"
}

case "${1:-up}" in
add)
  id=${2:?usage: $0 add NODE_ID}
  dir="$DATA/n$id"
  if [ -f "$dir/node.json" ]; then
    args=(node --data-dir "$dir" --cluster-key-file "$KEY")
  else
    args=(node --id "$id" --listen "127.0.0.1:700$id" --data-dir "$dir" --cluster-key-file "$KEY")
  fi
  nohup "$BIN" "${args[@]}" 2>>"$DATA/n$id.log" >/dev/null &
  echo $! >"$DATA/n$id.pid"
  sleep 1
  admin nodes add --id "$id" --addr "127.0.0.1:700$id"
  ;;
drain)
  id=${2:?usage: $0 drain NODE_ID}
  admin nodes drain --id "$id"
  if [ -f "$DATA/n$id.pid" ]; then
    kill "$(cat "$DATA/n$id.pid")" 2>/dev/null || true
    rm -f "$DATA/n$id.pid"
  else
    echo "node $id is removed; stop its process (it was started by the 'up' run)"
  fi
  ;;
up)
  pids=()
  trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
  members="1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
  for id in 1 2 3; do
    dir="$DATA/n$id"
    if [ -f "$dir/node.json" ]; then
      args=(node --data-dir "$dir" --cluster-key-file "$KEY")
    else
      args=(node --id "$id" --listen "127.0.0.1:700$id" --data-dir "$dir" --cluster-key-file "$KEY")
      [ "$id" = 1 ] && args+=(--init "$members" --shards "${SHARDS:-4}")
    fi
    "$BIN" "${args[@]}" 2>>"$DATA/n$id.log" &
    pids+=($!)
  done
  "$BIN" api --cluster 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 --cluster-key-file "$KEY" \
    --listen 127.0.0.1:8080 --dev-tokens --search-dir "$DATA/search" \
    --jwt-secret "$(secret jwt.secret)" --webhook-secret "$(secret webhook.secret)" \
    --admission-secret "$(secret admission.secret)" 2>>"$DATA/api.log" &
  pids+=($!)
  echo "cluster up on 127.0.0.1:7001-7003, API node on $API (key in $KEY, logs in $DATA/*.log)"
  echo "grow and shrink it: $0 add 4; $0 drain 1"
  wait
  ;;
*)
  echo "usage: $0 [up | add NODE_ID | drain NODE_ID]" >&2
  exit 2
  ;;
esac
