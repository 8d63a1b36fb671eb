#!/usr/bin/env bash
# The floor under the ComputeSDK TTI: the same two commands run.mjs times
# (the identity probe, then `node -v`, each as `bash -l -c` as user "user",
# as envd starts them), timed with no create, no SDK and no API:
#
#   native   in a chroot of a running sandbox's root filesystem, with no
#            isolation at all (sequential, then N at once)
#   gvisor   inside that running gVisor sandbox (sequential)
#
# Usage: bench/e2b-tti/floor.sh [-n 100] [--template base]
# Needs root (chroot, a private mount namespace for /proc), a running den
# (DEN_DATA_DIR or /var/lib/den) and bin/den.
set -euo pipefail
n=100
template=base
while [ $# -gt 0 ]; do
  case $1 in
    -n) n=$2; shift 2 ;;
    --template) template=$2; shift 2 ;;
    *) echo "floor.sh: unknown argument $1 (want -n N or --template T)" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
den=${DEN_BIN:-$here/../../bin/den}
data=${DEN_DATA_DIR:-/var/lib/den}
[ "$(id -u)" = 0 ] || { echo "floor.sh: run as root (chroot and unshare)" >&2; exit 2; }

# The probe, taken from run.mjs so both measure the same text.
probe=$(node -e "
const src = require('fs').readFileSync('$here/run.mjs', 'utf8')
const m = src.match(/const PROBE = \[([\s\S]*?)\]\.join/)
process.stdout.write(eval('[' + m[1] + ']').join('\n'))")

# one I: one iteration with its own marker files, printing its milliseconds.
iteration='
one() {
  p=$(printf "%s" "$PROBE" | sed "s#/tmp/.bench_ephemeral_check#/tmp/.floor$TAG$1#g; s#/var/tmp/.bench_ephemeral_check#/var/tmp/.floor$TAG$1#g")
  s=$(date +%s%N)
  bash -l -c "$p" >/dev/null && bash -l -c "node -v" >/dev/null || { echo fail; return; }
  echo $(( ($(date +%s%N) - s) / 1000 ))
}'
sequential="$iteration"'
for i in $(seq $N); do one $i; done'
burst="$iteration"'
for i in $(seq $N); do one $i & done; wait'

# stats NAME: trimmed (5% each end) median, p95 and p99 of the microsecond
# lines on stdin, in ms, and the count of failures.
stats() {
  sort -n | awk -v name="$1" '
    /fail/ { fail++; next }
    { v[++n] = $1 }
    END {
      k = int(n * 0.05); m = n - 2 * k
      if (m <= 0) { printf "%-22s %d ok, %d failed\n", name, n, fail; exit }
      med = v[k + int((m + 1) / 2)]; p95 = v[k + int(m * 0.95 + 0.999)]; p99 = v[k + int(m * 0.99 + 0.999)]
      printf "%-22s %3d ok %2d failed   median %7.1f ms   p95 %7.1f ms   p99 %7.1f ms\n", name, n, fail, med / 1000, p95 / 1000, p99 / 1000
    }'
}

id=$("$den" --data-dir "$data" create "$template" --timeout 0)
trap '"$den" --data-dir "$data" rm "$id" >/dev/null 2>&1 || true' EXIT
rootfs=$data/sandboxes/sandboxes/$id/rootfs
[ -d "$rootfs/usr" ] || { echo "floor.sh: no root filesystem at $rootfs" >&2; exit 1; }

echo "floor of the ComputeSDK workload, template $template, $n iterations, $(nproc) CPUs, $(date -u +%FT%TZ)"
native() { # native TAG SCRIPT
  TAG=$1 PROBE=$probe N=$n unshare -m --propagation private sh -c '
    mount -t proc proc "$1/proc" && exec chroot --userspec=1000:1000 "$1" env -i HOME=/home/user PATH=/usr/bin:/bin PROBE="$PROBE" N="$N" TAG="$TAG" bash -c "$2"' sh "$rootfs" "$2"
}
native s "$sequential" | stats "native sequential"
native b "$burst" | stats "native burst x$n"
"$den" --data-dir "$data" exec "$id" -- su user -c "TAG=g PROBE=$(printf %q "$probe") N=$n bash -c $(printf %q "$sequential")" | stats "gvisor sequential"
