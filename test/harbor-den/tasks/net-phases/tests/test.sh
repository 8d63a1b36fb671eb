#!/bin/bash
# Runs in the verifier phase ([verifier] network_mode = "allowlist", only
# allowed.test). Writes 1 to /logs/verifier/reward.txt when the agent phase saw
# no name resolve and this phase sees allowed.test alone, else 0.
mkdir -p /logs/verifier
failures=0
expect() {
  if [ "$3" = "$2" ]; then echo "$1: ok"; else echo "$1: got '$3', want '$2'"; failures=$((failures + 1)); fi
}
expect agent-phase "allowed.test blocked
other.test blocked" "$(cat /var/probe/agent-phase.txt 2>&1)"
expect verifier-phase "allowed.test resolves
other.test blocked" "$(probe allowed.test; probe other.test)"
if [ "$failures" -eq 0 ]; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi
