#!/usr/bin/env bash
# S01 node-notready-systemd-cookie, the cause: a worker's systemd has sealed
# months of bus messages (runc's UseSystemd probe creates a transient unit
# per container operation) and its cookie is 160 short of 0xffffffff — the
# article's `set var bus->cookie` in gdb. Ordinary pod churn on the node then
# overflows it. Usage: s01-inject.sh [instance-id] (default: the first worker).
. "$(dirname "$0")/lib.sh"
NODE=${1:-$(ls "$DATA_DIR/nodes" | head -n1)}
[ -n "$NODE" ] || { echo "no workers in $DATA_DIR/nodes" >&2; exit 2; }
"$ACKEMU_BIN" chaos failpoint set --data-dir "$DATA_DIR" --target "$NODE/systemd" \
  systemd/bus/seal '1*return(0xffffff60)' >/dev/null
say "systemd's bus cookie on $NODE is at 0xffffff60 (months of unit churn)"
say "churn pods on it, then: ackemu ssh $NODE -- ackemu-node busctl status; kubectl get node $NODE"
