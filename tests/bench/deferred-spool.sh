#!/usr/bin/env bash
# relayd with a large spool of deferred messages (issue 3): memory, relayctl
# listing time, restart time.
#
#   tests/bench/deferred-spool.sh [--messages N] [--size BYTES] [--sessions N]
#       [--closed-port] [--no-flush] [--restarts N] [--loaded-messages N]
#
# A million (about 10 minutes of filling on 2 CPUs; 2.3 GB of spool):
#   tests/bench/deferred-spool.sh --messages 1000000 --sessions 100 --closed-port \
#       --no-flush --restarts 1
#
# 1. Starts an smtp-sink that answers every RCPT TO with "450 4.3.0" (smtp-sink
#    -r RCPT) and relayd in smarthost mode pointing at it (tls = "none"), with
#    min_backoff = max_backoff = 1h: every message gets exactly one real
#    delivery attempt (connect, EHLO, MAIL, RCPT -> 450) right after it is
#    accepted, is deferred, and then stays in the spool for the rest of the run.
#    --closed-port points the relayhost at a port nobody listens on instead
#    (connection refused; the destination backs off and later messages are
#    deferred with "delivery temporarily suspended", not counted as attempts).
# 2. Fills it with N messages (default 100,000) of SIZE bytes (default 1024):
#    smtp-source -d -s SESSIONS -m N -l SIZE (--sessions, default 20: more
#    sessions fill more messages into each spool commit). Reports the fill rate.
# 3. Waits until relayctl -j shows every message "deferred" (a pending recipient
#    with attempts > 0), and reports how long the attempts took.
# 4. relayd's /proc/PID/status: VmRSS, VmHWM, RssAnon, RssFile (and the largest
#    RssAnon sampled every 0.5 s while filling/attempting).
# 5. `relayctl -p > /dev/null`, `relayctl -j > /dev/null`, `relayctl -p --shape`
#    and `relayctl -j --domain example.com` (every message), 3 times each: wall
#    time (median and all three), relayd's CPU (utime + stime, 10 ms ticks: the
#    figure to trust on a loaded machine), relayctl's own CPU and max RSS, and for
#    -j --domain the time to its first line; relayd's memory after the listings
#    and its largest RssAnon sampled while listing.
# 5b. The accept rate while the spool holds N: smtp-source -d -s SESSIONS -m
#    LOADED (--loaded-messages, default 20,000) to rcpt@example.net; then
#    `relayctl -j --domain example.net` (only those, at the end of the queue's
#    order: the first line comes after a pass over the N before them).
# 6. Restart, --restarts times (default 3): SIGTERM -> exit (shutdown time), then start -> first
#    "220" greeting on the SMTP port (restart time), and -> control socket
#    answering (relayctl -s of one ID); relayd's memory after each start and the
#    open report it logs.
# 7. Unless --no-flush: `relayctl -f` makes all N due at once; time until every
#    message has had a second attempt (counted in relayd's log), and the memory
#    peak meanwhile (the scheduler holds at most 10,000 messages in flight).
#
# Environment: RELAYD_BIN, RELAYCTL_BIN (default build/release/...), BENCH_DIR
# (default /var/tmp), BENCH_KEEP=1 keeps the scratch directory, BENCH_OUT=FILE
# also writes the summary (markdown) to FILE. Needs smtp-source/smtp-sink
# (Postfix), python3, /usr/bin/time. Loopback only. Root is not required (as
# root, smtp-sink is told to drop privileges to `nobody`).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/bench/relayd-config.sh
source "$here/relayd-config.sh"
root=$(cd "$here/../.." && pwd)
RELAYD_BIN=${RELAYD_BIN:-$root/build/release/relayd/relayd}
RELAYCTL_BIN=${RELAYCTL_BIN:-$root/build/release/cli/relayctl}
BENCH_DIR=${BENCH_DIR:-/var/tmp}

