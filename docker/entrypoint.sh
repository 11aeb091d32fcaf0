#!/bin/sh
# Entrypoint of every ackemu container: runs the given ackemu binary with
# the cluster's clock flags (one epoch for the whole compose cluster, in
# the shared data directory, created by whichever container starts first),
# or `setup` (docker/setup.sh, the one-shot cluster set-up).
set -eu
DATA=${ACKEMU_DATA:-/ackemu/data}
mkdir -p "$DATA"
if [ ! -s "$DATA/epoch-ms" ]; then
  tmp="$DATA/epoch-ms.$$"
  date +%s%3N >"$tmp"
  # ln refuses to replace: the first container's epoch wins.
  ln "$tmp" "$DATA/epoch-ms" 2>/dev/null || true
  rm -f "$tmp"
fi
ACKEMU_CLOCK_FLAGS="--time-scale=${ACKEMU_TIME_SCALE:-1} --cluster-epoch-ms=$(cat "$DATA/epoch-ms")"
export ACKEMU_CLOCK_FLAGS
if [ "${1:-}" = setup ]; then
  shift
  exec /ackemu/docker/setup.sh "$@"
fi
[ $# -gt 0 ] || { echo "entrypoint: expected a binary to run or setup" >&2; exit 2; }
bin=$1
shift
EXTRA=
if [ "$bin" = ackemu-store ]; then
  # etcd's timers for the links a sped-up clock makes, as `ackemu up`'s
  # store_timers: heartbeat 10 ms of real time (never below 100 ms of
  # cluster time), election ten heartbeats.
  scale=${ACKEMU_TIME_SCALE:-1}
  scale=${scale%%.*}
  hb=$((${scale:-0} * 10))
  [ "$hb" -ge 100 ] || hb=100
  EXTRA="--heartbeat-interval=$hb --election-timeout=$((hb * 10))"
fi
# shellcheck disable=SC2086 # the clock flags are words
exec "$bin" "$@" $EXTRA $ACKEMU_CLOCK_FLAGS
