#!/bin/sh
# Builds the `ackemu:dev` image for docker-compose.yml without any image
# registry: a root filesystem made here from this workspace's binaries and
# the few host tools the cluster runs (sh, ip, iptables, kubectl, jq, a
# handful of coreutils), each with exactly the shared libraries `ldd` says
# it needs, imported with `docker import`. No base image is pulled.
#
#   docker/build-images.sh [--no-build] [--tag ackemu:dev]
#
# CARGO_TARGET_DIR (default: cargo's target directory) holds the binaries;
# without --no-build `cargo build --bins` runs first. The image's label
# `ackemu.stamp` is the newest mtime of those binaries and docker/*.sh.
set -eu

TAG=ackemu:dev
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --tag) TAG="$2"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "build-images.sh: unknown argument $1 (expected --no-build or --tag NAME)" >&2; exit 2 ;;
  esac
  shift
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
if [ "$BUILD" = 1 ]; then
  cargo build --workspace --bins
fi
TARGET=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)}
BIN="$TARGET/debug"
for b in ackemu ackemu-store ackemu-cloudsim ackemu-vnic ackemu-hostd ackemu-apiserver ackemu-node; do
  [ -x "$BIN/$b" ] || { echo "build-images.sh: $BIN/$b is missing (cargo build --workspace --bins)" >&2; exit 1; }
done
command -v docker >/dev/null || { echo "build-images.sh: docker is not installed" >&2; exit 1; }

FS=$(mktemp -d /tmp/ackemu-rootfs.XXXXXX)
trap 'rm -rf "$FS"' EXIT
mkdir -p "$FS/ackemu/bin" "$FS/ackemu/docker" "$FS/bin" "$FS/sbin" "$FS/usr/bin" "$FS/usr/sbin" \
  "$FS/etc" "$FS/tmp" "$FS/run/netns" "$FS/var/run" "$FS/var/lib" "$FS/proc" "$FS/sys" "$FS/dev" "$FS/root"
chmod 1777 "$FS/tmp"

# copy FILE [DEST]: the file (symlinks resolved) and every library it loads.
copy() {
  src=$(readlink -f "$1")
  dest=${2:-$1}
  mkdir -p "$FS$(dirname "$dest")"
  cp "$src" "$FS$dest"
  libs "$src"
}
libs() {
  ldd "$1" 2>/dev/null | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}' | while read -r lib; do
    for p in "$lib" "$(readlink -f "$lib")"; do
      if [ ! -e "$FS$p" ]; then
        mkdir -p "$FS$(dirname "$p")"
        cp -L "$p" "$FS$p"
      fi
    done
  done
}

# The workspace's binaries, debug info stripped (the image stays small).
for f in "$BIN"/ackemu "$BIN"/ackemu-*; do
  case "$f" in *.d|*.rlib) continue ;; esac
  [ -f "$f" ] && [ -x "$f" ] || continue
  name=$(basename "$f")
  if command -v objcopy >/dev/null; then
    objcopy --strip-debug "$f" "$FS/ackemu/bin/$name"
  else
    cp "$f" "$FS/ackemu/bin/$name"
  fi
  libs "$f"
done

# Host tools the cluster runs: the UserData shell, iproute2, iptables
# (kube-proxy), kubectl and jq (the compose set-up), etcdctl, coreutils.
copy /bin/dash /bin/sh
for t in ip nsenter; do copy "$(command -v $t)" "/usr/sbin/$t"; done
XT=$(readlink -f "$(command -v iptables)")
copy "$XT" "/usr/sbin/$(basename "$XT")"
for n in iptables iptables-save iptables-restore; do ln -sf "$(basename "$XT")" "$FS/usr/sbin/$n"; done
if [ -d /usr/lib/x86_64-linux-gnu/xtables ]; then
  mkdir -p "$FS/usr/lib/x86_64-linux-gnu/xtables"
  for m in /usr/lib/x86_64-linux-gnu/xtables/*.so; do copy "$m"; done
fi
# The versioned kubectl matching the API server (a dispatcher's siblings
# when only the dispatcher is on PATH), else whatever kubectl there is.
KUBECTL=$(command -v kubectl.1.33 || true)
if [ -z "$KUBECTL" ] && command -v kubectl >/dev/null; then
  d=$(dirname "$(readlink -f "$(command -v kubectl)")")
  if [ -x "$d/kubectl.1.33" ]; then KUBECTL=$d/kubectl.1.33; else KUBECTL=$(command -v kubectl); fi
fi
[ -n "$KUBECTL" ] || { echo "build-images.sh: kubectl is not installed" >&2; exit 1; }
copy "$KUBECTL" /usr/bin/kubectl
for t in jq etcdctl cat mkdir rm mv cp ln ls sleep date env head tail tr cut sed grep wc tee touch \
         id true false basename dirname base64 od stty setsid kill ps seq sort uniq printf test expr readlink; do
  p=$(command -v "$t" 2>/dev/null || true)
  case "$p" in /*) copy "$p" "/usr/bin/$t" ;; esac
done
for t in sh cat mkdir sleep; do [ -e "$FS/bin/$t" ] || ln -sf "/usr/bin/$t" "$FS/bin/$t"; done
# The images' toolbox, what `kubectl exec` runs in a pod: the workload
# binary invoked by these names behaves as the real tools.
for t in nslookup wget ping telnet; do ln -sf /ackemu/bin/ackemu-workload "$FS/usr/bin/$t"; done

cat >"$FS/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat >"$FS/etc/group" <<'G'
root:x:0:
nogroup:x:65534:
G
echo 'hosts: files dns' >"$FS/etc/nsswitch.conf"
cp docker/entrypoint.sh docker/setup.sh docker/master-user-data.sh docker/worker-user-data.sh "$FS/ackemu/docker/"
chmod 755 "$FS/ackemu/docker/"*.sh

# What the image was built from, for whoever decides to rebuild it (the
# compose tests): the newest modification time (unix seconds) of the
# workspace's binaries and of docker/*.sh.
STAMP=$(stat -L -c %Y "$BIN"/ackemu "$BIN"/ackemu-* docker/*.sh | sort -n | tail -1)
OLD=$(docker image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)
echo "importing $(du -sh "$FS" | cut -f1) root filesystem as $TAG"
tar -C "$FS" -c . | docker import \
  --change "LABEL ackemu.stamp=$STAMP" \
  --change 'ENV PATH=/ackemu/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV ACKEMU_IN_COMPOSE=1' \
  --change 'WORKDIR /' \
  --change 'ENTRYPOINT ["/ackemu/docker/entrypoint.sh"]' \
  - "$TAG" >/dev/null
# The image this one replaces, unless a container still uses it.
if [ -n "$OLD" ] && [ "$OLD" != "$(docker image inspect --format '{{.Id}}' "$TAG")" ]; then
  docker rmi "$OLD" >/dev/null 2>&1 || true
fi
echo "built $TAG"
