#!/usr/bin/env bash
# Produces every figure of docs/benchmarks.md on this machine, on loopback only:
#   1. builds the release binaries (nacre, nacre-bench);
#   2. starts a standalone member on free ports and a fresh data directory and runs every
#      request workload (HTTP and gRPC), the push latencies and the two ceilings against it;
#   3. starts a 3-member cluster (cluster.conf, fresh data directories) and runs config publish,
#      instance register (HTTP and gRPC) through one member and the push latencies across two;
#   4. runs `failover` (nacre-bench starts and kills its own 3-member cluster);
#   5. starts another fresh standalone member, fills it with 10,000 configs and 10,000 instances
#      and reads its RSS;
#   6. prints a Markdown summary of all reports (saved as JSON in $OUT).
# It stops only the processes it started, by PID, also on failure or Ctrl-C. Every workload is
# bounded by its duration or count; the whole run takes about 5 minutes after the build.
#
# Settings (environment):
#   DURATION  seconds per request workload (8)
#   CONNS     connections per request workload (50)
#   PUSHES    changes per push measurement: 200 for config; for naming half as many on one
#             member and a fifth across members, where each push takes about a second
#   ROUNDS    failover rounds (10)
#   FILL      configs, and instances, of the memory fill (10000)
#   OUT       directory for the JSON reports (default: a new temporary directory)
# Small values make a quick smoke run (about a minute after the build):
#   DURATION=2 CONNS=10 PUSHES=20 ROUNDS=2 FILL=1000 bench/run-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8}
CONNS=${CONNS:-50}
ROUNDS=${ROUNDS:-10}
PUSHES=${PUSHES:-200}
FILL=${FILL:-10000}
OUT=${OUT:-$(mktemp -d -t nacre-bench-results-XXXXXX)}
READY_SECONDS=30

mkdir -p "$OUT"
WORK=$(mktemp -d -t nacre-bench-run-XXXXXX)
PIDS=()

# Stops the members this script started (SIGTERM, then SIGKILL after 10 s), by PID.
stop() {
  local pid
  for pid in "$@"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "$@"; do
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  # Forget them, so that the exit handler never signals a PID the system may have reused.
  local keep=() p q
  for p in "${PIDS[@]}"; do
    for q in "$@"; do
      [ "$p" = "$q" ] && continue 2
    done
    keep+=("$p")
  done
  PIDS=("${keep[@]}")
}

