#!/usr/bin/env bash
# relayd vs Postfix, in one run, on the same disk. Called by `make bench`.
#
#   tests/bench/bench.sh [--end-to-end] [--rounds N] [--quick] [--no-hold] [--no-latency] [--postfix-only]
#                        [--no-direct]
#
# Default (accept) mode: for each workload, messages/second ACCEPTED from
# smtp-source (wall time around smtp-source, i.e. until the last 250 after DATA):
#   - relayd (durable LMDB spool, group commit);
#   - Postfix relaying to an smtp-sink (relayhost = [127.0.0.1]:SINK), the setup
#     the benchmark contract names; it delivers while it accepts;
#   - Postfix accept-only: every message put on HOLD by smtpd, so it only writes
#     and fsyncs the queue file (the like-for-like comparison while relayd does
#     not deliver yet). --no-hold skips it.
# Then the end-of-DATA -> 250 latency (p50/p99/max) at half of relayd's peak
# 1 KiB rate (latency.py), and relayd's peak RSS (VmHWM).
#
# --end-to-end: also measures messages/second DELIVERED end to end,
# smtp-source -> relayd -> smtp-sink vs smtp-source -> Postfix -> smtp-sink,
# counted at each smtp-sink, plus a 5-recipient workload, and checks that
# relayd's queue ends empty. Needs relayd's delivery engine (issue 3). Both
# servers get the same number of messages here, and "delivered" is
# N / (time from the start of smtp-source until that server's sink has counted
# N messages). CPU per message of relayd and of the whole Postfix instance
# (every process, plus the children master has reaped) is measured over the
# same interval.
#
# Both modes also report the load generator's CPU per message (smtp-source plus
# that server's smtp-sink) and the "CPU-bound ratio" (Postfix CPU + generator
# CPU) / (relayd CPU + generator CPU): with everything on the same CPUs and the
# CPUs busy, that is the most relayd/Postfix can measure, however fast relayd is.
#
# Direct harness rate (both modes; --no-direct skips it): the same smtp-source
# load straight into an smtp-sink of its own (one SMTP hop, no server), timed
# like end to end: N / (start of smtp-source until that sink has counted N),
# and by smtp-source's wall time (what accept mode compares with).
# The sink runs for the whole benchmark and is never stopped with `-M N`: when
# smtp-sink -M N exits at message N, smtp-source takes its "lost connection"
# path, which sleeps a second and halves the figure. A relay does two hops
# (receive, send) on the same CPUs, so about half the direct rate is the limit
# for a relay as lean as smtp-source and smtp-sink; the report prints relayd's
# rate (delivered end to end, accepted in accept mode) and Postfix's as a
# fraction of the direct rate, per workload. Issue 11's goal: relayd delivered
# >= 45 % of direct, with and without -d.
#
# --rounds N: repeat every workload N times (default 1), alternating which
# server goes first, and print each round plus the medians and the median of
# the per-round ratios (the machine is shared: only back-to-back pairs compare).
#
# Environment:
#   RELAYD_BIN, RELAYCTL_BIN  binaries (default: build/release/...)
#   BENCH_DIR                 parent of the scratch directory (default /var/tmp);
#                             relayd's spool and Postfix's queue both live there
#   BENCH_SCALE               multiply every message count (default 1; --quick = 0.1)
#   BENCH_KEEP=1              keep the scratch directory (logs, spools)
#   BENCH_OUT=FILE            also write the result table (markdown) to FILE
#   BENCH_E2E_TIMEOUT         seconds to wait for a sink to count every message (120)
#   BENCH_ROUNDS              same as --rounds
#
# Must run as root (Postfix's master needs it). Loopback only.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/bench/relayd-config.sh
source "$here/relayd-config.sh"
root=$(cd "$here/../.." && pwd)
RELAYD_BIN=${RELAYD_BIN:-$root/build/release/relayd/relayd}
RELAYCTL_BIN=${RELAYCTL_BIN:-$root/build/release/cli/relayctl}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
BENCH_SCALE=${BENCH_SCALE:-1}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

mode=accept hold=1 latency=1 postfix_only=0 direct=1
while (($#)); do
    case $1 in
        --end-to-end) mode=e2e ;;
        --rounds) [[ $# -ge 2 ]] || die "--rounds needs a number"; BENCH_ROUNDS=$2; shift ;;
        --rounds=*) BENCH_ROUNDS=${1#*=} ;;
        --quick) BENCH_SCALE=0.1 ;;
        --no-hold) hold=0 ;;
        --no-latency) latency=0 ;;
        --postfix-only) postfix_only=1 latency=0 ;;
        --no-direct) direct=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $BENCH_ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds: not a positive number: $BENCH_ROUNDS"

