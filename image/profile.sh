# dejima: the island's own token for shells and tools (dejima-notify, the SDKs). dejimad
# keeps it in a read-only file, never in the container's environment (docker inspect).
if [ -z "${DEJIMA_TOKEN:-}" ] && [ -r /run/secrets/dejima/token ]; then
  DEJIMA_TOKEN=$(cat /run/secrets/dejima/token)
  export DEJIMA_TOKEN
fi
export DEJIMA_HOST="${DEJIMA_HOST:-unix:/run/dejima/dejimad.sock}"
