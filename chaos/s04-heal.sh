#!/usr/bin/env bash
# S04 heal: re-add the pod CIDR rule.
. "$(dirname "$0")/lib.sh"
sg=$(state .cloud.security_group)
cloud ecs AuthorizeSecurityGroup --SecurityGroupId "$sg" --IpProtocol all --PortRange=-1/-1 \
  --SourceCidrIp 172.16.0.0/16 --Priority 1 --Description "ACK default: pod CIDR" >/dev/null
say "re-added the pod CIDR rule to $sg"
