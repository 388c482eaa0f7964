#!/usr/bin/env bash
# relayd vs Postfix, in one run, on the same disk. Called by `make bench`.
#
#   tests/bench/bench.sh [--end-to-end] [--quick] [--no-hold] [--no-latency] [--postfix-only]
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
# relayd's queue ends empty. Needs relayd's delivery engine (issue 3).
#
# Environment:
#   RELAYD_BIN, RELAYCTL_BIN  binaries (default: build/release/...)
#   BENCH_DIR                 parent of the scratch directory (default /var/tmp);
#                             relayd's spool and Postfix's queue both live there
#   BENCH_SCALE               multiply every message count (default 1; --quick = 0.1)
#   BENCH_KEEP=1              keep the scratch directory (logs, spools)
#   BENCH_OUT=FILE            also write the result table (markdown) to FILE
#   BENCH_E2E_TIMEOUT         seconds to wait for a sink to count every message (120)
#
# Must run as root (Postfix's master needs it). Loopback only.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
RELAYD_BIN=${RELAYD_BIN:-$root/build/release/relayd/relayd}
RELAYCTL_BIN=${RELAYCTL_BIN:-$root/build/release/cli/relayctl}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
BENCH_SCALE=${BENCH_SCALE:-1}

mode=accept hold=1 latency=1 postfix_only=0
for a in "$@"; do
    case $a in
        --end-to-end) mode=e2e ;;
        --quick) BENCH_SCALE=0.1 ;;
        --no-hold) hold=0 ;;
        --no-latency) latency=0 ;;
        --postfix-only) postfix_only=1 latency=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench: unknown argument $a" >&2; exit 2 ;;
    esac
done

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

[[ $(id -u) == 0 ]] || die "must run as root (the private Postfix instance needs it)"
for t in smtp-source smtp-sink postfix python3; do
    command -v "$t" >/dev/null || die "$t not found (run packaging/install-deps.sh)"
done
if [[ $postfix_only == 0 ]]; then
    [[ -x $RELAYD_BIN ]] || die "relayd binary not found at $RELAYD_BIN (build first, or set RELAYD_BIN; --postfix-only runs without it)"
fi

# ---------------------------------------------------------------- workloads
# name | body bytes | smtp-source flags | relayd count | Postfix count
# Postfix gets fewer messages: at a few hundred msg/s its runs still last >10 s,
# which is plenty for a steady rate, and the whole run stays under ~5 minutes.
workloads=(
    "1 KiB, 20 sessions, new connection per message|1024||20000|5000"
    "1 KiB, 20 sessions, -d (connection reuse)|1024|-d|20000|5000"
    "100 KiB, 20 sessions, -d|102400|-d|2000|1000"
)
if [[ $mode == e2e ]]; then
    workloads+=("1 KiB, 20 sessions, -d, 5 recipients|1024|-d -r 5|20000|5000")
fi
scaled() { python3 -c "import sys; print(max(100, int(float(sys.argv[1]) * float(sys.argv[2]))))" "$1" "$BENCH_SCALE"; }

# ---------------------------------------------------------------- scratch, cleanup
work=$(mktemp -d "$BENCH_DIR/relayd-bench.XXXXXX")
chmod 755 "$work"   # the postfix user must reach its queue under here
fstype=$(stat -f -c %T "$work")
[[ $fstype != tmpfs && $fstype != ramfs ]] || log "WARNING: $work is on $fstype, fsync costs nothing there; set BENCH_DIR to a real disk"

relayd_pid="" sink_pids=()
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
read -r relayd_port relayd_sink_port pf_port pf_sink_port pf_hold_port < <(free_ports 5)

wait_port() {  # port, seconds, pid to watch (optional)
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        [[ -n ${3:-} ]] && ! kill -0 "$3" 2>/dev/null && return 1
        sleep 0.1
    done
    return 1
}

now() { date +%s.%N; }
proc_cpu() {  # user+system CPU seconds of a process
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}
calc() { python3 -c "print($1)"; }

