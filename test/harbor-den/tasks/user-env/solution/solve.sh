#!/bin/bash
# Runs as the image's USER in its WORKDIR, with its ENV, the task's
# [environment.env] and the solution's [solution.env].
set -euo pipefail
{
  echo "user=$(id -un)"
  echo "pwd=$(pwd)"
  echo "greeting=$GREETING"
  echo "tool=$(greet)"
  echo "task_level=$TASK_LEVEL"
  echo "suffix=$ANSWER_SUFFIX"
} > out.txt
