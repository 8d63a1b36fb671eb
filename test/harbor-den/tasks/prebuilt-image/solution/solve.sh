#!/bin/bash
# Relative paths: commands start in the task's workdir, /work.
set -euo pipefail
wc -l < notes/todo.txt > count.txt
