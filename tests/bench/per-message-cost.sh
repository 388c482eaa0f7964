#!/usr/bin/env bash
# relayd's per-message cost in counts that machine noise does not change much:
# syscalls by kind and by thread (strace), log lines, SMTP commands and writes on
# both hops, and instructions by function (callgrind). Not a timing benchmark.
# Fails loudly (exit 1, "cost: ...") if a tool is missing or a run does not deliver.
#
#   tests/bench/per-message-cost.sh [--messages N] [--callgrind-messages N]
#                                   [--modes "new reuse"] [--no-strace] [--no-callgrind] [--no-perf]
#
# For each mode (new = a new connection per message, reuse = smtp-source -d):
#   1. relayd under `strace -f -c` (totals per syscall), N messages;
#   2. relayd under `strace -f -e trace=<network, files, sync, futex, epoll>`:
#      every call with its thread id and result, folded into per-thread counts
#      (EAGAIN reads separately), N messages;
#   3. relayd alone, `perf stat --per-thread` on syscall tracepoints and
#      context switches (wake-ups) attached after start: the timing-dependent
#      counts without strace's slowdown (needs tracepoints; --no-perf skips it);
#   4. relayd under `valgrind --tool=callgrind`, fewer messages, then
#      callgrind_annotate --inclusive=yes restricted to relayd's own code.
# The delivery side is seen from both ends: relayd's sendto/writev calls on the
# sink's connections and the sink's own command trace (smtp-sink -c counts, and
# an `strace -e trace=read` of smtp-sink gives the commands it receives).
#
# Environment: RELAYD_BIN (default build/release/relayd/relayd), BENCH_DIR
# (default /var/tmp), BENCH_KEEP=1 keeps the scratch directory with raw traces.
# Counts that depend on timing (epoll_wait, EAGAIN reads, fdatasync per message,
# futex) shift under strace's slowdown: read them as orders of magnitude.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/bench/relayd-config.sh
source "$here/relayd-config.sh"
root=$(cd "$here/../.." && pwd)
RELAYD_BIN=${RELAYD_BIN:-$root/build/release/relayd/relayd}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
n=20000 n_cg=2000 modes="new reuse" do_strace=1 do_cg=1 do_perf=1

die() { echo "cost: $*" >&2; exit 1; }
log() { echo "cost: $*" >&2; }

while (($#)); do
    case $1 in
        --messages) n=$2; shift ;;
        --callgrind-messages) n_cg=$2; shift ;;
        --modes) modes=$2; shift ;;
        --no-strace) do_strace=0 ;;
        --no-callgrind) do_cg=0 ;;
        --no-perf) do_perf=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
    shift
done
[[ -x $RELAYD_BIN ]] || die "relayd binary not found at $RELAYD_BIN"
for t in smtp-source smtp-sink strace python3; do command -v "$t" >/dev/null || die "$t not found"; done
((do_cg == 0)) || command -v valgrind >/dev/null || die "valgrind not found (or pass --no-callgrind)"
((do_perf == 0)) || command -v perf >/dev/null || die "perf not found (or pass --no-perf)"

work=$(mktemp -d "$BENCH_DIR/relayd-cost.XXXXXX")
chmod 755 "$work"
pids=()
cleanup() {
    set +e
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
sink_count() {
    local t
    t=$(tail -c 200 "$1" 2>/dev/null)
    if [[ $t =~ .*mesg=([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; else echo 0; fi
}
SRC_ARGS=(-M bench.localdomain -f sender@example.org -t rcpt@example.com -s 20 -l 1024)

# One relayd run: $1 = label, $2 = smtp-source flags, $3 = count, $4... = wrapper
# command (strace/valgrind with its options) put in front of relayd.
run_one() {
    local label=$1 flags=$2 count=$3 wrapper=${4:-} dir port sink_port sink_pid rpid i
    shift 3
    dir=$work/$label
    mkdir -p "$dir"
    port=$(free_port); sink_port=$(free_port)
    # The sink itself traced for reads: what the delivery side sends, command by command.
    strace -f -qq -e trace=read,recvfrom -e signal=none -s 256 -o "$dir/sink.strace" \
        smtp-sink -c -u nobody "127.0.0.1:$sink_port" 1024 >"$dir/sink.log" 2>&1 &
    sink_pid=$!; pids+=("$sink_pid")
    wait_port "$sink_port" 5 || die "smtp-sink did not start"
    bench_relayd_config "$dir" "$port" "$sink_port" >"$dir/relayd.toml"
    "$@" "$RELAYD_BIN" --config "$dir/relayd.toml" >"$dir/relayd.log" 2>&1 &
    rpid=$!; pids+=("$rpid")
    wait_port "$port" 60 || die "relayd did not listen ($label); see $dir/relayd.log"
    # callgrind: a warm-up outside the counts (first connections, LMDB map pages, allocator).
    [[ $wrapper != valgrind ]] || smtp-source -d -m 200 "${SRC_ARGS[@]}" "127.0.0.1:$port" >/dev/null 2>&1 || die "warm-up failed ($label)"
    [[ $wrapper != valgrind ]] || for ((i = 0; i < 600; i++)); do (($(sink_count "$dir/sink.log") >= 200)) && break; sleep 1; done
    # Thread names for the per-thread table (the traced process is relayd, the
    # wrapper's child).
    local rel
    rel=$(pgrep -P "$rpid" -f "$RELAYD_BIN" | head -n 1 || true)
    [[ -n $rel ]] || rel=$rpid
    for t in /proc/"$rel"/task/*; do echo "${t##*/} $(cat "$t/comm")"; done >"$dir/threads" 2>/dev/null || true
    local log0 sink0
    # From here on is what gets counted: zero callgrind's counters, mark the traces.
    [[ $wrapper != valgrind ]] || callgrind_control -z "$rel" >/dev/null
    log0=$(wc -l <"$dir/relayd.log")
    sink0=$(sink_count "$dir/sink.log")
    wc -l <"$dir/sink.strace" >"$dir/sink-lines-before"
    [[ ! -f $dir/relayd.strace ]] || wc -l <"$dir/relayd.strace" >"$dir/trace-lines-before"
    local perf_pid=""
    if [[ $label == *-p ]]; then
        # perf: kernel tracepoints counted per thread, no slowdown to speak of.
        perf stat --per-thread -x, -o "$dir/perf.csv" -p "$rel" "${PERF_EVENTS[@]}" &
        perf_pid=$!
        sleep 1
    fi
    # shellcheck disable=SC2086
    smtp-source $flags -m "$count" "${SRC_ARGS[@]}" "127.0.0.1:$port" >"$dir/source.log" 2>&1 ||
        die "smtp-source failed ($label); see $dir/source.log"
    for ((i = 0; i < 6000; i++)); do
        (($(sink_count "$dir/sink.log") >= sink0 + count)) && break
        sleep 0.1
    done
    (($(sink_count "$dir/sink.log") >= sink0 + count)) || die "relayd did not deliver $count messages ($label)"
    sleep 1   # the last delivery results reach the spool
    if [[ -n $perf_pid ]]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
    # callgrind: dump now, so the profile holds the N messages and not the shutdown.
    [[ $wrapper != valgrind ]] || callgrind_control -d "$rel" >/dev/null
    echo "$log0" >"$dir/log-lines-before"
    # Stop the traced processes themselves so strace/valgrind write their summaries.
    kill -TERM "$rel"; wait "$rpid" 2>/dev/null || true
    kill -TERM "$(pgrep -P "$sink_pid" | head -n 1)" 2>/dev/null || true
    wait "$sink_pid" 2>/dev/null || true
}

PERF_EVENTS=(-e context-switches -e raw_syscalls:sys_enter)
for sc in sendto recvfrom write writev epoll_wait epoll_ctl futex fdatasync pwrite64 statfs lseek accept accept4 ioctl close timerfd_settime getpid; do
    PERF_EVENTS+=(-e "syscalls:sys_enter_$sc")
done
PERF_EVENTS+=(-e syscalls:sys_exit_recvfrom --filter 'ret == -11')   # EAGAIN reads

flags_of() { [[ $1 == reuse ]] && echo "-d" || echo ""; }

report_strace_c() {  # file count
    python3 - "$@" <<'EOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
print(f"strace -f -c, {n} messages (the whole run, start and stop included): calls per message (errors per message)")
for line in open(path):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls = int(f[3]); errs = int(f[4]) if len(f) == 6 else 0
        if calls / n >= 0.01:
            print(f"  {f[-1]:<16} {calls / n:7.2f}" + (f"  ({errs / n:.2f} errors)" if errs else ""))
EOF
}

# Per-thread counts from `strace -f` output lines "TID name(args) = result".
report_strace_threads() {  # dir count
    python3 - "$1" "$2" <<'EOF'
import collections, re, sys
d, n = sys.argv[1], int(sys.argv[2])
names = {}
try:
    for line in open(f"{d}/threads"):
        tid, comm = line.split(maxsplit=1); names[tid] = comm.strip()
except OSError:
    pass
count = collections.Counter()
pending = {}
seq = collections.defaultdict(list)   # per thread: the completed calls in order
pat = re.compile(r"^(\d+)\s+(?:\d+:\d+:\d+\.\d+\s+)?(.*)$")
skip = int(open(f"{d}/trace-lines-before").read())
for i, line in enumerate(open(f"{d}/relayd.strace")):
    if i < skip:
        continue
    m = pat.match(line)
    if not m:
        continue
    tid, rest = m.groups()
    if rest.startswith("<..."):       # "<... write resumed>) = 126": the call began earlier
        call = pending.pop(tid, rest[5:].split()[0])
    else:
        call = rest.split("(")[0]
        if call in ("write", "writev") and rest[len(call) + 1:].split(",")[0] == "2":
            call += "(stderr: log)"
        if "<unfinished ...>" in rest:
            pending[tid] = call; continue
    if not re.match(r"^[a-z_0-9]+(\(stderr: log\))?$", call):
        continue
    err = "EAGAIN" in rest.rsplit("=", 1)[-1]
    count[(tid, call + (" EAGAIN" if err else ""))] += 1
    seq[tid].append(call)
tids = sorted({t for t, _ in count}, key=lambda t: -sum(v for (tt, _), v in count.items() if tt == t))
for t in tids:
    rows = sorted(((c, v) for (tt, c), v in count.items() if tt == t), key=lambda x: -x[1])
    total = sum(v for _, v in rows)
    if total / n < 0.01:
        continue
    print(f"  thread {t} ({names.get(t, '?')}): {total / n:.2f} traced calls per message")
    for c, v in rows:
        if v / n >= 0.01:
            print(f"    {c:<24} {v / n:7.2f}")
# The spool writer: an fdatasync after data pages is a commit's flush; one after
# only the previous commit's meta page (MDB_NOMETASYNC) is the explicit flush the
# writer does when no work is waiting (queue/spool.cpp spool_core::run).
writer = max(seq, key=lambda t: count[(t, "pwrite64")])
commits = explicit = writes = 0
for c in seq[writer]:
    if c in ("pwrite64", "writev"):
        writes += 1
    elif c == "fdatasync":
        if writes <= 1:
            explicit += 1
        else:
            commits += 1
        writes = 0
print(f"  spool writer {writer}: {commits / n:.3f} commit flushes + {explicit / n:.3f} explicit flushes (no work waiting) "
      f"per message; {n / commits if commits else 0:.1f} messages per commit")
EOF
}

# What the sink received, per delivered message: SMTP commands and read calls.
report_sink() {  # dir count
    python3 - "$1" "$2" <<'EOF'
import collections, re, sys
d, n = sys.argv[1], int(sys.argv[2])
cmds = collections.Counter(); reads = 0
skip = int(open(f"{d}/sink-lines-before").read())
for i, line in enumerate(open(f"{d}/sink.strace")):
    if i < skip:
        continue
    m = re.search(r'(?:read|recvfrom)\(\d+, "(.*?)"(?:\.\.\.)?, \d+.*= (\d+)', line)
    if not m or int(m.group(2)) <= 0:
        continue
    reads += 1
    for word in re.findall(r'(?:^|\\n)(EHLO|HELO|MAIL FROM|RCPT TO|DATA|RSET|NOOP|QUIT)', m.group(1)):
        cmds[word] += 1
print(f"  smtp-sink side: {reads / n:.2f} successful reads per delivered message; commands per message:",
      ", ".join(f"{k} {v / n:.3f}" for k, v in sorted(cmds.items(), key=lambda x: -x[1])))
EOF
}

report_log() {  # dir count
    local before after
    before=$(cat "$1/log-lines-before"); after=$(wc -l <"$1/relayd.log")
    echo "  log lines per message: $(python3 -c "print(round(($after - $before) / $2, 2))")  (kinds, per message:)"
    tail -n +"$((before + 1))" "$1/relayd.log" |
        sed -E 's/^[^ ]+ relayd\[[0-9]+\] [a-z]+: //; s/[0-9A-Za-z]{8,}/X/g; s/[0-9]+/N/g' |
        cut -c1-40 | sort | uniq -c | sort -rn | head -n 8 |
        awk -v n="$2" '$1 / n >= 0.01 {c = $1; $1 = ""; printf "    %6.2f %s\n", c / n, $0}'
}

# Call counts from a callgrind profile: heap allocations, locks, LMDB calls, and
# who calls operator new most.
report_calls() {  # callgrind.out count
    python3 - "$1" "$2" <<'EOF'
import collections, re, sys
path, n = sys.argv[1], int(sys.argv[2])
names, calls = {}, collections.Counter()
fn = cfn = None
for line in open(path, errors="replace"):
    m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
    if m:
        kind, i, name = m.groups()
        if name:
            names[i] = name
        if kind == "cfn":
            cfn = i
        else:
            fn = i
        continue
    m = re.match(r"^calls=(\d+)", line)
    if m and cfn:
        calls[(fn, cfn)] += int(m.group(1))
def short(i):
    return re.sub(r"^(\?\?\?|[^:]*\.[A-Za-z]+):", "", names.get(i, "?")).split(" [")[0]
total = collections.Counter()
for (_, c), v in calls.items():
    total[short(c).split("@")[0]] += v
for k in ["malloc", "operator new(unsigned long)", "free", "pthread_mutex_lock", "mdb_txn_begin",
          "mdb_txn_commit", "mdb_get", "mdb_put", "mdb_del", "__memcpy_avx_unaligned_erms"]:
    print(f"    {k:<32} {total[k] / n:7.1f}")
print("    operator new, by caller:")
rows = sorted(((v, short(f)) for (f, c), v in calls.items() if short(c) == "operator new(unsigned long)"), reverse=True)
for v, f in rows[:12]:
    print(f"      {v / n:6.1f}  {f[:150]}")
EOF
}

report_perf() {  # dir count
    python3 - "$1" "$2" <<'EOF'
import collections, sys
d, n = sys.argv[1], int(sys.argv[2])
per = collections.defaultdict(dict)
for line in open(f"{d}/perf.csv"):
    f = line.strip().split(",")
    if len(f) < 4 or not f[1].strip().isdigit():
        continue
    thread, count, event = f[0], int(f[1]), f[3]
    event = event.replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "all syscalls")
    event = event.replace("syscalls:sys_exit_recvfrom", "recvfrom EAGAIN")
    per[thread][event] = count
for thread, ev in sorted(per.items(), key=lambda kv: -kv[1].get("all syscalls", 0)):
    if ev.get("all syscalls", 0) / n < 0.01:
        continue
    print(f"  thread {thread}: " + ", ".join(f"{k} {v / n:.2f}" for k, v in
          sorted(ev.items(), key=lambda kv: -kv[1]) if v / n >= 0.005))
EOF
}

# The one-hop baseline: smtp-source -> smtp-sink, both under strace -c (the
# sink is not stopped with -M; it is killed once smtp-source has exited).
run_direct() {  # mode count
    local dir=$work/$1-direct port sink_pid
    mkdir -p "$dir"
    port=$(free_port)
    strace -f -c -o "$dir/sink-c.txt" smtp-sink -c -u nobody "127.0.0.1:$port" 1024 >"$dir/sink.log" 2>&1 &
    sink_pid=$!; pids+=("$sink_pid")
    wait_port "$port" 5 || die "smtp-sink did not start"
    # shellcheck disable=SC2086
    strace -f -c -o "$dir/source-c.txt" smtp-source $(flags_of "$1") -m "$2" "${SRC_ARGS[@]}" \
        "127.0.0.1:$port" >"$dir/source.log" 2>&1 || die "smtp-source failed (direct $1)"
    kill -TERM "$(pgrep -P "$sink_pid" | head -n 1)" 2>/dev/null || true
    wait "$sink_pid" 2>/dev/null || true
    echo "  one-hop baseline (smtp-source -> smtp-sink, $2 messages), smtp-sink:"
    report_strace_c "$dir/sink-c.txt" "$2" | tail -n +2
    echo "  smtp-source:"
    report_strace_c "$dir/source-c.txt" "$2" | tail -n +2
}

for mode in $modes; do
    flags=$(flags_of "$mode")
    if ((do_strace)); then
        log "$mode: strace -f -c, $n messages"
        run_one "$mode-c" "$flags" "$n" strace -f -c -o "$work/$mode-c/strace-c.txt"
        echo "== $mode ($( [[ $mode == reuse ]] && echo 'smtp-source -d' || echo 'new connection per message'))"
        report_strace_c "$work/$mode-c/strace-c.txt" "$n"
        report_log "$work/$mode-c" "$n"
        report_sink "$work/$mode-c" "$n"
        log "$mode: strace -f (per thread), $n messages"
        run_one "$mode-t" "$flags" "$n" strace -f -qq -e signal=none -s 0 \
            -e trace=%network,read,write,writev,readv,epoll_wait,epoll_pwait,epoll_ctl,futex,fdatasync,fsync,pwrite64,pwritev,msync,timerfd_settime,getpid,statfs,eventfd2 \
            -o "$work/$mode-t/relayd.strace"
        echo "  per thread (strace -f, same syscall set as -c minus memory and clock calls):"
        report_strace_threads "$work/$mode-t" "$n"
        run_direct "$mode" "$n"
    fi
    if ((do_perf)); then
        log "$mode: perf stat --per-thread (tracepoints), $n messages"
        run_one "$mode-p" "$flags" "$n"
        echo "  perf stat --per-thread, $n messages, no strace (per message; context-switches = wake-ups):"
        report_perf "$work/$mode-p" "$n"
    fi
    if ((do_cg)); then
        log "$mode: callgrind, $n_cg messages"
        run_one "$mode-cg" "$flags" "$n_cg" valgrind --tool=callgrind --quiet \
            --callgrind-out-file="$work/$mode-cg/callgrind.out"
        cg=$work/$mode-cg/callgrind.out.1   # the dump taken once the sink had every message
        [[ -f $cg ]] || die "no callgrind dump ($cg)"
        per_msg() { awk -v n="$n_cg" '/^ *[0-9,]+ \( *[0-9.]+%\)/ { v = $1; gsub(",", "", v); sub(/^ *[0-9,]+ \( *[0-9.]+%\) +/, ""); printf "    %8.0f Ir/msg  %s\n", v / n, substr($0, 1, 200) }' || true; }
        echo "  callgrind, $n_cg messages after a 200-message warm-up: $(callgrind_annotate --auto=no "$cg" 2>/dev/null |
            awk -v n="$n_cg" '/PROGRAM TOTALS/ { v = $1; gsub(",", "", v); printf "%.0f", v / n }') instructions per message (all threads)"
        echo "  top functions by inclusive instructions, relayd's own code (callgrind_annotate --inclusive=yes):"
        callgrind_annotate --inclusive=yes --auto=no "$cg" 2>/dev/null | per_msg |
            grep -E '(smtp|queue|relayd)::' | grep -vE 'libc-start|below main|run_daemon|_M_run|std::thread' | head -n 30 || true
        echo "  top functions by exclusive instructions, everything (callgrind_annotate --inclusive=no; the"
        echo "  zeroed profile lists the call chain main -> io_context::run and the writer thread first: skipped):"
        callgrind_annotate --inclusive=no --auto=no --threshold=100 "$cg" 2>/dev/null |
            awk '/^ *[0-9,]+ \( *[0-9.]+%\)/ { p = $0; sub(/^[^(]*\( */, "", p); if (p + 0 < 10) print }' |
            per_msg | head -n 20 || true
        echo "  calls per message (callgrind call counts):"
        report_calls "$cg" "$n_cg"
    fi
done
