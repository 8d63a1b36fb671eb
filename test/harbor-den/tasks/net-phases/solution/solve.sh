#!/bin/bash
# Runs in the agent phase ([agent] network_mode = "no-network").
set -euo pipefail
{ probe allowed.test; probe other.test; } > /var/probe/agent-phase.txt
