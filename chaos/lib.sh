# Shared by the chaos scripts: find the cluster and its tools.
# ACKEMU_DATA_DIR (default .ackemu) names the cluster; ACKEMU_BIN the
# launcher (default: $CARGO_TARGET_DIR/debug/ackemu, then PATH).
set -euo pipefail
DATA_DIR=${ACKEMU_DATA_DIR:-.ackemu}
STATE=$DATA_DIR/cluster.json
[ -f "$STATE" ] || { echo "no cluster in $DATA_DIR (set ACKEMU_DATA_DIR)" >&2; exit 2; }
if [ -z "${ACKEMU_BIN:-}" ]; then
  t=${CARGO_TARGET_DIR:-/var/tmp/ackemu-target}/debug/ackemu
  if [ -x "$t" ]; then ACKEMU_BIN=$t; else ACKEMU_BIN=$(command -v ackemu); fi
fi
KUBECTL=${KUBECTL:-kubectl}
state() { jq -r "$1" "$STATE"; }
cloud() { "$ACKEMU_BIN" cloud --profile-file "$DATA_DIR/cloud-profile.json" "$@"; }
kc() { "$KUBECTL" --kubeconfig "$DATA_DIR/kubeconfig" "$@"; }
say() { echo "chaos: $*"; }
SUFFIX=$(state .suffix)
# The RAM role of the instance that runs the cloud controller manager
# (the master) and the policy attached to it.
CCM_ROLE=$(state .cloud.master_role)
CCM_POLICY=k8sMasterRolePolicy-$SUFFIX
# The policy document with vpc:* set to Effect $1 (Allow or Deny).
ccm_policy_with_vpc() {
  jq -cn --arg e "$1" '{Version: "1", Statement: [
    {Effect: "Allow", Action: ["ecs:*", "slb:*", "ess:*"], Resource: ["*"]},
    {Effect: $e, Action: ["vpc:*"], Resource: ["*"]},
    {Effect: "Allow", Action: ["cr:Get*", "cr:List*", "cr:PullRepository"], Resource: ["*"]}]}'
}
