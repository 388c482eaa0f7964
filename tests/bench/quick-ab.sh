#!/usr/bin/env bash
# A short A/B probe of one relayd build (a minute, no Postfix): relayd's rate end
# to end, timed like bench.sh (N / start of smtp-source until the sink has
# counted N), its CPU per message, its threads' CPU and context switches, the
# machine's idle CPU, and right after it the direct harness (smtp-source ->
# smtp-sink, twice the messages) with relayd's fraction of it. Run two builds
# alternately several times: the machine is shared, one run proves nothing.
# bench.sh --end-to-end --rounds 3 stays the measure of record.
#
#   tests/bench/quick-ab.sh RELAYD_BIN [MESSAGES] [d|new] [WRAPPER...]
#
# d (default): smtp-source -d (20 sessions, connections reused); new: a new
# connection per message. WRAPPER runs relayd under a command, e.g. `eatmydata`
# (flushes made free: the upper bound without the disk). RELAYD_EXTRA: lines
# appended to the bench's relayd.toml (printf %b, so "\n" works). QUICK_AB_PERF:
# perf events counted on relayd over the measured window and printed per message
# (e.g. syscalls:sys_enter_fdatasync,context-switches). Root,
# smtp-source and smtp-sink (postfix), loopback only.
set -euo pipefail
bin=${1:?usage: quick-ab.sh RELAYD_BIN [MESSAGES] [d|new] [WRAPPER...]}
n=${2:-20000}
mode=${3:-d}
shift $(($# < 3 ? $# : 3))
wrap=("$@")
[[ $mode == d || $mode == new ]] || { echo "quick-ab: mode is d or new, not $mode" >&2; exit 2; }
reuse=(); [[ $mode == d ]] && reuse=(-d)
here=$(dirname "$(readlink -f "$0")")
source "$here/relayd-config.sh"
dir=$(mktemp -d /var/tmp/relayd-ab.XXXXXX)
port=$((20000 + RANDOM % 20000)); sink=$((port + 1)); direct=$((port + 2))
cleanup() {
    kill "${relayd_pid:-}" "${sink_pid:-}" "${direct_pid:-}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
smtp-sink -c -u nobody "127.0.0.1:$sink" 1024 >"$dir/sink.log" 2>&1 & sink_pid=$!
smtp-sink -c -u nobody "127.0.0.1:$direct" 1024 >"$dir/direct.log" 2>&1 & direct_pid=$!
bench_relayd_config "$dir" "$port" "$sink" >"$dir/relayd.toml"
[[ -z ${RELAYD_EXTRA:-} ]] || printf '%b\n' "$RELAYD_EXTRA" >>"$dir/relayd.toml"
"${wrap[@]}" "$bin" --config "$dir/relayd.toml" 2>"$dir/relayd.log" & relayd_pid=$!
sleep 0.5
count() { tr '\r' '\n' <"$1" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2; }
source_run() {  # port count
    smtp-source "${reuse[@]}" -s 20 -m "$2" -l 1024 -f a@x.test -t b@y.test "127.0.0.1:$1" >/dev/null 2>&1
}
wait_count() {  # log target
    local c
    for _ in $(seq 1 60000); do
        c=$(count "$1"); [[ ${c:-0} -ge $2 ]] && return 0
        sleep 0.01
    done
    echo "quick-ab: the sink did not count $2 messages" >&2; exit 1
}
source_run "$port" 500   # warm-up: connections, map pages, allocator
wait_count "$dir/sink.log" 500
base=$(count "$dir/sink.log")
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
idle_ticks() { awk '/^cpu /{print $5 + $6}' /proc/stat; }
threads() {  # name:user+system ticks/context switches, per thread
    local t
    for t in /proc/"$relayd_pid"/task/*; do
        printf '%s:%s+%s/%s ' "$(cat "$t/comm")" "$(awk '{print $14}' "$t/stat")" \
            "$(awk '{print $15}' "$t/stat")" \
            "$(awk '/^voluntary_ctxt/ {v = $2} /^nonvoluntary/ {n = $2} END {print v + n}' "$t/status")"
    done
}
th0=$(threads); i0=$(idle_ticks); c0=$(proc_ticks "$relayd_pid"); s0=$(proc_ticks "$sink_pid")
if [[ -n ${QUICK_AB_PERF:-} ]]; then  # counts over the measured window, per message below
    perf stat -x, -e "$QUICK_AB_PERF" -p "$relayd_pid" -o "$dir/perf.csv" & perf_pid=$!
    sleep 0.2
fi
t0=$(date +%s.%N)
/usr/bin/time -f '%U %S' -o "$dir/source.time" smtp-source "${reuse[@]}" -s 20 -m "$n" -l 1024 \
    -f a@x.test -t b@y.test "127.0.0.1:$port" >/dev/null 2>&1
wait_count "$dir/sink.log" $((base + n))
t1=$(date +%s.%N)
c1=$(proc_ticks "$relayd_pid"); s1=$(proc_ticks "$sink_pid"); i1=$(idle_ticks); th1=$(threads)
if [[ -n ${perf_pid:-} ]]; then
    kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
    awk -F, -v n="$n" '$1 ~ /^[0-9.]+$/ {printf "%s %.2f/msg  ", $3, $1 / n} END {print ""}' "$dir/perf.csv"
fi
t2=$(date +%s.%N)
source_run "$direct" $((2 * n))
wait_count "$dir/direct.log" $((2 * n))
t3=$(date +%s.%N)
hz=$(getconf CLK_TCK)
python3 - "$n" "$t0" "$t1" "$t2" "$t3" "$c0" "$c1" "$s0" "$s1" "$i0" "$i1" "$hz" "$(cat "$dir/source.time")" <<'EOF'
import sys
n, t0, t1, t2, t3 = int(sys.argv[1]), *map(float, sys.argv[2:6])
c0, c1, s0, s1, i0, i1, hz = map(int, sys.argv[6:13])
su, ss = map(float, sys.argv[13].split())
e2e, direct = n / (t1 - t0), 2 * n / (t3 - t2)
us = lambda ticks: ticks / hz * 1e6 / n
print(f"relayd {e2e:.0f} msg/s, CPU {us(c1 - c0):.0f} us/msg | generator CPU "
      f"{((su + ss) * 1e6 + us(s1 - s0) * n) / n:.0f} us/msg | direct {direct:.0f} msg/s | "
      f"relayd/direct {100 * e2e / direct:.0f} % | idle CPU {(i1 - i0) / hz / (t1 - t0) / 2 * 100:.0f} %")
EOF
echo "threads (name:user+system ticks/context switches) before: $th0"
echo "threads after: $th1"