# smtp-sink with a running counter in $work/sink-PORT.log ("sess=N quit=N mesg=N\r").
start_sink() {
    local port=$1
    smtp-sink -c -u nobody "127.0.0.1:$port" 1024 >"$work/sink-$port.log" 2>&1 &
    sink_pids+=($!)
    wait_port "$port" 5 || die "smtp-sink did not start on $port"
}
sink_count() {
    local n
    n=$(tr '\r' '\n' <"$work/sink-$1.log" | grep -o 'mesg=[0-9]*' | tail -n 1 | cut -d= -f2)
    echo "${n:-0}"
}
# Wait until the sink on port $1 has counted $2 messages; print the time then.
wait_sink() {
    local port=$1 target=$2 deadline
    deadline=$(calc "$(now) + ${3:-300}")
    while (($(sink_count "$port") < target)); do
        if [[ $(calc "$(now) > $deadline") == True ]]; then
            echo "timeout"
            return 1
        fi
        sleep 0.05
    done
    now
}

# Run smtp-source; print elapsed seconds, or "fail" (its stderr goes to the log).
SRC_ARGS=(-M bench.localdomain -f sender@example.org -t rcpt@example.com)
run_source() {  # port count size flags
    local port=$1 count=$2 size=$3 flags=$4 t0 t1
    # A stray 250 race is not possible: smtp-source exits non-zero on any
    # reply it does not expect, which we report as a failure.
    t0=$(now)
    # shellcheck disable=SC2086
    if ! smtp-source $flags -s 20 -m "$count" -l "$size" "${SRC_ARGS[@]}" \
            "127.0.0.1:$port" >>"$work/smtp-source.log" 2>&1; then
        echo fail
        return 0
    fi
    t1=$(now)
    calc "$t1 - $t0"
}

# Before every measurement: Postfix's relaying instance has delivered its
# backlog (it would otherwise steal CPU from whoever is measured next), dirty
# pages are written back, and the machine has a breath.
settle() { postfix_drain "$work/pf"; sync; sleep 1; }

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

vmhwm() { awk '/^VmHWM/ {print $2, $3}' "/proc/$relayd_pid/status" 2>/dev/null || echo "?"; }
# VmHWM counts the LMDB map pages relayd has touched (file-backed, page cache);
# RssAnon is relayd's own heap and stacks.
rss_detail() { awk '/^(VmHWM|VmRSS|RssAnon|RssFile)/ {printf "%s %s %s, ", $1, $2, $3}' "/proc/$relayd_pid/status" 2>/dev/null | sed 's/, $//'; }

# ---------------------------------------------------------------- start everything
log "scratch directory $work ($fstype on $(df --output=source "$work" | tail -n 1))"
start_sink "$pf_sink_port"
start_sink "$relayd_sink_port"

bash "$here/postfix-instance.sh" start "$work/pf" "$pf_port" "$pf_sink_port" >&2
if [[ $hold == 1 && $mode == accept ]]; then
    POSTFIX_EXTRA_MAIN="smtpd_recipient_restrictions = check_client_access static:HOLD" \
        bash "$here/postfix-instance.sh" start "$work/pf-hold" "$pf_hold_port" "$pf_sink_port" >&2
else
    hold=0
fi

if [[ $postfix_only == 0 ]]; then
    mkdir -p "$work/relayd"
    cat >"$work/relayd/relayd.toml" <<EOF
hostname = "relayd-bench.localdomain"
spool    = "$work/relayd/spool"

[smtp]
listen     = ["127.0.0.1:$relayd_port"]
mynetworks = ["127.0.0.0/8"]
max_connections = 1000
max_connections_per_client = 1000

[delivery]
relayhost = "[127.0.0.1]:$relayd_sink_port"
tls = "none"

[queue]
min_free_disk = "100M"

[control]
socket = "$work/relayd/control.sock"

[metrics]
listen = ""
EOF
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
rate() {  # count elapsed
    [[ $2 == fail || $2 == timeout ]] && { echo "$2"; return; }
    calc "round($1 / $2)"
}
ratio() {
    [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ && $2 != 0 ]] || { echo "-"; return; }
    calc "f'{$1 / $2:.1f}x'"
}

