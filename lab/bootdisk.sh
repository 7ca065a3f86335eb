#!/usr/bin/env bash
# bootdisk.sh: a small bootable Debian 12 system disk image for the boot proofs, built once per
# machine and cached outside the repo under a name keyed by this script's hash (any change here
# rebuilds it; nothing else does).
#
# usage: bootdisk.sh key           print the cached image's path (.img.zst), built or not
#        bootdisk.sh path          print the cached image's path, building it first if needed
#        bootdisk.sh build         the same, and say how long the build took
#        bootdisk.sh extract DEST  write the image, raw and sparse, to DEST (building it first if needed)
#        bootdisk.sh marker        print the marker line's fixed prefix
# environment: BOOTDISK_CACHE  cache directory  [/var/cache/dervish-test]
#              BOOTDISK_MIRROR Debian mirror    [http://deb.debian.org/debian]
#
# The disk (1 GiB, sparse; msdos table, GRUB for BIOS in the gap before partition 1):
#   1 /boot ext4 (label sysboot)   2 / ext4 (label sysroot)   3 swap (label sysswap)   4 /data ext4 (label sysdata)
# fstab names every filesystem and the swap by UUID; the kernel's console is ttyS0; the unit
# dervish-boot-marker.service prints "DERVISH-BOOT-OK ..." on ttyS0 only when /, /data and swap are up.
set -euo pipefail

