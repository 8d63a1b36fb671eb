#!/bin/bash
# Writes 1 to /logs/verifier/reward.txt when /app/answer.txt holds the line
# count of /app/input.txt, else 0.
mkdir -p /logs/verifier
want="$(wc -l < /app/input.txt)"
got="$(tr -d '[:space:]' < /app/answer.txt 2>/dev/null || true)"
if [ "$got" = "$want" ]; then
  echo "answer $got is right"
  echo 1 > /logs/verifier/reward.txt
else
  echo "answer '$got' is wrong: want $want"
  echo 0 > /logs/verifier/reward.txt
fi
