#!/usr/bin/env bash
# PID 1 of a lab host: keeps sshd running, reaps orphans (bash reaps any child), exits on TERM.
stop=0 pid=
trap 'stop=1; [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null' TERM INT
while [ "$stop" = 0 ]; do
  mkdir -p /run/sshd
  /usr/sbin/sshd -D -e &
  pid=$!
  wait "$pid"
  echo "sshd exited rc=$? at $(date +%T)" >&2
  [ "$stop" = 0 ] && sleep 1
done
