#!/usr/bin/env bash
# den bench cluster on this machine: SERVERS den server processes on
# loopback (mutual TLS between them), one `den agent --sim NODES` process,
# then `den bench cluster` through the first server's API. Everything is
# torn down at the end; the data lives in a temporary directory.
#
# Usage: bench/cluster.sh [--servers 1|3|5] [--nodes 30] [--dedicated 3]
#                         [--sandboxes 5000] [--concurrency 256]
#                         [--via leader|follower] [--json FILE] [--pprof DIR]
# --dedicated N more simulated nodes (a second agent process) form a node
# pool that another tenant owns: the benchmark's sandboxes must never land
# there, which den bench cluster checks after its create phase.
# --via picks the server the benchmark's requests go to (a follower passes
# each to the leader).
# --pprof DIR writes 20 s CPU profiles of the leader, of a follower and of
# the sim agent (taken 2 s into the run) to DIR/server.pprof,
# DIR/follower.pprof and DIR/agent.pprof, and what each allocated in all
# to DIR/server.allocs, DIR/follower.allocs and DIR/agent.allocs; the
# benchmark client's CPU profile, of its whole run, to DIR/client.pprof.
set -euo pipefail
servers=1 nodes=30 dedicated=3 sandboxes=5000 concurrency=256 json= pprof= via=leader
while [ $# -gt 0 ]; do
  case $1 in
    --servers) servers=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --dedicated) dedicated=$2; shift 2 ;;
    --sandboxes) sandboxes=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    --via) via=$2; shift 2 ;;
    --pprof) pprof=$2; shift 2 ;;
    *) echo "cluster.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
den=${DEN_BIN:-$here/../bin/den}
work=$(mktemp -d /tmp/den-bench-cluster.XXXXXX)
pids=() profilers=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT

base=17300
joins=
for i in $(seq 1 "$servers"); do
  p=$((base + 10 * i))
  args=(server --data-dir "$work/s$i" --id "s$i" --listen "127.0.0.1:$p" --cluster-listen "127.0.0.1:$((p + 1))"
    --advertise "127.0.0.1:$((p + 1))" --node-listen "127.0.0.1:$((p + 2))" --sandbox-listen "127.0.0.1:$((p + 3))"
    --bootstrap-expect "$servers" --ca-dir "$work/ca")
  [ -n "$joins" ] && args+=(--join "$joins")
  pp=
  [ -n "$pprof" ] && pp="127.0.0.1:$((p + 5))"
  DEN_PPROF_LISTEN=$pp "$den" "${args[@]}" >"$work/s$i.log" 2>&1 &
  pids+=($!)
  # The first server makes the cluster CA the others share.
  for _ in $(seq 100); do [ -s "$work/ca/ca-key.pem" ] && break; sleep 0.1; done
  joins=${joins:+$joins,}127.0.0.1:$((p + 1))
done
url=http://127.0.0.1:$((base + 10))
for _ in $(seq 100); do [ -s "$work/s1/env" ] && grep -q DEN_API_KEY "$work/s1/env" && break; sleep 0.2; done
key=$(sed -n 's/^DEN_API_KEY=//p' "$work/s1/env")
for _ in $(seq 100); do token=$("$den" token create --uses "$nodes" --url "$url" --api-key "$key" 2>/dev/null) && break; sleep 0.3; done
nodeaddrs=$(for i in $(seq 1 "$servers"); do printf '127.0.0.1:%d,' $((base + 10 * i + 2)); done)
approf=
[ -n "$pprof" ] && approf="127.0.0.1:$((base + 99))"
DEN_PPROF_LISTEN=$approf "$den" agent --data-dir "$work/agent" --server "${nodeaddrs%,}" --token "$token" --sim "$nodes" \
  --sim-cpus 400 --sim-memory-mb 500000 >"$work/agent.log" 2>&1 &
pids+=($!)
if [ "$dedicated" -gt 0 ]; then
  "$den" tenant create bench-other --url "$url" --api-key "$key" >/dev/null
  "$den" tenant set bench-other --node-pools bench-dedicated --url "$url" --api-key "$key" >/dev/null
  dtoken=$("$den" token create --uses "$dedicated" --pool bench-dedicated --url "$url" --api-key "$key")
  "$den" agent --data-dir "$work/agent-dedicated" --server "${nodeaddrs%,}" --token "$dtoken" --sim "$dedicated" \
    --pool bench-dedicated --sim-cpus 400 --sim-memory-mb 500000 >"$work/agent-dedicated.log" 2>&1 &
  pids+=($!)
