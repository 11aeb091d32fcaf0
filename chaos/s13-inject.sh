#!/usr/bin/env bash
# S13 store-leader-loss: kill -9 the store leader.
. "$(dirname "$0")/lib.sh"
eps=$(state '.store_endpoints | join(",")')
leader=$(ETCDCTL_API=3 etcdctl --endpoints "$eps" endpoint status -w json \
  | jq -r '.[] | select(.Status.header.member_id == .Status.leader) | .Endpoint')
i=$(jq -r --arg e "$leader" '.store_endpoints | map(. as $x | $e | endswith($x)) | index(true)' "$STATE")
[ "$i" != null ] || { echo "no store leader found" >&2; exit 1; }
"$ACKEMU_BIN" chaos process kill "store-$i" --data-dir "$DATA_DIR"
say "killed the store leader store-$i ($leader)"
echo "store-$i" > "$DATA_DIR/.s13-killed"