[[ $(id -u) == 0 ]] || die "must run as root (the private Postfix instance needs it)"
for t in smtp-source smtp-sink postfix python3; do
    command -v "$t" >/dev/null || die "$t not found (run packaging/install-deps.sh)"
done
if [[ $postfix_only == 0 ]]; then
    [[ -x $RELAYD_BIN ]] || die "relayd binary not found at $RELAYD_BIN (build first, or set RELAYD_BIN; --postfix-only runs without it)"
fi

# ---------------------------------------------------------------- workloads
# name | body bytes | smtp-source flags | relayd count | Postfix count | direct count
# The direct harness runs at tens of thousands of msg/s, so it gets more
# messages: its runs last ~1-3 s instead of a fraction of a second.
if [[ $mode == accept ]]; then
    # Postfix gets fewer messages: at a few hundred msg/s its runs still last
    # >10 s, which is plenty for a steady rate, and the run stays under ~5 minutes.
    workloads=(
        "1 KiB, 20 sessions, new connection per message|1024||20000|5000|30000"
        "1 KiB, 20 sessions, -d (connection reuse)|1024|-d|20000|5000|50000"
        "100 KiB, 20 sessions, -d|102400|-d|2000|1000|10000"
    )
else
    # End to end: the same count for both, so the delivery tail after the last
    # 250 (the backlog still to deliver) weighs the same on both sides.
    workloads=(
        "1 KiB, 20 sessions, new connection per message|1024||6000|6000|30000"
        "1 KiB, 20 sessions, -d (connection reuse)|1024|-d|6000|6000|50000"
        "100 KiB, 20 sessions, -d|102400|-d|1500|1500|10000"
        "1 KiB, 20 sessions, -d, 5 recipients|1024|-d -r 5|4000|4000|30000"
    )
fi
scaled() { python3 -c "import sys; print(max(100, int(float(sys.argv[1]) * float(sys.argv[2]))))" "$1" "$BENCH_SCALE"; }

# ---------------------------------------------------------------- scratch, cleanup
work=$(mktemp -d "$BENCH_DIR/relayd-bench.XXXXXX")
chmod 755 "$work"   # the postfix user must reach its queue under here
fstype=$(stat -f -c %T "$work")
[[ $fstype != tmpfs && $fstype != ramfs ]] || log "WARNING: $work is on $fstype, fsync costs nothing there; set BENCH_DIR to a real disk"

