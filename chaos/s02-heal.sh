#!/usr/bin/env bash
# S02 heal, as the article did: restart the CNI daemon; the stuck call
# fails with it and the lock is free again.
# Usage: s02-heal.sh [instance-id] (default: the first worker).
. "$(dirname "$0")/lib.sh"
NODE=${1:-$(ls "$DATA_DIR/nodes" | head -n1)}
"$ACKEMU_BIN" ssh --data-dir "$DATA_DIR" "$NODE" -- ackemu-node systemctl restart cnid.service
say "restarted cnid on $NODE"
