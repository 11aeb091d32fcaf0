#!/bin/sh
# The compose cluster's one-shot set-up, what `ackemu up` does after its
# daemons run, done the way an operator would: through the cloud's API
# (`ackemu cloud`, ACK's provisioning calls: VPC, VSwitch, the security
# group with ACK's default rules, the master and worker RAM roles, the
# master ECS instance whose UserData starts the control plane) and
# `ackemu kubeinit` (bootstrap token, TLS-bootstrap RBAC, cluster-info,
# the add-ons); then the workers' ESS scaling group, whose instances join
# with the bootstrap token. It writes the host's kubeconfig to
# $ACKEMU_DATA/kubeconfig (the API server on 127.0.0.1:$ACKEMU_APISERVER_PORT).
# Run again on the same data it resumes: what exists is kept.
set -eu
D=${ACKEMU_DATA:-/ackemu/data}
CLOUD=${ACKEMU_CLOUD:-http://10.213.0.5:18600}
NODES=${ACKEMU_NODES:-3}
PORT=${ACKEMU_APISERVER_PORT:-6443}
MASTER_IP=192.168.0.10
REGION=cn-hangzhou
ZONE=cn-hangzhou-b
IDS=$D/cloud-ids.json
log() { echo "setup: $*"; }
export ACKEMU_CLUSTER_EPOCH_MS
ACKEMU_CLUSTER_EPOCH_MS=$(cat "$D/epoch-ms")
export ACKEMU_TIME_SCALE=${ACKEMU_TIME_SCALE:-1}

until [ -s "$D/cloud-profile.json" ]; do sleep 0.2; done
cloud() {
  ackemu cloud --profile-file "$D/cloud-profile.json" --endpoint "$CLOUD" "$@"
}
# A cloud call answered only once the cloud is up.
until cloud vpc DescribeVpcs --RegionId "$REGION" >/dev/null 2>&1; do sleep 0.2; done

if [ ! -s "$IDS" ]; then
  S=$(od -An -N3 -tx1 /dev/urandom 2>/dev/null | tr -d ' \n' || true)
  [ -n "$S" ] || S=$(date +%N | cut -c1-6)
  log "creating the VPC, security group, RAM roles and the master instance (suffix $S)"
  v=$(cloud vpc CreateVpc --RegionId "$REGION" --CidrBlock 192.168.0.0/16 --VpcName "ack-vpc-$S")
  VPC=$(echo "$v" | jq -er .VpcId)
  RT=$(echo "$v" | jq -er .RouteTableId)
  VSW=$(cloud vpc CreateVSwitch --VpcId "$VPC" --ZoneId "$ZONE" --CidrBlock 192.168.0.0/24 \
        --VSwitchName "ack-vsw-$S" | jq -er .VSwitchId)
  SG=$(cloud ecs CreateSecurityGroup --RegionId "$REGION" --VpcId "$VPC" \
       --SecurityGroupName "k8s-sg-$S" --Description "ACK cluster security group" | jq -er .SecurityGroupId)
  cloud ecs AuthorizeSecurityGroup --SecurityGroupId "$SG" --IpProtocol all --PortRange -1/-1 \
    --SourceCidrIp 172.16.0.0/16 --Priority 1 --Description "ACK default: pod CIDR" >/dev/null
  cloud ecs AuthorizeSecurityGroup --SecurityGroupId "$SG" --IpProtocol icmp --PortRange -1/-1 \
    --SourceCidrIp 0.0.0.0/0 --Priority 100 --Description "ACK default: icmp" >/dev/null
  cloud ecs AuthorizeSecurityGroupEgress --SecurityGroupId "$SG" --IpProtocol all --PortRange -1/-1 \
    --DestCidrIp 0.0.0.0/0 --Priority 100 --Description "ACK default: egress" >/dev/null
  TRUST='{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"Service":["ecs.aliyuncs.com"]}}]}'
  MASTER_POLICY='{"Version":"1","Statement":[{"Effect":"Allow","Action":["ecs:*","vpc:*","slb:*","ess:*"],"Resource":["*"]},{"Effect":"Allow","Action":["cr:Get*","cr:List*","cr:PullRepository"],"Resource":["*"]}]}'
  WORKER_POLICY='{"Version":"1","Statement":[{"Effect":"Allow","Action":["ecs:Describe*","ecs:AttachDisk","ecs:DetachDisk"],"Resource":["*"]},{"Effect":"Allow","Action":["vpc:*"],"Resource":["*"]},{"Effect":"Allow","Action":["slb:*"],"Resource":["*"]},{"Effect":"Allow","Action":["ess:Describe*"],"Resource":["*"]},{"Effect":"Allow","Action":["cr:Get*","cr:List*","cr:PullRepository"],"Resource":["*"]}]}'
  MR=KubernetesMasterRole-$S
  WR=KubernetesWorkerRole-$S
  for pair in "$MR:k8sMasterRolePolicy-$S:$MASTER_POLICY" "$WR:k8sWorkerRolePolicy-$S:$WORKER_POLICY"; do
    role=${pair%%:*}; rest=${pair#*:}; policy=${rest%%:*}; doc=${rest#*:}
    cloud ram CreateRole --RoleName "$role" --AssumeRolePolicyDocument "$TRUST" >/dev/null
    cloud ram CreatePolicy --PolicyName "$policy" --PolicyDocument "$doc" >/dev/null
    cloud ram AttachPolicyToRole --PolicyType Custom --PolicyName "$policy" --RoleName "$role" >/dev/null
  done
  UD=$(sed -e "s|@VPC@|$VPC|g" -e "s|@VSWITCH@|$VSW|g" -e "s|@MASTER_ROLE@|$MR|g" \
           -e "s|@CLOCK@|$ACKEMU_CLOCK_FLAGS|g" /ackemu/docker/master-user-data.sh | base64 -w0)
  MI=$(cloud ecs RunInstances --RegionId "$REGION" --InstanceType ecs.g6.large --VSwitchId "$VSW" \
       --SecurityGroupId "$SG" --PrivateIpAddress "$MASTER_IP" --InstanceName "master-$S" \
       --HostName master-0 --RamRoleName "$MR" --UserData "$UD" | jq -er '.InstanceIdSets.InstanceIdSet[0]')
  TOKEN="$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n').$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  jq -n --arg vpc "$VPC" --arg rt "$RT" --arg vsw "$VSW" --arg sg "$SG" --arg mr "$MR" --arg wr "$WR" \
        --arg mi "$MI" --arg ip "$MASTER_IP" --arg s "$S" --arg t "$TOKEN" \
    '{vpc:$vpc, route_table:$rt, vswitch:$vsw, security_group:$sg, master_role:$mr, worker_role:$wr,
      master_instance:$mi, master_ip:$ip, suffix:$s, bootstrap_token:$t, scaling_group:null}' >"$IDS.tmp"
  mv "$IDS.tmp" "$IDS"
fi
id() { jq -er ".$1" "$IDS"; }
MI=$(id master_instance)
log "waiting for the master $MI"
until [ "$(cloud ecs DescribeInstances --InstanceIds "[\"$MI\"]" | jq -r '.Instances.Instance[0].Status')" = Running ]; do
  sleep 0.5
done
log "master $MI running at $MASTER_IP; waiting for the API server"
until [ -s "$D/pki/admin.conf" ]; do sleep 0.2; done
# The host's kubeconfig: the admin one, at the published port.
sed "s|https://$MASTER_IP:6443|https://127.0.0.1:$PORT|" "$D/pki/admin.conf" >"$D/kubeconfig.tmp"
mv "$D/kubeconfig.tmp" "$D/kubeconfig"
# Inside the compose network the API server is the first ECS container.
sed "s|https://$MASTER_IP:6443|https://ecs-0:6443|" "$D/pki/admin.conf" >/tmp/kubeconfig
k() { kubectl --kubeconfig /tmp/kubeconfig --request-timeout=20s "$@"; }
until k get --raw /readyz >/dev/null 2>&1; do sleep 0.5; done
log "API server ready"

# The workers' bootstrap (kubeadm's objects) and the add-ons, as `ackemu up`
# writes them (with ACKEMU_MESH=1 also the service mesh).
TOKEN=$(id bootstrap_token)
MESH=
[ "${ACKEMU_MESH:-0}" = 1 ] && MESH=--mesh
# shellcheck disable=SC2086 # the clock flags are words
until ackemu kubeinit --kubeconfig /tmp/kubeconfig --data-dir "$D" --token "$TOKEN" \
        --master-ip "$MASTER_IP" $MESH $ACKEMU_CLOCK_FLAGS >/tmp/kubeinit.log 2>&1; do
  cat /tmp/kubeinit.log
  sleep 1
done
log "bootstrap token, TLS-bootstrap RBAC, cluster-info and the add-ons in place (cluster DNS 172.19.0.10, metrics-server${MESH:+, the service mesh})"

if [ "$NODES" -gt 0 ] && [ "$(jq -r .scaling_group "$IDS")" = null ]; then
  log "creating the workers' scaling group ($NODES nodes)"
  S=$(id suffix)
  UD=$(sed -e "s|@TOKEN@|$TOKEN|g" -e "s|@CLOCK@|$ACKEMU_CLOCK_FLAGS|g" /ackemu/docker/worker-user-data.sh | base64 -w0)
  G=$(cloud ess CreateScalingGroup --RegionId "$REGION" --ScalingGroupName "ack-workers-$S" --MinSize 0 \
      --MaxSize "${ACKEMU_MAX_NODES:-3}" --DesiredCapacity "$NODES" --VSwitchId "$(id vswitch)" | jq -er .ScalingGroupId)
  C=$(cloud ess CreateScalingConfiguration --ScalingGroupId "$G" --ScalingConfigurationName "ack-worker-$S" \
      --InstanceType ecs.g6.large --SecurityGroupId "$(id security_group)" --RamRoleName "$(id worker_role)" \
      --UserData "$UD" | jq -er .ScalingConfigurationId)
  cloud ess EnableScalingGroup --ScalingGroupId "$G" --ActiveScalingConfigurationId "$C" >/dev/null
  jq --arg g "$G" '.scaling_group=$g' "$IDS" >"$IDS.tmp" && mv "$IDS.tmp" "$IDS"
fi
if [ "$NODES" -gt 0 ]; then
  log "waiting for $NODES Ready nodes"
  until [ "$(k get nodes -o json | jq '[.items[] | select(any(.status.conditions[]?; .type=="Ready" and .status=="True"))] | length')" -ge "$NODES" ]; do
    sleep 1
  done
fi
log "cluster is up: export KUBECONFIG=<data dir>/kubeconfig (API server https://127.0.0.1:$PORT)"
