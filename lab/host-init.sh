#!/usr/bin/env bash
# PID 1 of a lab host's fresh mount+UTS+PID namespaces (started by labctl through unshare).
# usage: host-init.sh NAME IP HOSTDIR LABDIR ; env LAB_DEVICES = block devices to expose,
#        LAB_SYSROOT = a partition to run from instead of the overlay (a system disk's root)
set -eu
NAME=$1 IP=$2 HD=$3 LAB=$4
R=$HD/root
if [ -n "${LAB_SYSROOT:-}" ]; then
  mount "$LAB_SYSROOT" "$R"
  # the disk's other filesystems as its fstab says (by UUID=/LABEL=), among this host's devices only;
  # swap stays off: a swap area would be the whole machine's
  while read -r spec mnt fstype _; do
    case $spec in ''|'#'*) continue ;; esac
    if [ "$mnt" = / ] || [ "$fstype" = swap ] || [ "$mnt" = none ]; then continue; fi
    dev=""
    for d in ${LAB_DEVICES:-}; do
      case $spec in
        UUID=*) [ "$(blkid -c /dev/null -s UUID -o value "$d" 2>/dev/null)" = "${spec#UUID=}" ] && dev=$d ;;
        LABEL=*) [ "$(blkid -c /dev/null -s LABEL -o value "$d" 2>/dev/null)" = "${spec#LABEL=}" ] && dev=$d ;;
        /dev/*) [ "$spec" = "$d" ] && dev=$d ;;
      esac
      [ -n "$dev" ] && break
    done
    [ -n "$dev" ] || { echo "host-init: $NAME: no device for $spec ($mnt in the disk's fstab)" >&2; exit 1; }
    mount -t "$fstype" "$dev" "$R$mnt"
  done < "$R/etc/fstab"
else
  mount -t overlay overlay -o "lowerdir=/,upperdir=$HD/upper,workdir=$HD/work" "$R"
fi
mount -t proc proc "$R/proc"                          # proc of the new PID namespace
mount --bind -o ro "$R/proc/sys" "$R/proc/sys"        # kernel settings are the machine's: read-only
mount -o remount,bind,ro "$R/proc/sys"
mount -t sysfs -o ro sysfs "$R/sys"
# A private /dev with harmless nodes only: the machine's disks must be invisible in every host.
mount -t tmpfs -o mode=755,size=1m,nosuid tmpfs "$R/dev"
for d in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
  IFS=: read -r nm ma mi <<< "$d"; mknod -m 666 "$R/dev/$nm" c "$ma" "$mi"
done
mkdir "$R/dev/pts" "$R/dev/shm"
ln -s pts/ptmx "$R/dev/ptmx"; ln -s /proc/self/fd "$R/dev/fd"
ln -s fd/0 "$R/dev/stdin"; ln -s fd/1 "$R/dev/stdout"; ln -s fd/2 "$R/dev/stderr"
for dev in ${LAB_DEVICES:-}; do                        # e.g. the backup drive's loop device + partitions
  mknod -m 660 "$R$dev" b "$((0x$(stat -c %t "$dev")))" "$((0x$(stat -c %T "$dev")))"
done
mount -t devpts devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 "$R/dev/pts"
mount -t tmpfs -o mode=1777,size=64m tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=755,size=64m tmpfs "$R/run"
mount -t tmpfs -o mode=1777,size=512m tmpfs "$R/tmp"   # hide the machine's /tmp
if [ -d "$R$LAB" ]; then mount -t tmpfs -o mode=700,size=1m tmpfs "$R$LAB"; fi  # hide lab state (keys, other hosts' upper dirs)
mkdir -p "$R/run/lab" "$R/run/sshd" "$R/run/lock"
cp "$LAB/bin/firstboot.sh" "$LAB/bin/supervise.sh" "$LAB/id_lab.pub" "$LAB/hosts" "$R/run/lab/"
hostname "$NAME"
cd "$R"
pivot_root . .          # new root = the overlay; the old root is stacked on top of it ...
umount -l .             # ... and detached, so nothing of the machine's tree is reachable
cd /
[ -e /etc/lab-host ] || /bin/bash /run/lab/firstboot.sh "$NAME" "$IP"
exec /bin/bash /run/lab/supervise.sh
