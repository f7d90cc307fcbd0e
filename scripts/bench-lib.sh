# Sourced by scripts/bench-vs-etcd and scripts/bench-scale (after they set `profile`, `build`,
# `bin_dir`, `out`, `members` and `command_line`): the binaries, the results directory, cleanup
# of every process started, and a cluster of keel or etcd members on loopback ports.
# shellcheck shell=bash

# --- binaries -------------------------------------------------------------------------------
source scripts/env
if [ "$profile" = release ]; then
  export CARGO_TARGET_DIR=$HOME/.cache/keel-target-release
  cargo_profile=(--release)
else
  cargo_profile=()
fi
if ((build)); then
  echo "== building keel and keel-bench ($profile, $CARGO_TARGET_DIR)"
  cargo build "${cargo_profile[@]}" -p keel -p benches
fi
keel_bin="$CARGO_TARGET_DIR/$profile/keel"
bench_bin="$CARGO_TARGET_DIR/$profile/keel-bench"
if [ -n "${bin_dir:-}" ]; then # --bin-dir: another build, copied aside
  keel_bin=$bin_dir/keel
  bench_bin=$bin_dir/keel-bench
fi
etcd_bin=/usr/bin/etcd
export ETCDCTL_API=3
etcd_version=$("$etcd_bin" --version | sed -n 1p)
for binary in "$keel_bin" "$bench_bin" "$etcd_bin" /usr/bin/etcdctl; do
  [ -x "$binary" ] || { echo "$(basename "$0"): $binary is missing (scripts/setup installs etcd; drop --no-build to build keel)" >&2; exit 1; }
done

[ -n "$out" ] || out="$HOME/.cache/keel-bench-results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
: >"$out/commands.txt"
echo "$command_line" >"$out/command-line.txt"
clock_ticks=$(getconf CLK_TCK)

# --- processes: every PID started is recorded and stopped on exit -----------------------------
member_pids=()   # the running cluster's members
extra_pids=()    # other processes a scenario starts (a stalled watcher, say)
helper_pid=      # the keel-bench or check perf run in progress (under `timeout`, which passes TERM on)
run_dir=
cleanup() {
  local pid
  if [ -n "$helper_pid" ]; then
    kill -TERM "$helper_pid" 2>/dev/null || true
    wait "$helper_pid" 2>/dev/null || true
  fi
  for pid in "${member_pids[@]}" "${extra_pids[@]}"; do
    kill -CONT "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$run_dir" ]; then rm -rf "$run_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a bounded command in the background and waits for it, so an interrupt reaches the trap
# at once and the trap can stop it by its PID.
run_helper() {
  local status=0
  "$@" &
  helper_pid=$!
  wait "$helper_pid" || status=$?
  helper_pid=
  return "$status"
}

# N distinct free loopback ports, held open together while chosen so they differ.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
EOF
}

# utime + stime of a process, in seconds (fields 14 and 15 of /proc/PID/stat, after the name).
cpu_seconds() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  stat=${stat##*) }
  # shellcheck disable=SC2086
  set -- $stat
  python3 -c "print((${12} + ${13}) / $clock_ticks)"
}

cluster_cpu() {
  local pid total=0
  for pid in "${member_pids[@]}"; do
    total=$(python3 -c "print($total + $(cpu_seconds "$pid"))")
  done
  echo "$total"
}

