#!/bin/bash
# Writes 1 to /logs/verifier/reward.txt when the report the solution wrote in
# the image's WORKDIR is right, else 0. lib/expect.sh comes along in the
# tests directory Harbor uploads.
. "$(dirname "$0")/lib/expect.sh"
mkdir -p /logs/verifier
cd /srv/app
expect marker "built by den from workdir-copy/environment" "$(cat data/.image-marker 2>&1)"
expect total 251 "$(cat report/total.txt 2>&1)"
expect header "item,warehouse,count" "$(cat report/header.txt 2>&1)"
if [ "$failures" -eq 0 ]; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi
