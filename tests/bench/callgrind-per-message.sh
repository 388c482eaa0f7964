#!/usr/bin/env bash
# User-space instructions per message of one relayd build, by callgrind: steady
# where timings on a shared machine are not. relayd runs under callgrind with the
# bench configuration (relaying to an smtp-sink); after a 500-message warm-up
# the counts are zeroed, N messages go through (smtp-source, 20 sessions,
# 1 KiB), and the counts are dumped once the sink has them all.
#
#   tests/bench/callgrind-per-message.sh RELAYD_BIN [N] [d|new]
#
# Prints "instructions per message: X (FILE)"; FILE is the dump, for
# callgrind_annotate. Root, valgrind, smtp-source and smtp-sink; loopback only.
set -euo pipefail
bin=${1:?usage: callgrind-per-message.sh RELAYD_BIN [N] [d|new]}
n=${2:-3000}
mode=${3:-d}
[[ $mode == d || $mode == new ]] || { echo "callgrind-per-message: mode is d or new" >&2; exit 2; }
reuse=(); [[ $mode == d ]] && reuse=(-d)
here=$(dirname "$(readlink -f "$0")")
source "$here/relayd-config.sh"
dir=$(mktemp -d /var/tmp/relayd-cg.XXXXXX)
port=$((20000 + RANDOM % 20000)); sink=$((port + 1))
cleanup() { kill "${relayd_pid:-}" "${sink_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
smtp-sink -c -u nobody "127.0.0.1:$sink" 1024 >"$dir/sink.log" 2>&1 & sink_pid=$!
bench_relayd_config "$dir" "$port" "$sink" >"$dir/relayd.toml"
valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" --config "$dir/relayd.toml" \
    2>"$dir/relayd.log" & relayd_pid=$!
for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.2
done
count() { tr '\r' '\n' <"$dir/sink.log" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2; }
wait_count() {
    for _ in $(seq 3000); do
        [[ $(count) -ge $1 ]] 2>/dev/null && return 0
        sleep 0.1
    done
    echo "callgrind-per-message: the sink did not count $1 messages" >&2; exit 1
}
send() { smtp-source "${reuse[@]}" -s 20 -m "$1" -l 1024 -f a@x.test -t b@y.test "127.0.0.1:$port"; }
send 500; wait_count 500
sleep 1; callgrind_control -z "$relayd_pid" >/dev/null
send "$n"; wait_count $((500 + n))
sleep 1.5; callgrind_control -d "$relayd_pid" >/dev/null; sleep 1
total=$(callgrind_annotate "$dir/cg.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "instructions per message: $((total / n)) ($dir/cg.out.1)"