# Peak resident set (VmHWM) of a process, in KiB.
peak_rss_kib() {
  awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

member_logs=()
client_endpoints=

# The cluster's layout, so a member can be stopped and started again with the same flags.
cluster_target=
cluster_dir=
cluster_initial=
cluster_token=
member_clients=()
member_peers=()

start_cluster() {
  local target=$1 dir=$2 ports index
  read -r -a ports <<<"$(free_ports $((members * 2)))"
  cluster_target=$target
  cluster_dir=$dir
  cluster_token="bench-$target-$$-${ports[0]}"
  cluster_initial=
  member_clients=()
  member_peers=()
  for ((index = 0; index < members; index++)); do
    cluster_initial+="${cluster_initial:+,}n$((index + 1))=http://127.0.0.1:${ports[index * 2 + 1]}"
    member_clients+=("http://127.0.0.1:${ports[index * 2]}")
    member_peers+=("http://127.0.0.1:${ports[index * 2 + 1]}")
  done
  member_pids=()
  member_logs=()
  client_endpoints=
  for ((index = 0; index < members; index++)); do
    start_member "$index"
    client_endpoints+="${client_endpoints:+,}${member_clients[index]#http://}"
  done
  echo "   $target: ${members} member(s), pids ${member_pids[*]}, endpoints $client_endpoints"
}

# Starts member INDEX of the cluster (again, after stop_member, from its data dir).
start_member() {
  local index=$1 name="n$(($1 + 1))" pid
  local flags=(--name "$name" --data-dir "$cluster_dir/$name"
    --listen-client-urls "${member_clients[index]}" --advertise-client-urls "${member_clients[index]}"
    --listen-peer-urls "${member_peers[index]}" --initial-advertise-peer-urls "${member_peers[index]}"
    --initial-cluster "$cluster_initial" --initial-cluster-state new --initial-cluster-token "$cluster_token")
  local log="$out/$cluster_target/$name.log"
  if [ "$cluster_target" = keel ]; then
    "$keel_bin" store "${flags[@]}" >>"$log" 2>&1 &
  else
    "$etcd_bin" "${flags[@]}" >>"$log" 2>&1 &
  fi
  pid=$!
  member_pids[index]=$pid
  member_logs[index]=$log
  echo "$cluster_target $name: pid $pid, client ${member_clients[index]}, peer ${member_peers[index]}" >>"$out/$cluster_target/cluster.txt"
}

# SIGTERM to member INDEX, and wait (SIGKILL after 15 s).
stop_member() {
  local pid=${member_pids[$1]} deadline=$((SECONDS + 15))
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_cluster() {
  local index
  for index in "${!member_pids[@]}"; do kill -TERM "${member_pids[index]}" 2>/dev/null || true; done
  for index in "${!member_pids[@]}"; do stop_member "$index"; done
  member_pids=()
}

die_with_logs() {
  echo "$(basename "$0"): $*" >&2
  local log
  for log in "${member_logs[@]}"; do
    echo "--- $log (last lines)" >&2
    tail -n 20 "$log" >&2 || true
  done
  exit 1
}

# The endpoint of the member every member names as leader; fails while they disagree.
leader_endpoint() {
  etcdctl --endpoints "$client_endpoints" --command-timeout 3s endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
statuses = json.load(sys.stdin)
leaders = {s["Status"]["leader"] for s in statuses}
if len(statuses) == 0 or len(leaders) != 1 or 0 in leaders:
    sys.exit(1)
leader = leaders.pop()
print(next(s["Endpoint"] for s in statuses if s["Status"]["header"]["member_id"] == leader))
'
}

wait_healthy() {
  local deadline=$((SECONDS + 90)) pid
  until etcdctl --endpoints "$client_endpoints" --command-timeout 3s endpoint health >/dev/null 2>&1 &&
    leader_endpoint >/dev/null; do
    for pid in "${member_pids[@]}"; do kill -0 "$pid" 2>/dev/null || die_with_logs "member pid $pid exited"; done
    ((SECONDS < deadline)) || die_with_logs "cluster not healthy within 90 s"
    sleep 0.5
  done
}

# Runs keel-bench; keeps its human output and JSON; fails the run if it fails.
bench() {
  local name=$1 endpoints=$2
  shift 2
  local json="$out/$target/$name.json"
  local line=("$bench_bin" --endpoints "$endpoints" --json "$json" "$@")
  echo "$target $name: ${line[*]}" >>"$out/commands.txt"
  run_helper timeout "${bench_timeout:-$((seconds * 3 + 180))}" "${line[@]}" >"$out/$target/$name.txt" 2>&1 ||
    { cat "$out/$target/$name.txt" >&2; die_with_logs "keel-bench $name failed against $target"; }
  sed 's/^/   /' "$out/$target/$name.txt"
}
