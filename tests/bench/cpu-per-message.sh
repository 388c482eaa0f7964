#!/usr/bin/env bash
# relayd's CPU time per message end to end (smtp-source -> relayd -> smtp-sink),
# read from /proc/PID/stat around one smtp-source run: a quick A/B check of two
# builds on the same machine (run each a few times; the machine is shared).
#
#   tests/bench/cpu-per-message.sh RELAYD_BIN [MESSAGES] [new|d|local] [SIZE_BYTES]
#
# new / d: smtp-source with a new connection per message / with -d (20 sessions).
# local: one `sendmail -f ... rcpt < message` per message over relayd's [local]
# socket, 16 at once, started by tests/bench/sendmail-driver.c (compiled here;
# SENDMAIL_BIN, default build/release/cli/sendmail).
# Prints "MODE cpu_us_per_msg=N ctxsw_per_msg=C rate=R/s": C = relayd's context
# switches (voluntary + involuntary, all threads, /proc/PID/task/*/status) per
# message. Needs root (smtp-sink -u nobody), smtp-source and smtp-sink
# (postfix), loopback only.
set -euo pipefail
bin=${1:?usage: cpu-per-message.sh RELAYD_BIN [MESSAGES] [new|d]}
n=${2:-20000}
mode=${3:-new}
size=${4:-1024}
here=$(dirname "$(readlink -f "$0")")
relayctl=${RELAYCTL_BIN:-$here/../../build/release/cli/relayctl}
sendmail=${SENDMAIL_BIN:-$here/../../build/release/cli/sendmail}
source "$here/relayd-config.sh"
dir=$(mktemp -d /var/tmp/relayd-cpu.XXXXXX)
smtp_port=$((20000 + RANDOM % 20000)); sink_port=$((smtp_port + 1))
cleanup() { kill "${relayd_pid:-}" "${sink_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
smtp-sink -u nobody "127.0.0.1:$sink_port" 1024 >/dev/null 2>&1 & sink_pid=$!
bench_relayd_config "$dir" "$smtp_port" "$sink_port" >"$dir/relayd.toml"
"$bin" --config "$dir/relayd.toml" 2>"$dir/relayd.log" & relayd_pid=$!
sleep 0.5
reuse=(); [[ $mode == d ]] && reuse=(-d)
if [[ $mode == local ]]; then
    cc -O2 -o "$dir/driver" "$here/sendmail-driver.c"
    { printf 'From: a@x.test\nTo: b@y.test\nSubject: bench\n\n'; head -c "$size" /dev/zero | tr '\0' x | fold -w 75; echo; } >"$dir/message"
fi
cpu() { awk '{print $14 + $15}' "/proc/$relayd_pid/stat"; }
ctxsw() { cat /proc/$relayd_pid/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
c0=$(cpu); x0=$(ctxsw); t0=$(date +%s.%N)
if [[ $mode == local ]]; then
    "$dir/driver" "$n" 16 "$dir/message" "$sendmail" -C "$dir/relayd.toml"
else
    smtp-source -c -s 20 "${reuse[@]}" -m "$n" -l "$size" -f a@x.test -t b@y.test "127.0.0.1:$smtp_port" >/dev/null 2>&1
fi
for _ in $(seq 1 600); do  # until the queue is empty (delivered)
    [[ $("$relayctl" -S "$dir/control.sock" -j 2>/dev/null | wc -l) == 0 ]] && break
    sleep 0.1
done
c1=$(cpu); x1=$(ctxsw); t1=$(date +%s.%N)
python3 -c "print(f'$mode cpu_us_per_msg={($c1 - $c0) / $(getconf CLK_TCK) * 1e6 / $n:.0f} ctxsw_per_msg={($x1 - $x0) / $n:.2f} rate={$n / ($t1 - $t0):.0f}/s')"