messages=100000 size=1024 closed_port=0 flush=1 sessions=20 restarts=3 loaded=20000
die() { echo "deferred-spool: $*" >&2; exit 1; }
log() { echo "deferred-spool: $(date -u +%H:%M:%S) $*" >&2; }
while (($#)); do
    case $1 in
        --messages) messages=${2:?}; shift ;;
        --size) size=${2:?}; shift ;;
        --closed-port) closed_port=1 ;;
        --sessions) sessions=${2:?}; shift ;;
        --restarts) restarts=${2:?}; shift ;;
        --loaded-messages) loaded=${2:?}; shift ;;
        --no-flush) flush=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
    shift
done
for t in smtp-source smtp-sink python3 /usr/bin/time; do
    command -v "$t" >/dev/null || die "$t not found"
done
((restarts >= 1)) || die "--restarts must be at least 1"
[[ -x $RELAYD_BIN ]] || die "relayd not found at $RELAYD_BIN (set RELAYD_BIN)"
[[ -x $RELAYCTL_BIN ]] || die "relayctl not found at $RELAYCTL_BIN (set RELAYCTL_BIN)"

work=$(mktemp -d "$BENCH_DIR/relayd-deferred.XXXXXX")
relayd_pid="" sink_pid="" sampler_pid=""
cleanup() {
    set +e
    [[ -n $sampler_pid ]] && kill "$sampler_pid" 2>/dev/null
    if [[ -n $relayd_pid ]] && kill -0 "$relayd_pid" 2>/dev/null; then
        kill -TERM "$relayd_pid"
        for _ in $(seq 300); do kill -0 "$relayd_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$relayd_pid" 2>/dev/null
    fi
    [[ -n $sink_pid ]] && kill -TERM "$sink_pid" 2>/dev/null
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r smtp_port sink_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

calc() { python3 -c "print($1)"; }
ctl() { "$RELAYCTL_BIN" -S "$work/control.sock" "$@"; }
status_kb() {  # field of relayd's /proc status, in kB
    awk -v k="$1:" '$1 == k {print $2}' "/proc/$relayd_pid/status" 2>/dev/null || echo "?"
}
mem_line() {
    echo "VmRSS $(status_kb VmRSS) kB, VmHWM $(status_kb VmHWM) kB, RssAnon $(status_kb RssAnon) kB, RssFile $(status_kb RssFile) kB"
}
mb() { [[ $1 =~ ^[0-9]+$ ]] && calc "f'{$1 / 1024:.1f} MB'" || echo "$1"; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

if [[ $closed_port == 0 ]]; then
    sink_user=(); [[ $(id -u) == 0 ]] && sink_user=(-u nobody)   # required as root, refused otherwise
    smtp-sink -c -r RCPT "${sink_user[@]}" "127.0.0.1:$sink_port" 1024 >"$work/sink.log" 2>&1 &
    sink_pid=$!
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$sink_port") 2>/dev/null && break; sleep 0.1; done
    target="smtp-sink -r RCPT on [127.0.0.1]:$sink_port (450 4.3.0 to every RCPT TO)"
else
    target="closed port [127.0.0.1]:$sink_port (connection refused)"
fi

bench_relayd_config "$work" "$smtp_port" "$sink_port" 'connect_timeout = "5s"
' 'min_backoff = "1h"
max_backoff = "1h"
delay_warning = "0"
' >"$work/relayd.toml"

# Start relayd; sets t_answer = seconds until the SMTP port answers "220".
# Pure bash (a subshell per probe, no interpreter): starting python3 on this
# loaded box can take over a second.
start_relayd() {
    local t0=$EPOCHREALTIME i
    "$RELAYD_BIN" --config "$work/relayd.toml" >>"$work/relayd.log" 2>&1 &
    relayd_pid=$!
    for ((i = 0; i < 60000; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$smtp_port" && read -r -t 30 -u 3 line && [[ $line == 220* ]]) 2>/dev/null; then
            t_answer=$(calc "round($EPOCHREALTIME - $t0, 3)")
            return 0
        fi
        kill -0 "$relayd_pid" 2>/dev/null || { tail -n 20 "$work/relayd.log" >&2; die "relayd exited"; }
        sleep 0.005
    done
    die "relayd did not answer within 300 s"
}
stop_relayd() {  # sets t_stop = seconds from SIGTERM to exit
    local t0=$EPOCHREALTIME
    kill -TERM "$relayd_pid"
    while kill -0 "$relayd_pid" 2>/dev/null; do sleep 0.01; done
    wait "$relayd_pid" 2>/dev/null || true
    relayd_pid=""
    t_stop=$(calc "round($EPOCHREALTIME - $t0, 3)")
}
control_ready() {  # after start: seconds more until relayctl answers
    local t0=$EPOCHREALTIME id=$1
    until ctl -s "$id" >/dev/null 2>&1; do sleep 0.01; done
    calc "round($EPOCHREALTIME - $t0, 3)"
}
deferred_count() { ctl -j 2>/dev/null | grep -c '"state":"deferred"' || true; }
# relayd logs one "..., status=deferred (...)" line per recipient and attempt.
attempt_lines() { grep -c 'status=deferred' "$work/relayd.log" || true; }

# Largest RssAnon / VmRSS seen, sampled every 0.5 s into $work/peak.
sample_peak() {
    local anon=0 rss=0 a r
    while kill -0 "$relayd_pid" 2>/dev/null; do
        a=$(status_kb RssAnon); r=$(status_kb VmRSS)
        [[ $a =~ ^[0-9]+$ ]] && ((a > anon)) && anon=$a
        [[ $r =~ ^[0-9]+$ ]] && ((r > rss)) && rss=$r
        echo "$anon $rss" >"$work/peak.new" && mv "$work/peak.new" "$work/peak"  # never read half-written
        sleep 0.5
    done
}

log "scratch $work ($(stat -f -c %T "$work")), relayhost: $target"
start_relayd
log "relayd pid $relayd_pid, answered in ${t_answer}s (empty spool); $(mem_line)"
mem_empty=$(mem_line)

# ---------------------------------------------------------------- fill
sample_peak & sampler_pid=$!
cpu0=$(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$relayd_pid/stat")
# send_messages COUNT RECIPIENT: smtp-source into relayd; sets t_sent (seconds).
send_messages() {
    local t0=$EPOCHREALTIME
    smtp-source -d -s "$sessions" -m "$1" -l "$size" -M bench.localdomain -f sender@example.org \
        -t "$2" "127.0.0.1:$smtp_port" >"$work/smtp-source.log" 2>&1 \
        || { tail "$work/smtp-source.log" >&2; die "smtp-source failed"; }
    t_sent=$(calc "$EPOCHREALTIME - $t0")
}
log "filling: $messages messages of $size bytes (smtp-source -d -s $sessions)"
t0=$EPOCHREALTIME
send_messages "$messages" rcpt@example.com
t_fill=$t_sent
fill_rate=$(calc "round($messages / $t_fill)")
log "filled in $(calc "round($t_fill, 1)") s ($fill_rate msg/s); $(mem_line)"

# Every message deferred (attempted once)?
while :; do
    n=$(attempt_lines)
    ((n >= messages)) && break
    if (($(calc "int($EPOCHREALTIME - $t0)") > 3600)); then die "only $n of $messages attempted after 60 min"; fi
    sleep $((messages > 200000 ? 5 : 1))
done
t_attempted=$(calc "$EPOCHREALTIME - $t0")
cpu_us=$(calc "round(($(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$relayd_pid/stat") - $cpu0) * 1e6 / $messages)")
sleep 3   # the last results are stored
deferred=$(deferred_count)
log "all $n attempted $(calc "round($t_attempted, 1)") s after the start of the fill; relayctl -j: $deferred deferred; relayd CPU ${cpu_us} us/msg (accept + attempt)"
[[ $closed_port == 1 || $deferred == "$messages" ]] || log "WARNING: $deferred of $messages are deferred"
read -r peak_anon peak_rss <"$work/peak"
mem_filled=$(mem_line)
hwm_filled=$(status_kb VmHWM)
spool_du=$(du -sh "$work/spool" | cut -f1)
log "after fill: $mem_filled; peak sampled RssAnon $peak_anon kB, VmRSS $peak_rss kB; spool $spool_du"

# ---------------------------------------------------------------- relayctl
relayd_cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$relayd_pid/stat"; }
# One listing: sets t_total (wall), t_first (wall to the first output line),
# cpu_d (relayd's CPU), cpu_c (relayctl's user + system), rss_c (relayctl's max RSS, kB),
# n_lines; the first line goes to $work/first.line, the rest is only counted.
timed_listing() {
    local t0 c0 first rest
    c0=$(relayd_cpu)
    : >"$work/first.line"
    t0=$EPOCHREALTIME
    # shellcheck disable=SC2068  # the command and its options
    read -r first rest < <(/usr/bin/time -f '%M %U %S' -o "$work/time.out" "$RELAYCTL_BIN" -S "$work/control.sock" $@ \
        | { if IFS= read -r line; then echo "$EPOCHREALTIME $(wc -l)"; printf '%s\n' "$line" >"$work/first.line"
            else echo "- -1"; fi; })
    t_total=$(calc "round($EPOCHREALTIME - $t0, 3)")
    t_first=$([[ $first != - ]] && calc "round($first - $t0, 3)" || echo "-")
    n_lines=$((rest + 1))
    cpu_d=$(calc "round($(relayd_cpu) - $c0, 2)")
    read -r rss_c u s <"$work/time.out"
    cpu_c=$(calc "round($u + $s, 2)")
}
declare -A times firsts cpud cpuc maxrss lines
kill "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true
echo "0 0" >"$work/peak"
sample_peak & sampler_pid=$!
list_cmds=(-p -j "-p --shape" "-j --domain example.com")
for cmd in "${list_cmds[@]}"; do
    times[$cmd]="" firsts[$cmd]="" cpud[$cmd]="" cpuc[$cmd]="" maxrss[$cmd]=""
    for _ in 1 2 3; do
        # shellcheck disable=SC2086  # $cmd is the command and its options
        timed_listing $cmd
        times[$cmd]+="$t_total " firsts[$cmd]+="$t_first " cpud[$cmd]+="$cpu_d " cpuc[$cmd]+="$cpu_c "
        maxrss[$cmd]+="$rss_c "
    done
    lines[$cmd]=$n_lines
    log "relayctl $cmd: wall ${times[$cmd]}s, first line ${firsts[$cmd]}s, relayd CPU ${cpud[$cmd]}s, relayctl CPU ${cpuc[$cmd]}s, relayctl max RSS ${maxrss[$cmd]}kB, ${lines[$cmd]} lines (load $(cut -d' ' -f1 /proc/loadavg))"
done
sleep 1
read -r list_peak_anon list_peak_rss <"$work/peak"
mem_listed=$(mem_line)
log "after the listings: $mem_listed; peak sampled while listing: RssAnon $list_peak_anon kB, VmRSS $list_peak_rss kB"

# ---------------------------------------------------------------- accept while loaded
loaded_line="accept rate with $messages queued: skipped (--loaded-messages 0)"
if ((loaded > 0)); then
    log "accepting $loaded more (to rcpt@example.net) with $messages queued"
    send_messages "$loaded" rcpt@example.net
    t_loaded=$t_sent
    loaded_line="accept rate with $messages queued: $loaded more in $(calc "round($t_loaded, 1)") s ($(calc "round($loaded / $t_loaded)") msg/s, load $(cut -d' ' -f1-3 /proc/loadavg)); fill rate into the empty spool was $fill_rate msg/s"
    log "$loaded_line"
    sleep 2
    timed_listing -j --domain example.net
    rare_line="relayctl -j --domain example.net (the last $loaded of $((messages + loaded))): first line after $t_first s, all $n_lines lines in $t_total s; relayd CPU $cpu_d s"
    log "$rare_line"
fi
timed_listing -j --domain example.com
first_id=$(python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["id"])' <"$work/first.line")

# ---------------------------------------------------------------- restart
stops="" starts="" controls="" mem_restart=""
for ((r = 0; r < restarts; r++)); do
    kill "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=""
    sync; sleep 1
    stop_relayd; s=$t_stop
    sync; sleep 1
    start_relayd; st=$t_answer
    c=$(control_ready "$first_id")
    stops+="$s " starts+="$st " controls+="$c "
    sleep 1
    mem_restart=$(mem_line)
    log "stop ${s}s, start -> 220 ${st}s, then control socket +${c}s; $mem_restart"
done
open_report=$(grep -E 'spool .*: [0-9]+ messages' "$work/relayd.log" | tail -n 1 || true)
log "last open report: $open_report"

# ---------------------------------------------------------------- flush
flush_line="relayctl -f: skipped"
if [[ $flush == 1 && $closed_port == 0 ]]; then
    sample_peak & sampler_pid=$!
    before=$(attempt_lines)
    hwm_before=$(status_kb VmHWM)
    cpu0=$(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$relayd_pid/stat")
    t0=$EPOCHREALTIME
    ctl -f >/dev/null
    while (($(attempt_lines) < before + messages)); do
        if (($(calc "int($EPOCHREALTIME - $t0)") > 1800)); then die "flush: not every message re-attempted after 30 min"; fi
        sleep 0.5
    done
    t_flush=$(calc "$EPOCHREALTIME - $t0")
    cpu_f=$(calc "round(($(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$relayd_pid/stat") - $cpu0) * 1e6 / $messages)")
    sleep 1
    read -r fpeak_anon fpeak_rss <"$work/peak"
    flush_line="relayctl -f: all $messages re-attempted in $(calc "round($t_flush, 1)") s ($(calc "round($messages / $t_flush)") attempts/s, relayd CPU $cpu_f us/attempt); peak sampled RssAnon $(mb "$fpeak_anon"), VmRSS $(mb "$fpeak_rss"); VmHWM since restart $(mb "$(status_kb VmHWM)") (was $(mb "$hwm_before") before the flush); after: $(mem_line)"
    log "$flush_line"
fi

# ---------------------------------------------------------------- report
{
    echo
    echo "## relayd with $messages deferred messages, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "- relayhost: $target; min_backoff = max_backoff = 1h; $size-byte messages"
    echo "- empty spool, just started: $mem_empty"
    echo "- fill: $messages messages in $(calc "round($t_fill, 1)") s ($fill_rate msg/s accepted); every message deferred (one status=deferred log line each) $(calc "round($t_attempted, 1)") s after the start; relayd CPU $cpu_us us/msg (accept + attempt); relayctl -j: $deferred deferred; spool on disk $spool_du"
    echo "- memory with $messages deferred (after the fill): $mem_filled"
    echo "  peak sampled during fill + attempts: RssAnon $(mb "$peak_anon"), VmRSS $(mb "$peak_rss"); VmHWM $(mb "$hwm_filled")"
    echo "- relayctl listings, 3 runs each (wall; relayd CPU utime+stime; relayctl CPU user+sys; relayctl max RSS):"
    for cmd in "${list_cmds[@]}"; do
        echo "  - \`relayctl $cmd > /dev/null\`: wall median $(median ${times[$cmd]}) s (${times[$cmd]% }); first line ${firsts[$cmd]% } s; relayd CPU ${cpud[$cmd]% } s; relayctl CPU ${cpuc[$cmd]% } s; relayctl max RSS $(median ${maxrss[$cmd]}) kB; ${lines[$cmd]} lines"
    done
    echo "- relayd after the listings: $mem_listed; peak sampled while listing: RssAnon $(mb "$list_peak_anon"), VmRSS $(mb "$list_peak_rss")"
    echo "- $loaded_line"
    [[ -n ${rare_line:-} ]] && echo "- $rare_line"
    echo "- restart (SIGTERM -> exit): median $(median $stops) s (${stops% })"
    echo "- start -> first 220: median $(median $starts) s (${starts% }); control socket answering +$(median $controls) s later (${controls% })"
    echo "- relayd 1 s after a restart: $mem_restart"
    echo "- its open report: ${open_report#*info: }"
    echo "- $flush_line"
} | tee ${BENCH_OUT:+"$BENCH_OUT"}