declare -a rows
relayd_delivers=1
E2E_TIMEOUT=${BENCH_E2E_TIMEOUT:-120}
peak_1k=0
accepted_relayd=0
for w in "${workloads[@]}"; do
    IFS='|' read -r name size flags n_relayd n_pf <<<"$w"
    n_relayd=$(scaled "$n_relayd"); n_pf=$(scaled "$n_pf")

    r_acc="-" r_e2e="-" rss="-"
    if [[ $postfix_only == 0 ]]; then
        settle
        base=$(sink_count "$relayd_sink_port")
        cpu0=$(proc_cpu "$relayd_pid")
        t0=$(now)
        el=$(run_source "$relayd_port" "$n_relayd" "$size" "$flags")
        cpu_us=$(calc "round(($(proc_cpu "$relayd_pid") - $cpu0) * 1e6 / $n_relayd)")
        r_acc=$(rate "$n_relayd" "$el")
        [[ $el != fail ]] && accepted_relayd=$((accepted_relayd + n_relayd))
        if [[ $mode == e2e && $el != fail && $relayd_delivers == 1 ]]; then
            t1=$(wait_sink "$relayd_sink_port" $((base + n_relayd)) "$E2E_TIMEOUT") || true
            if [[ $t1 == timeout ]]; then
                r_e2e="timeout ($(( $(sink_count "$relayd_sink_port") - base )) of $n_relayd delivered)"
                relayd_delivers=0   # do not wait again in the next workloads
                log "relayd did not deliver everything within ${E2E_TIMEOUT}s; skipping its delivery measurements"
            else
                r_e2e=$(rate "$n_relayd" "$(calc "$t1 - $t0")")
            fi
        fi
        rss=$(vmhwm)
        if [[ $size == 1024 && $r_acc =~ ^[0-9]+$ && $r_acc -gt $peak_1k ]]; then peak_1k=$r_acc; fi
        log "relayd   | $name | $n_relayd msgs | accepted $r_acc msg/s | delivered $r_e2e msg/s | VmHWM $rss | relayd CPU ${cpu_us} us/msg | load $(cut -d' ' -f1 /proc/loadavg)"
    fi

    settle
    base=$(sink_count "$pf_sink_port")
    t0=$(now)
    el=$(run_source "$pf_port" "$n_pf" "$size" "$flags")
    p_acc=$(rate "$n_pf" "$el")
    p_e2e="-"
    if [[ $mode == e2e && $el != fail ]]; then
        t1=$(wait_sink "$pf_sink_port" $((base + n_pf)) "$E2E_TIMEOUT") || true
        [[ $t1 == timeout ]] && p_e2e=timeout || p_e2e=$(rate "$n_pf" "$(calc "$t1 - $t0")")
    fi
    log "postfix  | $name | $n_pf msgs | accepted $p_acc msg/s | delivered $p_e2e msg/s"

    h_acc="-"
    if [[ $hold == 1 ]]; then
        settle
        el=$(run_source "$pf_hold_port" "$n_pf" "$size" "$flags")
        h_acc=$(rate "$n_pf" "$el")
        log "pf-hold  | $name | $n_pf msgs | accepted $h_acc msg/s"
    fi
    rows+=("$name|$r_acc|$p_acc|$(ratio "$r_acc" "$p_acc")|$h_acc|$(ratio "$r_acc" "$h_acc")|$r_e2e|$p_e2e|$(ratio "$r_e2e" "$p_e2e")|$rss")
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
    echo "## relayd vs Postfix ($mode mode), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, scratch on $fstype"
    echo
    if [[ $mode == e2e ]]; then
        echo "| workload | relayd accepted msg/s | Postfix accepted msg/s | ratio | relayd delivered msg/s | Postfix delivered msg/s | ratio | relayd VmHWM |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|"
        for r in "${rows[@]}"; do
            IFS='|' read -r n ra pa rat _ _ re pe rate2 rss <<<"$r"
            echo "| $n | $ra | $pa | $rat | $re | $pe | $rate2 | $rss |"
        done
    else
        echo "| workload | relayd msg/s | Postfix msg/s (relaying to smtp-sink) | relayd/Postfix | Postfix accept-only msg/s (HOLD) | relayd/accept-only | relayd VmHWM after |"
        echo "|---|---:|---:|---:|---:|---:|---:|"
        for r in "${rows[@]}"; do
            IFS='|' read -r n ra pa rat ha hrat _ _ _ rss <<<"$r"
            echo "| $n | $ra | $pa | $rat | $ha | $hrat | $rss |"
        done
    fi
    echo
    echo "- relayd memory at the end: $rss_final; spool on disk: ${spool_du:-?}"
    echo "- latency, end of DATA -> 250, at half of relayd's peak 1 KiB rate ($peak_1k msg/s):"
    echo "  relayd:    $(echo "$lat_line" | tr '\n' ' ')"
    echo "  smtp-sink: $(echo "$floor_line" | tr '\n' ' ') (same load; generator + machine floor)"
    echo "- $spool_line"
} | tee ${BENCH_OUT:+"$BENCH_OUT"}
