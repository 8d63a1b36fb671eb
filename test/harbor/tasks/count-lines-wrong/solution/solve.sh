#!/bin/bash
# A deliberately wrong solution: it counts bytes, not lines.
set -euo pipefail
wc -c < /app/input.txt > /app/answer.txt
