#!/bin/sh
# Island PID 1's child (docker --init puts tini in front). Keeps the container alive; agents
# and sessions are started by the daemon through `docker exec`.
set -e
# Fresh volumes arrive owned by root when the image had nothing at that path.
for d in /workspace /home/agent; do
  [ "$(stat -c %U "$d")" = agent ] || chown agent:agent "$d"
done
echo "dejima island ${DEJIMA_ISLAND:-?} up"
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