relayd_pid="" sink_pids=()
declare -A sink_pid_of   # port -> smtp-sink pid
cleanup() {
    set +e
    if [[ -n $relayd_pid ]] && kill -0 "$relayd_pid" 2>/dev/null; then
        kill -TERM "$relayd_pid"
        for _ in $(seq 100); do kill -0 "$relayd_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$relayd_pid" 2>/dev/null
    fi
    for d in "$work/pf" "$work/pf-hold"; do
        [[ -d $d ]] && bash "$here/postfix-instance.sh" stop "$d" 2>/dev/null
    done
    for p in "${sink_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# n free loopback TCP ports
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
read -r relayd_port relayd_sink_port pf_port pf_sink_port pf_hold_port direct_sink_port < <(free_ports 6)

wait_port() {  # port, seconds, pid to watch (optional)
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        [[ -n ${3:-} ]] && ! kill -0 "$3" 2>/dev/null && return 1
        sleep 0.1
    done
    return 1
}

# Clock reads and everything between the start of smtp-source and the sink's
# last count fork no interpreter: on a loaded two-CPU box starting python3 (a
# pyenv shim here) took over a second, which once inflated every end-to-end
# time by ~2 s. Times are integer microseconds from EPOCHREALTIME.
now() { echo "$EPOCHREALTIME"; }
now_us() { local t=$EPOCHREALTIME; echo $((10#${t/./})); }
proc_cpu() {  # user+system CPU seconds of a process (all its threads)
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}
# CPU seconds of a whole Postfix instance: every live process carrying its
# MAIL_CONFIG, plus what master has collected from children it reaped.
postfix_cpu() {
    local conf=$1/etc hz pids master
    hz=$(getconf CLK_TCK)
    pids=$(grep -lzxF "MAIL_CONFIG=$conf" /proc/[0-9]*/environ 2>/dev/null | sed 's|/proc/||; s|/environ||')
    master=$(tr -dc 0-9 <"$1/spool/pid/master.pid" 2>/dev/null || true)
    {
        for p in $pids; do cat "/proc/$p/stat" 2>/dev/null; done
    } | awk -v hz="$hz" -v m="$master" '{
        # comm may contain spaces: count fields from the ")".
        s = $0; sub(/^.*\) /, "", s); split(s, f, " ")
        t += f[12] + f[13]; if ($1 == m) t += f[14] + f[15]
    } END { print t / hz }'
}
# Nanoseconds relayd's threads spent waiting in the run queue for a CPU
# (/proc/PID/task/*/schedstat, 2nd field). On a loaded box this, not CPU time,
# is what limits a pipeline of two threads (I/O thread -> spool writer).
relayd_runq_ns() { cat /proc/"$relayd_pid"/task/*/schedstat 2>/dev/null | awk '{t += $2} END {printf "%.0f\n", t}'; }
calc() { python3 -c "print($1)"; }
# CPU milliseconds of the children this shell has reaped, into children_ms.
# Builtins only (`times`, a redirection, `read`): a subshell or a command run
# here would count itself. run_source uses it around smtp-source.
children_cpu_ms() {
    local line
    times >"$work/times"
    { read -r _; read -r line; } <"$work/times"
    if [[ $line =~ ^([0-9]+)m([0-9]+)\.([0-9]{3})s\ ([0-9]+)m([0-9]+)\.([0-9]{3})s$ ]]; then
        children_ms=$(((BASH_REMATCH[1] + BASH_REMATCH[4]) * 60000 +
            (BASH_REMATCH[2] + BASH_REMATCH[5]) * 1000 + 10#${BASH_REMATCH[3]} + 10#${BASH_REMATCH[6]}))
    else
        children_ms=0
    fi
}

# smtp-sink with a running counter in $work/sink-PORT.log ("sess=N quit=N mesg=N\r").
start_sink() {
    local port=$1
    smtp-sink -c -u nobody "127.0.0.1:$port" 1024 >"$work/sink-$port.log" 2>&1 &
    sink_pids+=($!)
    sink_pid_of[$port]=$!
    wait_port "$port" 5 || die "smtp-sink did not start on $port"
}
sink_count() {  # the last counter smtp-sink wrote (it updates it on every "."/QUIT)
    local t
    t=$(tail -c 200 "$work/sink-$1.log" 2>/dev/null)
    if [[ $t =~ .*mesg=([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; else echo 0; fi
}
# Wait until the sink on port $1 has counted $2 messages; sets sink_us to the
# time then (microseconds), or "timeout".
wait_sink() {
    local port=$1 target=$2 limit=${3:-300} start=${EPOCHREALTIME%.*}
    while (($(sink_count "$port") < target)); do
        if ((${EPOCHREALTIME%.*} - start > limit)); then
            sink_us=timeout
            return 0
        fi
        sleep 0.01
    done
    sink_us=$(now_us)
}

# Run smtp-source; sets src_t0 (start, microseconds), src_us (elapsed
# microseconds, or "fail"; its stderr goes to the log) and src_cpu_ms (its CPU).
SRC_ARGS=(-M bench.localdomain -f sender@example.org -t rcpt@example.com)
run_source() {  # port count size flags
    local port=$1 count=$2 size=$3 flags=$4
    # A stray 250 race is not possible: smtp-source exits non-zero on any
    # reply it does not expect, which we report as a failure.
    local before
    src_t0=$(now_us)
    children_cpu_ms
    before=$children_ms
    # shellcheck disable=SC2086
    if ! smtp-source $flags -s 20 -m "$count" -l "$size" "${SRC_ARGS[@]}" \
            "127.0.0.1:$port" >>"$work/smtp-source.log" 2>&1; then
        src_us=fail
        return 0
    fi
    children_cpu_ms
    src_cpu_ms=$((children_ms - before))
    src_us=$(($(now_us) - src_t0))
}

# Before every measurement: both servers have delivered their backlog (it
# would otherwise steal CPU from whoever is measured next), dirty pages are
# written back, and the machine has a breath.
settle() { postfix_drain "$work/pf"; relayd_drain; sync; sleep 1; }

# Postfix: wait for its queue to drain so a backlog from one workload does not
# eat CPU in the next one.
postfix_drain() {
    local d=$1/spool i
    for ((i = 0; i < 1200; i++)); do
        [[ -z $(find "$d/incoming" "$d/active" "$d/deferred" -type f -print -quit 2>/dev/null) ]] && return 0
        sleep 0.1
    done
    log "WARNING: Postfix queue in $1 did not drain within 120 s"
}
# relayd (end to end only; in accept mode its spool only grows): queue empty.
relayd_drain() {
    [[ $mode == e2e && $postfix_only == 0 && $relayd_delivers == 1 && -x $RELAYCTL_BIN ]] || return 0
    local i n
    for ((i = 0; i < 600; i++)); do
        n=$("$RELAYCTL_BIN" -S "$work/relayd/control.sock" -j 2>/dev/null | wc -l) || n=1
        ((n == 0)) && return 0
        sleep 0.2
    done
    log "WARNING: relayd's queue did not drain within 120 s ($n left)"
}

vmhwm() { awk '/^VmHWM/ {print $2, $3}' "/proc/$relayd_pid/status" 2>/dev/null || echo "?"; }
# VmHWM counts the LMDB map pages relayd has touched (file-backed, page cache);
# RssAnon is relayd's own heap and stacks.
rss_detail() { awk '/^(VmHWM|VmRSS|RssAnon|RssFile)/ {printf "%s %s %s, ", $1, $2, $3}' "/proc/$relayd_pid/status" 2>/dev/null | sed 's/, $//'; }

# ---------------------------------------------------------------- start everything
log "scratch directory $work ($fstype on $(df --output=source "$work" | tail -n 1))"
start_sink "$pf_sink_port"
start_sink "$relayd_sink_port"
[[ $direct == 0 ]] || start_sink "$direct_sink_port"

bash "$here/postfix-instance.sh" start "$work/pf" "$pf_port" "$pf_sink_port" >&2
if [[ $hold == 1 && $mode == accept ]]; then
    POSTFIX_EXTRA_MAIN="smtpd_recipient_restrictions = check_client_access static:HOLD" \
        bash "$here/postfix-instance.sh" start "$work/pf-hold" "$pf_hold_port" "$pf_sink_port" >&2
else
    hold=0
fi

if [[ $postfix_only == 0 ]]; then
    mkdir -p "$work/relayd"
    bench_relayd_config "$work/relayd" "$relayd_port" "$relayd_sink_port" >"$work/relayd/relayd.toml"
    "$RELAYD_BIN" --config "$work/relayd/relayd.toml" >"$work/relayd/relayd.log" 2>&1 &
    relayd_pid=$!
    if ! wait_port "$relayd_port" 15 "$relayd_pid"; then
        tail -n 20 "$work/relayd/relayd.log" >&2
        die "relayd did not start listening on 127.0.0.1:$relayd_port"
    fi
    log "relayd pid $relayd_pid on 127.0.0.1:$relayd_port"
fi

# Warm up each server (process pools, page cache, LMDB map) outside the clock.
warm() { smtp-source -d -s 20 -m 200 -l 1024 "${SRC_ARGS[@]}" "127.0.0.1:$1" >>"$work/smtp-source.log" 2>&1 || log "WARNING: warm-up against port $1 failed"; }
[[ $postfix_only == 1 ]] || warm "$relayd_port"
warm "$pf_port"
[[ $hold == 0 ]] || warm "$pf_hold_port"

# ---------------------------------------------------------------- measure
rate() {  # count, elapsed microseconds -> msg/s, rounded
    [[ $2 =~ ^[0-9]+$ ]] || { echo "$2"; return; }
    ((${2} > 0)) || { echo "-"; return; }
    echo $(((${1} * 10000000 / ${2} + 5) / 10))
}

relayd_delivers=1
E2E_TIMEOUT=${BENCH_E2E_TIMEOUT:-120}
peak_1k=0
results=$work/results.tsv   # round, workload index, server, accepted, delivered, CPU us/msg, VmHWM, generator CPU us/msg
: >"$results"

measure_relayd() {  # round index name size flags count
    local round=$1 wi=$2 name=$3 size=$4 flags=$5 n=$6 base cpu0 sink0 rq0 acc="-" e2e="-" cpu_us gen_us rq_us rss
    settle
    base=$(sink_count "$relayd_sink_port")
    cpu0=$(proc_cpu "$relayd_pid")
    sink0=$(proc_cpu "${sink_pid_of[$relayd_sink_port]}")
    rq0=$(relayd_runq_ns)
    run_source "$relayd_port" "$n" "$size" "$flags"
    if [[ $mode == e2e && $src_us != fail && $relayd_delivers == 1 ]]; then
        wait_sink "$relayd_sink_port" $((base + n)) "$E2E_TIMEOUT"
        if [[ $sink_us == timeout ]]; then
            e2e="timeout($(($(sink_count "$relayd_sink_port") - base))/$n)"
            relayd_delivers=0   # do not wait again in the next workloads
            log "relayd did not deliver everything within ${E2E_TIMEOUT}s; skipping its delivery measurements"
        else
            e2e=$(rate "$n" $((sink_us - src_t0)))
        fi
    fi
    acc=$(rate "$n" "$src_us")
    cpu_us=$(calc "round(($(proc_cpu "$relayd_pid") - $cpu0) * 1e6 / $n)")
    gen_us=$(calc "round(($src_cpu_ms / 1e3 + $(proc_cpu "${sink_pid_of[$relayd_sink_port]}") - $sink0) * 1e6 / $n)")
    rq_us=$((($(relayd_runq_ns) - rq0) / 1000 / n))
    rss=$(vmhwm)
    if [[ $size == 1024 && $acc =~ ^[0-9]+$ && $acc -gt $peak_1k ]]; then peak_1k=$acc; fi
    log "round $round | relayd   | $name | $n msgs | accepted $acc msg/s | delivered $e2e msg/s | VmHWM $rss | CPU ${cpu_us} us/msg, waiting for a CPU ${rq_us} us/msg | generator CPU ${gen_us} us/msg | load $(cut -d' ' -f1 /proc/loadavg)"
    printf '%s\t%s\trelayd\t%s\t%s\t%s\t%s\t%s\n' "$round" "$wi" "$acc" "$e2e" "$cpu_us" "$rss" "$gen_us" >>"$results"
}

measure_postfix() {  # round index name size flags count
    local round=$1 wi=$2 name=$3 size=$4 flags=$5 n=$6 base cpu0 sink0 acc e2e="-" cpu_us gen_us
    settle
    base=$(sink_count "$pf_sink_port")
    cpu0=$(postfix_cpu "$work/pf")
    sink0=$(proc_cpu "${sink_pid_of[$pf_sink_port]}")
    run_source "$pf_port" "$n" "$size" "$flags"
    if [[ $mode == e2e && $src_us != fail ]]; then
        wait_sink "$pf_sink_port" $((base + n)) "$E2E_TIMEOUT"
        if [[ $sink_us == timeout ]]; then
            e2e="timeout($(($(sink_count "$pf_sink_port") - base))/$n)"
        else
            e2e=$(rate "$n" $((sink_us - src_t0)))
        fi
    fi
    acc=$(rate "$n" "$src_us")
    cpu_us=$(calc "round(($(postfix_cpu "$work/pf") - $cpu0) * 1e6 / $n)")
    gen_us=$(calc "round(($src_cpu_ms / 1e3 + $(proc_cpu "${sink_pid_of[$pf_sink_port]}") - $sink0) * 1e6 / $n)")
    log "round $round | postfix  | $name | $n msgs | accepted $acc msg/s | delivered $e2e msg/s | CPU ${cpu_us} us/msg (whole instance) | generator CPU ${gen_us} us/msg | load $(cut -d' ' -f1 /proc/loadavg)"
    printf '%s\t%s\tpostfix\t%s\t%s\t%s\t-\t%s\n' "$round" "$wi" "$acc" "$e2e" "$cpu_us" "$gen_us" >>"$results"

    if [[ $hold == 1 ]]; then
        settle
        run_source "$pf_hold_port" "$n" "$size" "$flags"
        acc=$(rate "$n" "$src_us")
        log "round $round | pf-hold  | $name | $n msgs | accepted $acc msg/s"
        printf '%s\t%s\tpf-hold\t%s\t-\t-\t-\t-\n' "$round" "$wi" "$acc" >>"$results"
    fi
}

# The direct harness: smtp-source -> its own smtp-sink (never stopped with -M,
# see the top), timed to the sink's count like end to end. No server CPU; the
# generator CPU is smtp-source's plus that sink's.
measure_direct() {  # round index name size flags count
    local round=$1 wi=$2 name=$3 size=$4 flags=$5 n=$6 base sink0 acc e2e gen_us
    settle
    base=$(sink_count "$direct_sink_port")
    sink0=$(proc_cpu "${sink_pid_of[$direct_sink_port]}")
    run_source "$direct_sink_port" "$n" "$size" "$flags"
    if [[ $src_us == fail ]]; then
        e2e=fail gen_us="-"
    else
        wait_sink "$direct_sink_port" $((base + n)) "$E2E_TIMEOUT"
        if [[ $sink_us == timeout ]]; then
            e2e="timeout($(($(sink_count "$direct_sink_port") - base))/$n)"
        else
            e2e=$(rate "$n" $((sink_us - src_t0)))
        fi
        gen_us=$(calc "round(($src_cpu_ms / 1e3 + $(proc_cpu "${sink_pid_of[$direct_sink_port]}") - $sink0) * 1e6 / $n)")
    fi
    acc=$(rate "$n" "$src_us")
    log "round $round | direct   | $name | $n msgs | smtp-source -> smtp-sink $e2e msg/s (smtp-source wall time: $acc msg/s) | generator CPU ${gen_us} us/msg | load $(cut -d' ' -f1 /proc/loadavg)"
    printf '%s\t%s\tdirect\t%s\t%s\t-\t-\t%s\n' "$round" "$wi" "$acc" "$e2e" "$gen_us" >>"$results"
}

for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    for wi in "${!workloads[@]}"; do
        IFS='|' read -r name size flags n_relayd n_pf n_direct <<<"${workloads[$wi]}"
        n_relayd=$(scaled "$n_relayd"); n_pf=$(scaled "$n_pf"); n_direct=$(scaled "$n_direct")
        # Alternate who goes first, so a drift in the machine's load does not
        # always favour the same server. The direct harness runs next to
        # relayd in every round (relayd, direct, Postfix / Postfix, direct, relayd).
        if ((round % 2 == 0)); then
            measure_postfix "$round" "$wi" "$name" "$size" "$flags" "$n_pf"
            [[ $direct == 0 ]] || measure_direct "$round" "$wi" "$name" "$size" "$flags" "$n_direct"
            [[ $postfix_only == 1 ]] || measure_relayd "$round" "$wi" "$name" "$size" "$flags" "$n_relayd"
        else
            [[ $postfix_only == 1 ]] || measure_relayd "$round" "$wi" "$name" "$size" "$flags" "$n_relayd"
            [[ $direct == 0 ]] || measure_direct "$round" "$wi" "$name" "$size" "$flags" "$n_direct"
            measure_postfix "$round" "$wi" "$name" "$size" "$flags" "$n_pf"
        fi
    done
done

# Latency at half of relayd's peak 1 KiB acceptance rate.
lat_line="-" floor_line="-"
if [[ $latency == 1 && $peak_1k -gt 0 ]]; then
    settle
    target=$((peak_1k / 2))
    procs=1; ((target > 4500)) && procs=2  # one process is cheaper and jitters less; it tops out near 4500 msg/s
    log "latency: $target msg/s (half of relayd's peak $peak_1k msg/s), 20 connections, 10 s"
    if lat_line=$(python3 "$here/latency.py" --port "$relayd_port" --rate "$target" \
            --duration 10 --conns 20 --procs "$procs" 2>>"$work/latency.log"); then :; else
        lat_line="$lat_line (errors, see latency.log)"
    fi
    # The same load against smtp-sink (no disk, trivial server): the floor that
    # the generator and the machine themselves put under any measured latency.
    settle
    if floor_line=$(python3 "$here/latency.py" --port "$relayd_sink_port" --rate "$target" \
            --duration 10 --conns 20 --procs "$procs" 2>>"$work/latency.log"); then :; else
        floor_line="$floor_line (errors, see latency.log)"
    fi
fi

rss_final="-" spool_du=""
spool_line="-"
if [[ $postfix_only == 0 ]]; then
    rss_final=$(rss_detail)
    spool_du=$(du -sh "$work/relayd/spool" 2>/dev/null | cut -f1)
    if [[ -x $RELAYCTL_BIN ]]; then
        t0=$(now)
        if n=$("$RELAYCTL_BIN" -S "$work/relayd/control.sock" -j 2>/dev/null | wc -l); then
            spool_line="$n messages in relayd's spool at the end (relayctl -j took $(calc "round($(now) - $t0, 2)") s)"
        fi
    fi
    kill -0 "$relayd_pid" 2>/dev/null || log "WARNING: relayd exited during the run; see its log"
fi

# ---------------------------------------------------------------- report
{
    echo
    echo "## relayd vs Postfix ($mode mode), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, scratch on $fstype, $BENCH_ROUNDS round(s), load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    python3 - "$results" "$mode" "${workloads[@]}" <<'EOF'
import statistics, sys
path, mode, workloads = sys.argv[1], sys.argv[2], [w.split("|")[0] for w in sys.argv[3:]]
rows = {}  # (round, wi, server) -> (acc, e2e, cpu, rss, generator cpu)
for line in open(path):
    r, wi, srv, acc, e2e, cpu, rss, gen = line.rstrip("\n").split("\t")
    rows[(int(r), int(wi), srv)] = (acc, e2e, cpu, rss, gen)
rounds = sorted({k[0] for k in rows})

def num(s):
    try:
        return float(s)
    except ValueError:
        return None

def ratio(a, b):
    a, b = num(a), num(b)
    return a / b if a is not None and b else None

def fmt_ratio(x):
    return "-" if x is None else f"{x:.1f}x"

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

def fmt_med(x):
    return "-" if x is None else f"{round(x):,}"

# The ratio the CPU alone allows: with the server and the load generator
# sharing the machine and the CPUs kept busy, msg/s is CPUs / (server CPU +
# generator CPU per message), so relayd/Postfix can reach at most this.
def cpu_bound(r, wi):
    rr, pp = rows.get((r, wi, "relayd"), empty), rows.get((r, wi, "postfix"), empty)
    vals = [num(rr[2]), num(rr[4]), num(pp[2]), num(pp[4])]
    if None in vals or vals[0] + vals[1] <= 0:
        return None
    return (vals[2] + vals[3]) / (vals[0] + vals[1])

def fmt_range(vals):
    vals = [v for v in vals if v is not None]
    return f" ({min(vals):.1f}-{max(vals):.1f})" if len(vals) > 1 else ""

empty = ("-", "-", "-", "-", "-")
if mode == "e2e":
    print("| round | workload | relayd accepted msg/s | Postfix accepted msg/s | ratio | relayd delivered msg/s | Postfix delivered msg/s | ratio | CPU us/msg relayd / Postfix | generator CPU us/msg | CPU-bound ratio | relayd VmHWM |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rounds:
        for wi, name in enumerate(workloads):
            ra, re, rc, rss, rg = rows.get((r, wi, "relayd"), empty)
            pa, pe, pc, _, pg = rows.get((r, wi, "postfix"), empty)
            print(f"| {r} | {name} | {ra} | {pa} | {fmt_ratio(ratio(ra, pa))} | {re} | {pe} | {fmt_ratio(ratio(re, pe))} | {rc} / {pc} | {rg} / {pg} | {fmt_ratio(cpu_bound(r, wi))} | {rss} |")
    if len(rounds) > 1:
        print()
        print("Medians over the rounds; ratio = median of the per-round ratios (min-max):")
        print()
        print("| workload | relayd accepted msg/s | Postfix accepted msg/s | ratio | relayd delivered msg/s | Postfix delivered msg/s | ratio | CPU us/msg relayd / Postfix | CPU-bound ratio |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for wi, name in enumerate(workloads):
            get = lambda srv, i: [num(rows.get((r, wi, srv), empty)[i]) for r in rounds]
            acc_r = [ratio(rows.get((r, wi, "relayd"), empty)[0], rows.get((r, wi, "postfix"), empty)[0]) for r in rounds]
            e2e_r = [ratio(rows.get((r, wi, "relayd"), empty)[1], rows.get((r, wi, "postfix"), empty)[1]) for r in rounds]
            print(f"| {name} | {fmt_med(med(get('relayd', 0)))} | {fmt_med(med(get('postfix', 0)))} | "
                  f"**{fmt_ratio(med(acc_r))}**{fmt_range(acc_r)} | {fmt_med(med(get('relayd', 1)))} | "
                  f"{fmt_med(med(get('postfix', 1)))} | **{fmt_ratio(med(e2e_r))}**{fmt_range(e2e_r)} | "
                  f"{fmt_med(med(get('relayd', 2)))} / {fmt_med(med(get('postfix', 2)))} | "
                  f"{fmt_ratio(med([cpu_bound(r, wi) for r in rounds]))} |")
else:
    print("| round | workload | relayd msg/s | Postfix msg/s (relaying to smtp-sink) | relayd/Postfix | Postfix accept-only msg/s (HOLD) | relayd/accept-only | CPU us/msg relayd / Postfix | generator CPU us/msg | CPU-bound ratio | relayd VmHWM after |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rounds:
        for wi, name in enumerate(workloads):
            ra, _, rc, rss, rg = rows.get((r, wi, "relayd"), empty)
            pa, _, pc, _, pg = rows.get((r, wi, "postfix"), empty)
            ha = rows.get((r, wi, "pf-hold"), empty)[0]
            print(f"| {r} | {name} | {ra} | {pa} | {fmt_ratio(ratio(ra, pa))} | {ha} | {fmt_ratio(ratio(ra, ha))} | {rc} / {pc} | {rg} / {pg} | {fmt_ratio(cpu_bound(r, wi))} | {rss} |")
    if len(rounds) > 1:
        print()
        print("Medians over the rounds; ratio = median of the per-round ratios (min-max):")
        print()
        print("| workload | relayd msg/s | Postfix msg/s | relayd/Postfix | accept-only msg/s | relayd/accept-only | CPU-bound ratio |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for wi, name in enumerate(workloads):
            get = lambda srv: [num(rows.get((r, wi, srv), empty)[0]) for r in rounds]
            pr = [ratio(rows.get((r, wi, "relayd"), empty)[0], rows.get((r, wi, "postfix"), empty)[0]) for r in rounds]
            hr = [ratio(rows.get((r, wi, "relayd"), empty)[0], rows.get((r, wi, "pf-hold"), empty)[0]) for r in rounds]
            print(f"| {name} | {fmt_med(med(get('relayd')))} | {fmt_med(med(get('postfix')))} | **{fmt_ratio(med(pr))}**{fmt_range(pr)} | "
                  f"{fmt_med(med(get('pf-hold')))} | {fmt_ratio(med(hr))}{fmt_range(hr)} | "
                  f"{fmt_ratio(med([cpu_bound(r, wi) for r in rounds]))} |")

# The direct harness: one hop, the same load straight into an smtp-sink.
if any(k[2] == "direct" for k in rows):
    # End to end: relayd/Postfix delivered vs the direct rate timed to the sink's
    # count (the same clock). Accept mode: accepted (smtp-source's wall time) vs
    # the direct smtp-source wall time.
    col = 1 if mode == "e2e" else 0
    what = "delivered end to end" if mode == "e2e" else "accepted (one hop, durable)"
    def pct(x):
        return "-" if x is None else f"{100 * x:.0f} %"
    def frac(r, wi, srv):
        return ratio(rows.get((r, wi, srv), empty)[col], rows.get((r, wi, "direct"), empty)[col])
    print()
    print(f"Direct harness: smtp-source -> smtp-sink (one SMTP hop, the sink never stopped by -M), timed to the sink's count "
          f"and by smtp-source's wall time. relayd and Postfix {what} as a fraction of it "
          f"({'sink-timed, like delivered' if col == 1 else 'wall time, like accepted'}); a relay does two hops on the same CPUs, so ~50 % is the limit "
          f"for one as lean as the harness (issue 11's goal: relayd >= 45 % end to end, with and without -d).")
    print()
    print("| round | workload | direct msg/s | direct, smtp-source wall time msg/s | generator CPU us/msg (direct) | relayd msg/s | relayd / direct | Postfix msg/s | Postfix / direct |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rounds:
        for wi, name in enumerate(workloads):
            da, de, _, _, dg = rows.get((r, wi, "direct"), empty)
            rv = rows.get((r, wi, "relayd"), empty)[col]
            pv = rows.get((r, wi, "postfix"), empty)[col]
            print(f"| {r} | {name} | {de} | {da} | {dg} | {rv} | {pct(frac(r, wi, 'relayd'))} | {pv} | {pct(frac(r, wi, 'postfix'))} |")
    if len(rounds) > 1:
        def pct_range(vals):
            vals = [v for v in vals if v is not None]
            return f" ({100 * min(vals):.0f}-{100 * max(vals):.0f} %)" if len(vals) > 1 else ""
        print()
        print("Medians over the rounds; fraction = median of the per-round fractions (min-max):")
        print()
        print("| workload | direct msg/s | relayd msg/s | relayd / direct | Postfix / direct |")
        print("|---|---:|---:|---:|---:|")
        for wi, name in enumerate(workloads):
            rf = [frac(r, wi, "relayd") for r in rounds]
            pf = [frac(r, wi, "postfix") for r in rounds]
            dm = med([num(rows.get((r, wi, "direct"), empty)[col]) for r in rounds])
            rm = med([num(rows.get((r, wi, "relayd"), empty)[col]) for r in rounds])
            print(f"| {name} | {fmt_med(dm)} | {fmt_med(rm)} | **{pct(med(rf))}**{pct_range(rf)} | {pct(med(pf))}{pct_range(pf)} |")
EOF
    echo
    echo "- relayd memory at the end: $rss_final; spool on disk: ${spool_du:-?}"
    if [[ $latency == 1 ]]; then
        echo "- latency, end of DATA -> 250, at half of relayd's peak 1 KiB rate ($peak_1k msg/s):"
        echo "  relayd:    $(echo "$lat_line" | tr '\n' ' ')"
        echo "  smtp-sink: $(echo "$floor_line" | tr '\n' ' ') (same load; generator + machine floor)"
    fi
    echo "- $spool_line"
} | tee ${BENCH_OUT:+"$BENCH_OUT"}
