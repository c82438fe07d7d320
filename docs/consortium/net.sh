#!/usr/bin/env bash
# N EthereumJS Clique signers on 127.0.0.1 (default 3):   net.sh up | down | status
#
#   NET_DIR  the network's folder: genesis.json and keys/ from make_network.py; the
#            nodes' data goes to $NET_DIR/data/nodeN, logs to $NET_DIR/data/nodeN.log
#   EJS_DIR  where `npm install` was run with this folder's package.json
#            (@ethereumjs/client 0.10.5 in $EJS_DIR/node_modules)
#   NODES    how many nodes (default 3, at most 9)
#
# Node i: RPC http://127.0.0.1:861i, RLPx 3031i, sealing with keys/signeri.key.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${NET_DIR:?set NET_DIR to the network folder (genesis.json, keys/)}"
: "${EJS_DIR:?set EJS_DIR to the folder holding node_modules/@ethereumjs/client}"
cd "$NET_DIR"
N=${NODES:-3}
# The preload's imports (@ethereumjs/...) resolve from where the file is: run a copy of
# it next to the client's node_modules.
PRELOAD="$EJS_DIR/clique-fixes.mjs"
EJS=(node --import "$PRELOAD" "$EJS_DIR/node_modules/@ethereumjs/client/dist/esm/bin/cli.js")

rpc() {  # rpc NODE METHOD [PARAMS]
  curl -s -H 'content-type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":${3:-[]}}" "http://127.0.0.1:861$1"
}
start() {  # start NODE [extra args...]
  local i=$1; shift
  rm -f "data/node$i/genesis/rlpx"   # the node writes its enode here once it listens
  setsid "${EJS[@]}" --gethGenesis genesis.json --dataDir "data/node$i" --port "3031$i" \
    --rpc --rpcAddr 127.0.0.1 --rpcPort "861$i" --discDns false --discV4 false \
    --no-logFile --logLevel "${LOGLEVEL:-info}" "$@" >> "data/node$i.log" 2>&1 < /dev/null &
  echo $! > "data/node$i.pid"
}
wait_listening() {
  for _ in $(seq 1 60); do [ -s "data/node$1/genesis/rlpx" ] && return; sleep 0.5; done
  echo "node$1 did not start; see $NET_DIR/data/node$1.log" >&2; exit 1
}
stop() {  # the pids net.sh wrote, nothing else
  for f in data/node*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  for f in data/node*.pid; do
    [ -f "$f" ] || continue; p=$(cat "$f")
    for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$p" 2>/dev/null; then kill -9 "$p"; fi
    rm -f "$f"; echo "stopped $(basename "$f" .pid) (pid $p)"
  done
}

case "${1:-}" in
up)
  cp "$here/clique-fixes.mjs" "$PRELOAD"
  mkdir -p data; boot=""
  # One after the other: each node dials those already listening (a bootnode that is
  # not up yet is never retried), so the last one started peers with all the others.
  for i in $(seq 1 "$N"); do
    start "$i" --mine --unlock "keys/signer$i.key" ${boot:+--bootnodes "$boot"}
    wait_listening "$i"
    boot=${boot:+$boot,}$(sed 's/@0\.0\.0\.0:/@127.0.0.1:/' "data/node$i/genesis/rlpx")
    echo "node$i pid $(cat "data/node$i.pid") http://127.0.0.1:861$i"
  done ;;
down) stop ;;
status)
  for i in $(seq 1 "$N"); do
    head=$(rpc "$i" eth_blockNumber | sed 's/.*"result":"\([^"]*\)".*/\1/')
    peers=$(rpc "$i" net_peerCount | sed 's/.*"result":"\([^"]*\)".*/\1/')
    echo "node$i head $head peers $peers"
  done ;;
*) echo "usage: NET_DIR=... EJS_DIR=... $0 up|down|status" >&2; exit 2 ;;
esac
