#!/usr/bin/env bash
# S08 mesh-ca-expired, the fix from the article: delete the expired root
# (secret istio-ca-secret) and restart Citadel, which issues a fresh
# self-signed root and new workload certificates; Galley reloads its
# webhook certificate. The clocks stay a year ahead.
. "$(dirname "$0")/lib.sh"
kc -n istio-system delete secret istio-ca-secret >/dev/null
say "deleted istio-system/istio-ca-secret"
kc -n istio-system delete pod -l istio=citadel --wait=false >/dev/null
say "restarted citadel; watch: kubectl -n istio-system get secret istio-ca-secret; kubectl apply a VirtualService"
