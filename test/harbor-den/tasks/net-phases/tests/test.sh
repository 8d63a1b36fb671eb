#!/bin/bash
# Runs in the verifier phase ([verifier] network_mode = "allowlist", only
# pypi.org). Writes 1 to /logs/verifier/reward.txt when the agent phase saw
# no name resolve and this phase sees pypi.org alone, else 0.
mkdir -p /logs/verifier
failures=0
expect() {
  if [ "$3" = "$2" ]; then echo "$1: ok"; else echo "$1: got '$3', want '$2'"; failures=$((failures + 1)); fi
}
expect agent-phase "pypi.org blocked
deb.debian.org blocked" "$(cat /var/probe/agent-phase.txt 2>&1)"
expect verifier-phase "pypi.org resolves
deb.debian.org blocked" "$(probe pypi.org; probe deb.debian.org)"
if [ "$failures" -eq 0 ]; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi
