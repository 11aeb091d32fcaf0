#!/usr/bin/env bash
# S10 node-join-trust, the cause: the join token in the workers' scaling
# configuration expires (here it is given a one-minute TTL). The token
# cleaner deletes it and the bootstrap signer drops its signature from
# cluster-info; scaling out then boots an ECS that cannot join.
. "$(dirname "$0")/lib.sh"
group=$(state .cloud.scaling_group)
conf=$(cloud ess DescribeScalingConfigurations --ScalingGroupId "$group" |
  jq -r '.ScalingConfigurations.ScalingConfiguration[] | select(.LifecycleState == "Active") | .ScalingConfigurationId')
id=$(cloud ess DescribeScalingConfigurations --ScalingGroupId "$group" |
  jq -r '.ScalingConfigurations.ScalingConfiguration[] | select(.LifecycleState == "Active") | .UserData' |
  base64 -d | awk '$1 == "--token" { split($2, t, "."); print t[1] }')
[ -n "$id" ] || { echo "the scaling configuration $conf has no --token" >&2; exit 1; }
# The cluster's clock: a fresh object's creation time, plus a minute.
kc -n default create configmap "s10-clock-$$" >/dev/null
now=$(kc -n default get configmap "s10-clock-$$" -o jsonpath='{.metadata.creationTimestamp}')
kc -n default delete configmap "s10-clock-$$" >/dev/null
exp=$(date -u -d "$now + 60 seconds" +%Y-%m-%dT%H:%M:%SZ)
kc -n kube-system patch secret "bootstrap-token-$id" --type=merge \
  -p "{\"data\":{\"expiration\":\"$(printf %s "$exp" | base64 -w0)\"}}" >/dev/null
say "join token $id (scaling configuration $conf) expires at $exp"
desired=$(cloud ess DescribeScalingGroups --ScalingGroupIds "[\"$group\"]" |
  jq -r '.ScalingGroups.ScalingGroup[0].DesiredCapacity')
say "once it is gone, scale out: ackemu cloud ess ModifyScalingGroup --ScalingGroupId $group --DesiredCapacity $((desired + 1))"
say "then read the new instance's console: ackemu cloud ecs GetInstanceConsoleOutput --InstanceId <id>"
