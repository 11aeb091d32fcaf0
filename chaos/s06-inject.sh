#!/usr/bin/env bash
# S06 sg-egress-blocks-cloud: egress to the cloud service range
# 100.64.0.0/10 (metadata, STS, registry) is denied.
. "$(dirname "$0")/lib.sh"
sg=$(state .cloud.security_group)
cloud ecs AuthorizeSecurityGroupEgress --SecurityGroupId "$sg" --IpProtocol all --PortRange=-1/-1 \
  --DestCidrIp 100.64.0.0/10 --Policy drop --Priority 1 --Description "deny cloud services" >/dev/null
say "denied egress to 100.64.0.0/10 in $sg"