fi
for _ in $(seq 150); do
  up=$("$den" node ls --url "$url" --api-key "$key" 2>/dev/null | grep -c ready || true)
  [ "$up" -ge $((nodes + dedicated)) ] && break
  sleep 0.2
done
# Drive the leader (as a client that knows the cluster would) or a follower.
role=leader
[ "$via" = follower ] && role=follower
addr=$("$den" server members --url "$url" --api-key "$key" | awk -v r="$role" '$3 == r {print $2; exit}')
[ -n "$addr" ] && url=http://127.0.0.1:$(( ${addr##*:} - 1 ))
echo "cluster.sh: API at $url (a $role)"
echo "cluster.sh: $servers server(s), $up/$((nodes + dedicated)) sim nodes ready ($dedicated of them bench-other's), $(nproc) CPUs, $(date -u +%FT%TZ)"
if [ -n "$pprof" ]; then
  mkdir -p "$pprof"
  # The leader's profile: it runs the scheduler, the agents' links and every write.
  lport=$("$den" server members --url "$url" --api-key "$key" | awk '$3 == "leader" {print $2; exit}')
  lport=$(( ${lport##*:} + 4 )) # its pprof port: the cluster port + 4
  echo "cluster.sh: profiling the leader at 127.0.0.1:$lport"
  (sleep 2; curl -s -o "$pprof/server.pprof" "http://127.0.0.1:$lport/debug/pprof/profile?seconds=20") &
  profilers+=($!)
  (sleep 2; curl -s -o "$pprof/agent.pprof" "http://$approf/debug/pprof/profile?seconds=20") &
  profilers+=($!)
  # A follower's: it applies every entry the leader commits.
  fport=$("$den" server members --url "$url" --api-key "$key" | awk '$3 == "follower" {print $2; exit}')
  if [ -n "$fport" ]; then
    fport=$(( ${fport##*:} + 4 ))
    (sleep 2; curl -s -o "$pprof/follower.pprof" "http://127.0.0.1:$fport/debug/pprof/profile?seconds=20") &
    profilers+=($!)
  fi
fi
# cpu_s PID: the user+system CPU seconds the process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo "?"; }
declare -A before
for i in "${!pids[@]}"; do before[$i]=$(cpu_s "${pids[$i]}"); done
/usr/bin/time -f "%U %S" -o "$work/client.time" \
  "$den" bench cluster --url "$url" --api-key "$key" --sandboxes "$sandboxes" --concurrency "$concurrency" ${json:+--json "$json"} \
  ${pprof:+--cpu-profile "$pprof/client.pprof"}
# Where the CPU went during the benchmark: each server, the sim agent and
# the benchmark client (a wall-clock rate on a loaded machine says less).
line="cluster.sh: CPU seconds during the run:"
for i in "${!pids[@]}"; do
  name="s$((i + 1))"
  [ "$i" -eq "$servers" ] && name=agent
  [ "$i" -gt "$servers" ] && name=dedicated-agent
  now=$(cpu_s "${pids[$i]}")
  line+=" $name $(awk -v a="$now" -v b="${before[$i]}" 'BEGIN {printf "%.1f", a - b}')"
done
line+=" client $(awk '{printf "%.1f", $1 + $2}' "$work/client.time")"
echo "$line"
# The profiles end 22 s after the run began; wait for them (not for the
# servers, which run until the cleanup).
for p in "${profilers[@]}"; do wait "$p" 2>/dev/null || true; done
# What each allocated since it started (go tool pprof -sample_index=alloc_space).
if [ -n "$pprof" ]; then
  curl -s -o "$pprof/server.allocs" "http://127.0.0.1:$lport/debug/pprof/allocs"
  curl -s -o "$pprof/agent.allocs" "http://$approf/debug/pprof/allocs"
  [ -n "$fport" ] && curl -s -o "$pprof/follower.allocs" "http://127.0.0.1:$fport/debug/pprof/allocs"
fi
