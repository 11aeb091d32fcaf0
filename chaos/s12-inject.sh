#!/usr/bin/env bash
# S12 node-released-out-of-band: an ECS instance is released in the console
# behind the cluster's back. $1 names the node (default: the first worker).
. "$(dirname "$0")/lib.sh"
node=${1:-$(kc get nodes -o jsonpath='{.items[0].metadata.name}')}
id=$(kc get node "$node" -o jsonpath='{.spec.providerID}' | sed 's/.*\.//')
[ -n "$id" ] || id=$node
cloud ecs DeleteInstance --InstanceId "$id" --Force true >/dev/null
say "released ECS instance $id (node $node)"
