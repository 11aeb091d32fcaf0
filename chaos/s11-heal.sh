#!/usr/bin/env bash
# S11 heal: a docker-registry secret with the registry's temporary login,
# referenced by the default ServiceAccount (admission adds it to new pods),
# and the waiting pods replaced.
. "$(dirname "$0")/lib.sh"
login=$(cloud cr GetAuthorizationToken)
kc create secret docker-registry acr-credential --docker-server=100.100.0.20 \
  --docker-username="$(jq -r .data.tempUserName <<<"$login")" \
  --docker-password="$(jq -r .data.authorizationToken <<<"$login")" >/dev/null
kc patch serviceaccount default -p '{"imagePullSecrets":[{"name":"acr-credential"}]}' >/dev/null
say "secret acr-credential on serviceaccount default"
kc delete pod -l app=s11-web --wait=false >/dev/null
say "deleted the waiting s11-web pods: their replacements pull with the secret"