cleanup() {
  if [ "${#PIDS[@]}" -gt 0 ]; then
    stop "${PIDS[@]}"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s ==\n' "$*"; }

# start_member PORT DATA_DIR LOG ARGS... : starts one member in the background; sets $LAST_PID.
start_member() {
  local port=$1 data=$2 log=$3
  shift 3
  mkdir -p "$data"
  RUST_LOG=${RUST_LOG:-warn} ./target/release/nacre --port "$port" --data-dir "$data" "$@" \
    >"$log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# wait_ready PORT LOG : waits until readiness answers 200, at most READY_SECONDS.
wait_ready() {
  local port=$1 log=$2
  for _ in $(seq 1 $((READY_SECONDS * 10))); do
    if curl -sf "http://127.0.0.1:$port/nacos/v1/console/health/readiness" >/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "member on port $port not ready within ${READY_SECONDS} s; log:" >&2
  tail -n 30 "$log" >&2
  exit 1
}

B=./target/release/nacre-bench
N=0
# bench NAME ARGS... : runs one workload, saves its JSON report as $OUT/NN-NAME.json and prints
# its summary row.
bench() {
  local name=$1
  shift
  N=$((N + 1))
  local file
  file=$(printf '%s/%02d-%s.json' "$OUT" "$N" "$name")
  "$B" "$@" --json >"$file"
  "$B" summary "$file" | sed -n 3p
}

step "build"
cargo build --release -p nacre-server -p nacre-bench

step "standalone member"
PORT=$($B ports)
start_member "$PORT" "$WORK/standalone" "$WORK/standalone.log" -m standalone
SOLO=$LAST_PID
wait_ready "$PORT" "$WORK/standalone.log"
A=127.0.0.1:$PORT
echo "port $PORT, pid $SOLO, idle $(grep VmRSS /proc/$SOLO/status)"
S=(--server-pid "$SOLO" --duration "$DURATION" --connections "$CONNS")
bench config-get-1 config-get --addr "$A" --keys 1 "${S[@]}"
bench config-get-1000 config-get --addr "$A" --keys 1000 "${S[@]}"
bench config-publish config-publish --addr "$A" "${S[@]}"
bench config-publish-1conn config-publish --addr "$A" --server-pid "$SOLO" --duration 5 \
  --connections 1 --label "config publish, 100 keys, 1 conn"
bench naming-list naming-list --addr "$A" "${S[@]}"
bench grpc-config-get grpc-config-get --addr "$A" "${S[@]}"
bench grpc-config-publish grpc-config-publish --addr "$A" "${S[@]}"
bench grpc-register grpc-register --addr "$A" "${S[@]}"
bench push-config push-config --addr "$A" --server-pid "$SOLO" --count "$PUSHES" \
  --interval-ms 50 --duration 30
bench push-naming push-naming --addr "$A" --server-pid "$SOLO" --count $((PUSHES / 2)) \
  --interval-ms 50 --duration 30
# Last against this member: it leaves tens of thousands of ephemeral HTTP instances, which
# expire (and are removed) 30 s later without beats.
bench naming-register naming-register --addr "$A" "${S[@]}"
stop "$SOLO"
bench ceiling ceiling --duration "$DURATION" --connections "$CONNS"
bench grpc-ceiling grpc-ceiling --duration "$DURATION" --connections "$CONNS"
bench fsync fsync --dir "$WORK" --count 3000

step "3-member cluster"
read -r P0 P1 P2 <<<"$($B ports --count 3)"
printf '127.0.0.1:%s\n' "$P0" "$P1" "$P2" >"$WORK/cluster.conf"
MEMBERS=()
for p in "$P0" "$P1" "$P2"; do
  start_member "$p" "$WORK/member-$p" "$WORK/member-$p.log" -m cluster \
    --cluster-conf "$WORK/cluster.conf"
  MEMBERS+=("$LAST_PID")
done
for p in "$P0" "$P1" "$P2"; do
  wait_ready "$p" "$WORK/member-$p.log"
done
echo "ports $P0 $P1 $P2, pids ${MEMBERS[*]}"
CPIDS=$(IFS=,; echo "${MEMBERS[*]}")
C=(--server-pid "$CPIDS" --duration "$DURATION" --connections "$CONNS")
bench cluster-config-publish config-publish --addr "127.0.0.1:$P0" "${C[@]}" \
  --label "3-member cluster: config publish, 100 keys"
bench cluster-grpc-register grpc-register --addr "127.0.0.1:$P0" "${C[@]}" \
  --label "3-member cluster: gRPC instance register"
bench cluster-push-config push-config --addr "127.0.0.1:$P0" --publish-addr "127.0.0.1:$P1" \
  --server-pid "$CPIDS" --count "$PUSHES" --duration 30 \
  --label "3-member cluster: config push, publish on another member"
bench cluster-push-naming push-naming --addr "127.0.0.1:$P0" --publish-addr "127.0.0.1:$P1" \
  --server-pid "$CPIDS" --count $((PUSHES / 5)) --duration 60 \
  --label "3-member cluster: naming push, register on another member"
bench cluster-naming-register naming-register --addr "127.0.0.1:$P0" "${C[@]}" \
  --label "3-member cluster: instance register, 100 services"
stop "${MEMBERS[@]}"

step "failover (nacre-bench starts its own 3-member cluster)"
bench failover failover --bin ./target/release/nacre --rounds "$ROUNDS"

step "memory: a fresh standalone member filled with $FILL configs and $FILL instances"
PORT=$($B ports)
start_member "$PORT" "$WORK/fill" "$WORK/fill.log" -m standalone
FILL_PID=$LAST_PID
wait_ready "$PORT" "$WORK/fill.log"
bench fill fill --addr "127.0.0.1:$PORT" --server-pid "$FILL_PID" --connections "$CONNS" \
  --configs "$FILL" --instances "$FILL"
stop "$FILL_PID"

step "summary (reports in $OUT)"
"$B" summary "$OUT"/*.json
