#!/usr/bin/env bash
# S08 mesh-ca-expired, the cause: a year goes by. Every process's cluster
# clock moves 400 days ahead — the workers' processes first (so the node
# controller never sees a stale heartbeat), then the store, the cloud and
# the master's — past the mesh CA's one-year validity (the cluster's own
# certificates are good for five). Containers started afterwards get their
# node's clock. Then: create a VirtualService (Galley's webhook fails with
# x509: certificate has expired) and restart Citadel (it crash-loops).
. "$(dirname "$0")/lib.sh"
for n in $(ls "$DATA_DIR/nodes" 2>/dev/null); do
  for role in systemd cnid runtime kubelet proxy; do
    "$ACKEMU_BIN" chaos clock --data-dir "$DATA_DIR" --target "$n/$role" --offset 400d >/dev/null
  done
  say "$n: systemd, cnid, runtime, kubelet, proxy clocks offset 400d"
done
for c in $(state '.processes[][0]'); do
  "$ACKEMU_BIN" chaos clock --data-dir "$DATA_DIR" --target "$c" --offset 400d >/dev/null
  say "$c: clock offset 400d"
done
say "next: kubectl -n istio-system delete pod -l istio=citadel; kubectl -n istio-system logs -l istio=citadel --previous"
