#!/bin/bash
# Relative paths on purpose: the command starts in the image's WORKDIR.
set -euo pipefail
mkdir -p report
awk -F, 'NR > 1 { n += $3 } END { print n }' data/inventory.csv > report/total.txt
head -n 1 data/inventory.csv > report/header.txt
