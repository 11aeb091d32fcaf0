#!/bin/sh
# The master's UserData in docker-compose (docker/setup.sh fills in the
# @…@ values): starts the control plane in the master instance, as ACK's
# master initialisation does — the API server on the ENI address, the
# controller manager, scheduler and cloud controller manager next to it.
# The store members are reached through the host agent's underlay
# listeners on this namespace's loopback (127.0.0.1:23790-23792).
set -eu
D=/ackemu/data
mkdir -p "$D/logs"
echo "master $ACKEMU_INSTANCE_ID booted at $ACKEMU_PRIVATE_IP"
CLOCK="@CLOCK@"
KC=$D/pki/admin.conf
# Each component is a static pod: `ackemu supervise` starts it again when
# it exits (a controller manager that loses its lease exits) and, made a
# session leader by setsid, leads the process group that process faults
# signal (the pid file holds its pid, which is the group's id).
start() {
  name=$1
  shift
  echo "starting $name"
  # shellcheck disable=SC2086 # the clock flags are words
  setsid ackemu supervise --name "$name" -- "$@" $CLOCK >>"$D/logs/$name.log" 2>&1 &
  echo $! >"$D/logs/$name.pid"
}
start apiserver ackemu-apiserver \
  --secure-listen="$ACKEMU_PRIVATE_IP:6443" \
  --store-endpoints=127.0.0.1:23790,127.0.0.1:23791,127.0.0.1:23792 \
  --pki-dir="$D/pki" \
  --admin-kubeconfig="$KC" \
  --serving-names="$ACKEMU_PRIVATE_IP,127.0.0.1,localhost,172.19.0.1,ecs-0" \
  --audit-log-path="$D/logs/audit.log" \
  --admin-listen=127.0.0.1:10900
# The controllers read the admin kubeconfig the API server writes.
while [ ! -s "$KC" ]; do sleep 0.2; done
start controller-manager ackemu-controller-manager \
  --kubeconfig="$KC" \
  --allocate-node-cidrs \
  --cluster-cidr=172.16.0.0/16 \
  --node-cidr-mask-size=24 \
  --service-cluster-ip-range=172.19.0.0/20 \
  --cluster-signing-cert-file="$D/pki/ca.crt" \
  --cluster-signing-key-file="$D/pki/ca.key" \
  --cluster-signing-duration=43800h \
  --root-ca-file="$D/pki/ca.crt" \
  --service-account-private-key-file="$D/pki/sa.key" \
  --admin-listen=127.0.0.1:10901
start scheduler ackemu-scheduler --kubeconfig="$KC" --admin-listen=127.0.0.1:10902
start cloud-controller-manager ackemu-cloud-controller-manager \
  --kubeconfig="$KC" \
  --region=cn-hangzhou \
  --vpc-id=@VPC@ \
  --vswitch-id=@VSWITCH@ \
  --cluster-cidr=172.16.0.0/16 \
  --configure-cloud-routes=true \
  --ram-role-name=@MASTER_ROLE@ \
  --admin-listen=127.0.0.1:10903
echo "control plane started"
