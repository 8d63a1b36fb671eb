#!/usr/bin/env bash
# Starts den in the foreground and prints how to use it. Arguments go to `den up`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "den up needs root (gVisor sandboxes, mounts, cgroups): re-running with sudo" >&2
  exec sudo "$0" "$@"
fi
cat >&2 <<TXT
Starting den. When it prints DEN_URL and DEN_API_KEY, in another shell try:
  export PATH=\$PATH:$(pwd)/bin
  den run -- sh -c 'echo hello; exit 3'
  den create --name dev && den exec -t dev -- bash
  den ls
Ctrl-C stops den (sandboxes keep running and are reattached on the next start).
TXT
exec bin/den up "$@"
