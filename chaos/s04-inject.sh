#!/usr/bin/env bash
# S04 sg-pod-cidr-rule-removed: the default ingress rule that accepts the
# pod CIDR is removed from the cluster security group.
. "$(dirname "$0")/lib.sh"
sg=$(state .cloud.security_group)
cloud ecs RevokeSecurityGroup --SecurityGroupId "$sg" --IpProtocol all --PortRange=-1/-1 \
  --SourceCidrIp 172.16.0.0/16 --Priority 1 >/dev/null
say "revoked the pod CIDR rule (all 172.16.0.0/16) from $sg"
