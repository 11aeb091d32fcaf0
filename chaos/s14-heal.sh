#!/usr/bin/env bash
# S14 store-space-quota heal: compact to the current revision, defragment
# every member, disarm the NOSPACE alarm. (The cause is growth: run the
# cluster with `ackemu up --store-quota-bytes N` and write.)
. "$(dirname "$0")/lib.sh"
eps=$(state '.store_endpoints | join(",")')
ctl() { ETCDCTL_API=3 etcdctl --endpoints "$eps" "$@"; }
rev=$(ctl endpoint status -w json | jq '[.[].Status.header.revision] | max')
ctl compact "$rev" && say "compacted to revision $rev"
ctl defrag && say "defragmented"
ctl alarm disarm && say "disarmed alarms"
