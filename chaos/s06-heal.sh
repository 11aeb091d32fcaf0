#!/usr/bin/env bash
# S06 heal: allow the range again.
. "$(dirname "$0")/lib.sh"
sg=$(state .cloud.security_group)
cloud ecs RevokeSecurityGroupEgress --SecurityGroupId "$sg" --IpProtocol all --PortRange=-1/-1 \
  --DestCidrIp 100.64.0.0/10 --Policy drop --Priority 1 >/dev/null
say "removed the egress deny of 100.64.0.0/10 from $sg"
