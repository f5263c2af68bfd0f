#!/bin/sh
# Island PID 1's child (docker --init puts tini in front). Starts the agents dejimad listed in
# /run/dejima/agents.d, then keeps the container alive; clients attach through `docker exec`.
set -e
# Fresh volumes arrive owned by root when the image had nothing at that path.
for d in /workspace /home/agent; do
  [ "$(stat -c %U "$d")" = agent ] || chown agent:agent "$d"
done
# sshd's privilege separation folder (/run may be fresh).
mkdir -p /run/sshd
# Start the agents: dejimad writes one script per agent into the bind-mounted /run/dejima.
for f in /run/dejima/agents.d/*.sh; do
  [ -f "$f" ] || continue
  runuser -u agent -- sh "$f" || echo "agent $(basename "$f" .sh) did not start" >&2
done
echo "dejima island ${DEJIMA_ISLAND:-?} up"
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
