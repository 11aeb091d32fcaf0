#!/usr/bin/env bash
# S02 node-notready-cni-netlink-hang, the cause: a netlink receive inside
# the worker's CNI daemon never returns while it holds the daemon's lock.
# The next pod deletion on the node blocks PLEG.
# Usage: s02-inject.sh [instance-id] (default: the first worker).
. "$(dirname "$0")/lib.sh"
NODE=${1:-$(ls "$DATA_DIR/nodes" | head -n1)}
[ -n "$NODE" ] || { echo "no workers in $DATA_DIR/nodes" >&2; exit 2; }
"$ACKEMU_BIN" chaos failpoint set --data-dir "$DATA_DIR" --target "$NODE/cnid" \
  cnid/netlink/recv hang >/dev/null
say "netlink receives in the CNI daemon on $NODE now never return"
say "delete a pod on $NODE, then: ackemu chaos tasks --target $NODE/cnid; kubectl get node $NODE"
