#!/bin/bash
# Writes 1 to /logs/verifier/reward.txt when /work/count.txt counts the lines
# of the uploaded notes/todo.txt in den's base image, else 0.
mkdir -p /logs/verifier
failures=0
expect() {
  if [ "$3" = "$2" ]; then echo "$1: ok"; else echo "$1: got '$3', want '$2'"; failures=$((failures + 1)); fi
}
expect image "user" "$(id -un 1000 2>&1)"
expect count 3 "$(tr -d '[:space:]' < /work/count.txt 2>&1)"
if [ "$failures" -eq 0 ]; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi
