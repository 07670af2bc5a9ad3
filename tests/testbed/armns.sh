#!/usr/bin/env bash
# Run CMD inside private user + mount + pid namespaces where ARM binaries run under qemu-user.
#
# Usage: tests/testbed/armns.sh ARCH CMD [ARGS...]      (ARCH: armhf | arm64 | none)
#
# The user namespace maps uids/gids 0-65535 one to one (so dpkg's chown and sshd's privilege separation work),
# binfmt_misc is mounted inside it (kernel >= 6.7: one instance per user namespace) and the qemu-user handler
# registered there with the F flag. Nothing global changes: the host's binfmt_misc, /run and mounts are untouched.
# QEMU_CPU (read by qemu-user from the environment) is exported per board unless already set: cortex-a15 for armhf
# (the closest model to the RK3288's Cortex-A17, which qemu lacks), cortex-a72 for arm64 (Raspberry Pi 4). sshd
# clears the environment of its sessions: tests/testbed/sshd.py passes it on with SetEnv.
# Needs root (writing the id maps of a child namespace) and qemu-user-static.
set -euo pipefail
ARCH=${1:?usage: armns.sh ARCH CMD [ARGS...]}; shift
case "$ARCH" in
  armhf) QEMU=/usr/bin/qemu-arm-static; export QEMU_CPU=${QEMU_CPU:-cortex-a15}
         MAGIC='\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00' ;;
  arm64) QEMU=/usr/bin/qemu-aarch64-static; export QEMU_CPU=${QEMU_CPU:-cortex-a72}
         MAGIC='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00' ;;
  none)  QEMU= ; MAGIC= ;;
  *) echo "armns.sh: unsupported ARCH '$ARCH'" >&2; exit 2 ;;
esac
MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
[ "$(id -u)" = 0 ] || { echo "armns.sh needs root" >&2; exit 2; }

fifo=$(mktemp -u /tmp/armns.XXXXXX); mkfifo -m 600 "$fifo"
export ARMNS_FIFO=$fifo ARMNS_QEMU=$QEMU ARMNS_MAGIC=$MAGIC ARMNS_MASK=$MASK
unshare -U -m -p -f --propagation private bash -c '
  set -euo pipefail
  read -r _ < "$ARMNS_FIFO"
  if [ -n "$ARMNS_QEMU" ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    printf ":qemu-board:M::%s:%s:%s:F" "$ARMNS_MAGIC" "$ARMNS_MASK" "$ARMNS_QEMU" > /proc/sys/fs/binfmt_misc/register
  fi
  unset ARMNS_FIFO ARMNS_QEMU ARMNS_MAGIC ARMNS_MASK
  exec "$@"' armns "$@" &
pid=$!
# wait (bounded: 10 s) until unshare(2) has happened, then write the id maps from outside
for _ in $(seq 200); do
  [ "$(readlink /proc/$pid/ns/user 2>/dev/null)" != "$(readlink /proc/self/ns/user)" ] && break
  sleep 0.05
done
echo "0 0 65536" > /proc/$pid/uid_map
echo "0 0 65536" > /proc/$pid/gid_map
echo go > "$fifo"
rm -f "$fifo"
trap 'kill -TERM $pid 2>/dev/null' TERM INT
set +e
wait $pid
exit $?
