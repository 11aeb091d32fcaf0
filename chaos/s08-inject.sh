#!/usr/bin/env bash
# S08 mesh-ca-expired: a year passes (every process's cluster clock moves
# 400 days ahead), past the mesh CA's one-year validity.
. "$(dirname "$0")/lib.sh"
for c in $(state '.processes[][0]'); do
  "$ACKEMU_BIN" chaos clock --data-dir "$DATA_DIR" --target "$c" --offset 400d >/dev/null
  say "$c: clock offset 400d"
done
