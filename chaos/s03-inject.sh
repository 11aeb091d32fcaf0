#!/usr/bin/env bash
# S03 namespace-stuck-terminating, the cause: someone edits the RAM policy
# of the role the cloud controller manager's node uses so that vpc:* is
# Deny, and the VPC route entry of the node running metrics-server is
# deleted. The route controller can then not restore it.
. "$(dirname "$0")/lib.sh"
cloud ram CreatePolicyVersion --PolicyName "$CCM_POLICY" \
  --PolicyDocument "$(ccm_policy_with_vpc Deny)" --SetAsDefault true >/dev/null
say "RAM policy $CCM_POLICY (role $CCM_ROLE): vpc:* is now Deny"
node=$(kc -n kube-system get pods -l k8s-app=metrics-server -o jsonpath='{.items[0].spec.nodeName}')
[ -n "$node" ] || { echo "no metrics-server pod is scheduled" >&2; exit 1; }
cidr=$(kc get node "$node" -o jsonpath='{.spec.podCIDR}')
rt=$(state .cloud.route_table)
cloud vpc DeleteRouteEntry --RouteTableId "$rt" --DestinationCidrBlock "$cidr" >/dev/null
say "deleted route entry $cidr (node $node, runs metrics-server) from $rt"
