#!/usr/bin/env bash
# S03, the article's heal: set the policy's Effect back to Allow; the route
# controller restores the route, the APIService comes back and Terminating
# namespaces finish, with no other action.
. "$(dirname "$0")/lib.sh"
cloud ram CreatePolicyVersion --PolicyName "$CCM_POLICY" \
  --PolicyDocument "$(ccm_policy_with_vpc Allow)" --SetAsDefault true >/dev/null
say "RAM policy $CCM_POLICY (role $CCM_ROLE): vpc:* is Allow again"
