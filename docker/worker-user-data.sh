#!/bin/sh
# attach_node.sh in docker-compose (docker/setup.sh fills in the @…@
# values): join this ECS instance to the cluster as a worker with the
# bootstrap token, as `ackemu up`'s worker UserData does.
set -e
BIN=/ackemu/bin
NODE_DIR=/ackemu/data/nodes/$ACKEMU_INSTANCE_ID
mkdir -p "$NODE_DIR"
exec >>"$NODE_DIR/attach.log" 2>&1
echo "attach: instance $ACKEMU_INSTANCE_ID at $ACKEMU_PRIVATE_IP"
# shellcheck disable=SC2086 # the clock flags are words
exec "$BIN/ackemu-node" attach \
  --apiserver https://192.168.0.10:6443 \
  --token @TOKEN@ \
  --node-name "$ACKEMU_INSTANCE_ID" \
  --node-ip "$ACKEMU_PRIVATE_IP" \
  --provider-id "cn-hangzhou.$ACKEMU_INSTANCE_ID" \
  --data-dir "$NODE_DIR" \
  --bin-dir "$BIN" \
  --cluster-dns 172.19.0.10 \
  --admin-ports \
  @CLOCK@
