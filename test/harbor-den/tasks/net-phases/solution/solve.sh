#!/bin/bash
# Runs in the agent phase ([agent] network_mode = "no-network").
set -euo pipefail
{ probe pypi.org; probe deb.debian.org; } > /var/probe/agent-phase.txt
