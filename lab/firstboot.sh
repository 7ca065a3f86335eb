#!/usr/bin/env bash
# One-time set-up inside a lab host; every write lands in the host's own overlay upper dir.
set -eu
NAME=$1 IP=$2
echo "$NAME" > /etc/hostname
{ echo "127.0.0.1 localhost"; echo "$IP $NAME"; cat /run/lab/hosts; } | awk '!seen[$0]++' > /etc/hosts
rm -f /etc/ssh/ssh_host_*                      # never share the machine's host keys
ssh-keygen -A -q >/dev/null
cat > /etc/ssh/sshd_config.d/00-lab.conf <<CONF
ListenAddress $IP
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
CONF
install -d -m 700 /root/.ssh
cat /run/lab/id_lab.pub >> /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
tr -d - < /proc/sys/kernel/random/uuid > /etc/machine-id
mkdir -p /var/lib/dbus && ln -sf /etc/machine-id /var/lib/dbus/machine-id   # Ansible reads this one first
rm -f /.dockerenv
# outgoing ssh leaves from the host's own address, so from="..." rules and logs see it
printf 'Host *\n  BindAddress %s\n' "$IP" > /etc/ssh/ssh_config.d/00-lab.conf
echo "$NAME $IP" > /etc/lab-host