SELF=$(realpath "$0")
CACHE=${BOOTDISK_CACHE:-/var/cache/dervish-test}
MIRROR=${BOOTDISK_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
SIZE=1GiB
MARKER=DERVISH-BOOT-OK
# What the guest needs: boot (kernel, GRUB, systemd, udev), be a lab client (sshd, python3 with apt
# bindings for Ansible's apt module, rsync, logrotate and locate that the client role configures) and
# report its disks (fdisk's sfdisk).
PACKAGES=linux-image-amd64,grub-pc,systemd-sysv,udev,openssh-server,rsync,python3,python3-apt,fdisk,logrotate,plocate

die() { echo "bootdisk: $*" >&2; exit 1; }
HASH=$(sha256sum "$SELF" | cut -c1-16)
IMAGE=$CACHE/bootdisk-$HASH.img.zst

build() {
  [ "$(id -u)" = 0 ] || die "building the image needs root (debootstrap, loop devices, mounts)"
  local t missing=()
  for t in debootstrap sfdisk partx losetup mkfs.ext4 mkswap grub-install udevadm zstd blkid; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (run: make system-packages)"
  mkdir -p "$CACHE"
  exec 9>"$CACHE/bootdisk.lock"
  flock 9                                   # two test runs at once build it once
  [ -f "$IMAGE" ] && return 0
  local start=$SECONDS; work="" loop=""
  work=$(mktemp -d "$CACHE/build-$HASH.XXXXXX")
  # shellcheck disable=SC2317  # called through the trap
  cleanup() {
    set +e
    for m in "$work/mnt/data" "$work/mnt/boot" "$work/mnt" "$work/rootfs/proc" "$work/rootfs/sys" "$work/rootfs/dev"; do
      mountpoint -q "$m" && umount -l "$m"
    done
    if [ -n "$loop" ]; then partx -d "$loop" 2>/dev/null; losetup -d "$loop"; fi
    rm -rf "$work"
  }
  trap cleanup EXIT
  echo "bootdisk: debootstrap $SUITE from $MIRROR (a few minutes) ..." >&2
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" "$MIRROR" \
    > "$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  local R=$work/rootfs kver
  kver=$(basename "$(ls -d "$R"/lib/modules/*)")
  if [ ! -f "$R/boot/vmlinuz-$kver" ] || [ ! -f "$R/boot/initrd.img-$kver" ]; then die "no kernel/initrd in the rootfs"; fi
  # Small (the lab backs it up onto a small drive): no docs, manuals, locales, apt lists, and of the
  # kernel's modules only filesystems and disk drivers (the initrd is already built with what booting
  # needs; nothing after it needs more on qemu's PC).
  rm -rf "$R"/usr/share/doc/* "$R"/usr/share/man/* "$R"/usr/share/locale/* "$R"/var/lib/apt/lists/* \
    "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb
  local m=$R/lib/modules/$kver/kernel d rel
  local keep=" arch block crypto fs lib drivers/block drivers/ata drivers/scsi drivers/virtio drivers/md drivers/nvme drivers/cdrom drivers/char drivers/input "
  for d in "$m"/* "$m"/drivers/*; do
    rel=${d#"$m"/}
    [ "$rel" = drivers ] && continue
    case $keep in *" $rel "*) ;; *) rm -rf "$d" ;; esac
  done
  chroot "$R" depmod "$kver"
  rm -rf "$R/lib/firmware"/* "$R"/etc/ssh/ssh_host_*   # every copy makes its own host keys
  echo "sysdisk" > "$R/etc/hostname"
  printf '127.0.0.1 localhost\n' > "$R/etc/hosts"
  : > "$R/etc/machine-id"                                # systemd makes one at first boot
  chroot "$R" passwd -d root >/dev/null                  # a console login for debugging, no network
  cat > "$R/usr/local/sbin/dervish-boot-marker" <<'SH'
#!/bin/sh
# Prints the boot marker on the serial console only when /, /data and a swap area are up.
set -eu
root=$(findmnt -n -o UUID /) data=$(findmnt -n -o UUID /data) || { echo "boot-marker: /data not mounted" >&2; exit 1; }
swap=$(swapon --noheadings --show=NAME | head -n1)
[ -n "$swap" ] || { echo "boot-marker: no swap active" >&2; exit 1; }
echo "DERVISH-BOOT-OK root=$root data=$data swap=$swap" > /dev/ttyS0
SH
  chmod 755 "$R/usr/local/sbin/dervish-boot-marker"
  cat > "$R/etc/systemd/system/dervish-boot-marker.service" <<'UNIT'
[Unit]
Description=Print the boot marker on ttyS0 once /, /data and swap are up
RequiresMountsFor=/ /data
Wants=swap.target
After=local-fs.target swap.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/dervish-boot-marker

[Install]
WantedBy=multi-user.target
UNIT
  ln -s /etc/systemd/system/dervish-boot-marker.service "$R/etc/systemd/system/multi-user.target.wants/"
  mkdir -p "$R/etc/systemd/system/ssh.service.d"   # host keys were removed: each copy makes its own
  printf '[Service]\nExecStartPre=/usr/bin/ssh-keygen -A\n' > "$R/etc/systemd/system/ssh.service.d/host-keys.conf"

  truncate -s "$SIZE" "$work/disk.img"
  printf 'label: dos\n%s\n%s\n%s\n%s\n' 'start=2048, size=160MiB, type=83, bootable' 'size=600MiB, type=83' \
    'size=64MiB, type=82' 'type=83' | sfdisk -q "$work/disk.img" >/dev/null
  loop=$(losetup -f --show "$work/disk.img")
  partx -a "$loop" 2>/dev/null || true               # this kernel adds no partition nodes by itself
  [ -b "${loop}p4" ] || die "no partition nodes on $loop"
  mkfs.ext4 -q -L sysboot "${loop}p1"
  mkfs.ext4 -q -L sysroot "${loop}p2"
  mkswap -q -L sysswap "${loop}p3" >/dev/null
  mkfs.ext4 -q -L sysdata "${loop}p4"
  local u_boot u_root u_swap u_data
  u_boot=$(blkid -c /dev/null -s UUID -o value "${loop}p1"); u_root=$(blkid -c /dev/null -s UUID -o value "${loop}p2")
  u_swap=$(blkid -c /dev/null -s UUID -o value "${loop}p3"); u_data=$(blkid -c /dev/null -s UUID -o value "${loop}p4")
  cat > "$R/etc/fstab" <<FSTAB
# <file system> <mount point> <type> <options> <dump> <pass>
UUID=$u_root / ext4 errors=remount-ro 0 1
UUID=$u_boot /boot ext4 defaults 0 2
UUID=$u_data /data ext4 defaults 0 2
UUID=$u_swap none swap sw 0 0
FSTAB
  mkdir -p "$work/mnt" && mount "${loop}p2" "$work/mnt"
  mkdir -p "$work/mnt/boot" "$work/mnt/data"
  mount "${loop}p1" "$work/mnt/boot"; mount "${loop}p4" "$work/mnt/data"
  cp -a "$R/." "$work/mnt/"
  echo "data partition of the dervish boot disk" > "$work/mnt/data/README"
  # GRUB's core finds /boot/grub on partition 1 (by number); the menu finds the kernel by UUID.
  grub-install --target=i386-pc --boot-directory="$work/mnt/boot" --modules="part_msdos ext2" "$loop" \
    > "$work/grub.log" 2>&1 || { cat "$work/grub.log" >&2; die "grub-install failed"; }
  # an emulated PC on a busy machine may take minutes to bring up udev: wait for the disks, not 90 s
  cat > "$work/mnt/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
insmod part_msdos
insmod ext2
search --no-floppy --fs-uuid --set=root $u_boot
linux /vmlinuz-$kver root=UUID=$u_root ro console=ttyS0,115200 net.ifnames=0 systemd.default_device_timeout_sec=600
initrd /initrd.img-$kver
boot
CFG
  # debconf's answer, as the installer leaves it: dervish-metadata reports it as the GRUB device
  echo "grub-pc grub-pc/install_devices multiselect /dev/vda" | chroot "$work/mnt" debconf-set-selections
  local used; used=$(df -h --output=used "$work/mnt" | tail -1)
  umount "$work/mnt/data" "$work/mnt/boot" "$work/mnt"
  partx -d "$loop" 2>/dev/null || true; losetup -d "$loop"; loop=""
  zstd -q -T0 -3 "$work/disk.img" -o "$work/disk.img.zst"
  mv "$work/disk.img.zst" "$IMAGE"
  echo "bootdisk: built $IMAGE in $((SECONDS - start)) s (root uses $used; $(du -h "$IMAGE" | cut -f1) compressed)" >&2
}

case ${1:-} in
key) echo "$IMAGE" ;;
path) [ -f "$IMAGE" ] || build; echo "$IMAGE" ;;
build) start=$SECONDS; build; echo "bootdisk: $IMAGE ready ($((SECONDS - start)) s)" >&2; echo "$IMAGE" ;;
extract)
  [ -n "${2:-}" ] || die "usage: bootdisk.sh extract DEST"
  [ -f "$IMAGE" ] || build
  zstd -q -d -f --sparse "$IMAGE" -o "$2"
  ;;
marker) echo "$MARKER" ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
