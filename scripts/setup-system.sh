#!/usr/bin/env bash
# Install the Debian/Ubuntu packages dervish's lab, tests and demo need (idempotent, root only).
set -euo pipefail
PACKAGES=(
  rsync openssh-server openssh-client          # the backup transport
  fdisk e2fsprogs btrfs-progs xfsprogs         # disks, filesystems, the lab's backup drive
  util-linux iproute2 procps attr acl bc       # unshare/losetup/partx, ss, pgrep, setfattr, setfacl
  logrotate plocate cron                       # what the client role configures
  dirvish                                      # Dirvish 1.2.1, for the interoperability tests
  python3 python3-venv git make gzip bzip2 tar shellcheck
  sudo                                         # a lab login as a user with sudo (playbooks become root)
  udev                                         # udevadm: grub-install onto a (loop) disk (bare-metal restore, prepare_drive)
  grub-pc-bin grub2-common                     # GRUB's BIOS modules and grub-install: a rebuilt disk, a new backup drive, the test system disk boot
  dosfstools mtools                            # mkfs.vfat, and mcopy where the kernel mounts no vfat: an EFI system partition
  grub-efi-amd64-bin ovmf                      # GRUB for EFI, and UEFI firmware for qemu: the rebuilt EFI disk boot proof
  zstd                                         # the compressed rescue image (.zst) and the cached test system disk
  qemu-system-x86                              # boots the test system disk headless (software emulation)
  debootstrap                                  # builds the small Debian 12 test system disk
)
[ "$(id -u)" = 0 ] || { echo "setup-system: run as root (apt-get install)" >&2; exit 1; }
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && { echo "system packages: all present"; exit 0; }
echo "system packages: installing ${missing[*]}"
# Packages must not start services on the machine (an sshd on 0.0.0.0:22 would block the lab).
policy_added=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; policy_added=1
fi
trap '[ -n "$policy_added" ] && rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system packages: done"
