#!/bin/bash
# Writes 1 to /logs/verifier/reward.txt when out.txt shows the solution ran as
# the image's USER with its ENV and WORKDIR, the verifier runs as root with
# [verifier.env], outbound traffic fails and the sandbox has the task's
# memory and disk; else 0.
mkdir -p /logs/verifier
failures=0
expect() {
  if [ "$3" = "$2" ]; then echo "$1: ok"; else echo "$1: got '$3', want '$2'"; failures=$((failures + 1)); fi
}
within() { # NAME WANT GOT: GOT within 90-100% of WANT (a VM's kernel keeps some)
  if [ "$3" -le "$2" ] && [ "$3" -ge $(($2 * 9 / 10)) ]; then echo "$1: ok"; else echo "$1: got $3, want about $2"; failures=$((failures + 1)); fi
}
out=/home/builder/work/out.txt
want="user=builder
pwd=/home/builder/work
greeting=hello from den
tool=greet sees: hello from den
task_level=set in task.toml
suffix=!"
expect out.txt "$want" "$(cat "$out" 2>&1)"
expect owner "$EXPECTED_OWNER" "$(stat -c %U "$out" 2>&1)"
expect verifier-user root "$(id -un)"
if getent hosts allowed.test >/dev/null; then dns=resolves; else dns=blocked; fi
expect dns blocked "$dns"
if curl -s --max-time 5 -o /dev/null http://allowed.test/; then http=reached; else http=failed; fi
expect https failed "$http"
within memory-kb $((768 * 1024)) "$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
within disk-mb 3072 "$(df -m --output=size / | tail -n 1 | tr -d ' ')"
if [ "$failures" -eq 0 ]; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi
