#!/usr/bin/env bash
# S13 heal: restart the killed member; it catches up from the leader.
. "$(dirname "$0")/lib.sh"
m=$(cat "$DATA_DIR/.s13-killed")
"$ACKEMU_BIN" chaos process restart "$m" --data-dir "$DATA_DIR"
rm -f "$DATA_DIR/.s13-killed"
say "restarted $m"
