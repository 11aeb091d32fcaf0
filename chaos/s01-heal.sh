#!/usr/bin/env bash
# S01 heal, as the article did: `systemctl daemon-reexec` on the node (over
# systemd's private socket, which the overflow does not affect).
# Usage: s01-heal.sh [instance-id] (default: the first worker).
. "$(dirname "$0")/lib.sh"
NODE=${1:-$(ls "$DATA_DIR/nodes" | head -n1)}
"$ACKEMU_BIN" ssh --data-dir "$DATA_DIR" "$NODE" -- ackemu-node systemctl daemon-reexec
say "systemctl daemon-reexec on $NODE: the bus loop restarts, the cookie starts over"
