#!/usr/bin/env bash
# S10 heal, as the attach error says: create a new token ("kubeadm token
# create"), put it into the scaling configuration's UserData and replace
# the instances that failed to join.
. "$(dirname "$0")/lib.sh"
group=$(state .cloud.scaling_group)
confs=$(cloud ess DescribeScalingConfigurations --ScalingGroupId "$group")
conf=$(jq -r '.ScalingConfigurations.ScalingConfiguration[] | select(.LifecycleState == "Active") | .ScalingConfigurationId' <<<"$confs")
ud=$(jq -r '.ScalingConfigurations.ScalingConfiguration[] | select(.LifecycleState == "Active") | .UserData' <<<"$confs" | base64 -d)
rand() { tr -dc 'a-z0-9' </dev/urandom | head -c "$1"; }
id=$(rand 6) secret=$(rand 16)
b64() { printf %s "$1" | base64 -w0; }
kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Secret
type: bootstrap.kubernetes.io/token
metadata: {name: bootstrap-token-$id, namespace: kube-system}
data:
  token-id: $(b64 "$id")
  token-secret: $(b64 "$secret")
  usage-bootstrap-authentication: $(b64 true)
  usage-bootstrap-signing: $(b64 true)
  auth-extra-groups: $(b64 system:bootstrappers:kubeadm:default-node-token)
YAML
say "created join token $id"
new_ud=$(sed -E "s/--token [a-z0-9]{6}\.[a-z0-9]{16}/--token $id.$secret/" <<<"$ud")
cloud ess ModifyScalingConfiguration --ScalingConfigurationId "$conf" --UserData "$(b64 "$new_ud")" >/dev/null
say "scaling configuration $conf joins with token $id"
nodes=$(kc get nodes -o jsonpath='{.items[*].metadata.name}')
for i in $(cloud ess DescribeScalingInstances --ScalingGroupId "$group" | jq -r '.ScalingInstances.ScalingInstance[].InstanceId'); do
  case " $nodes " in
    *" $i "*) ;;
    *) cloud ess RemoveInstances --ScalingGroupId "$group" --InstanceId.1 "$i" --DecreaseDesiredCapacity false >/dev/null
       say "replacing $i (never joined)" ;;
  esac
done
