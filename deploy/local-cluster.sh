#!/usr/bin/env bash
# Starts a 3-node boxoffice storage cluster on loopback (ports 7001-7003), data in
# ${DATA:-data/cluster}. First run bootstraps it and generates the cluster key
# ($DATA/cluster.key, which every node and API node of this cluster must be given); later runs
# restart the nodes from their data dirs. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/cluster}
BIN=${BOXOFFICE_BIN:-target/release/boxoffice}
[ -x "$BIN" ] || cargo build --release -p boxoffice-node --bin boxoffice
mkdir -p "$DATA"
KEY="$DATA/cluster.key"
if [ ! -f "$KEY" ]; then
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$KEY")
fi
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
echo "cluster up on 127.0.0.1:7001-7003 (key in $KEY, logs in $DATA/n*.log)"
echo "API node: $BIN api --cluster 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 --cluster-key-file $KEY --dev-tokens"
wait
