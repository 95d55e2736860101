#!/usr/bin/env bash
# Starts a 3-node boxoffice storage cluster on loopback (ports 7001-7003), data in
# ${DATA:-data/cluster}. First run bootstraps it; later runs restart the nodes from their
# data dirs. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/cluster}
BIN=${BOXOFFICE_BIN:-target/release/boxoffice}
[ -x "$BIN" ] || cargo build --release -p boxoffice-node --bin boxoffice
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
members="1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
for id in 1 2 3; do
  dir="$DATA/n$id"
  if [ -f "$dir/node.json" ]; then
    args=(node --data-dir "$dir")
  else
    args=(node --id "$id" --listen "127.0.0.1:700$id" --data-dir "$dir")
    [ "$id" = 1 ] && args+=(--init "$members" --shards "${SHARDS:-4}")
  fi
  mkdir -p "$DATA"
  "$BIN" "${args[@]}" 2>>"$DATA/n$id.log" &
  pids+=($!)
done
echo "cluster up: curl http://127.0.0.1:7001/cluster/status  (logs in $DATA/n*.log)"
wait
