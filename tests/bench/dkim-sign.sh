#!/usr/bin/env bash
# DKIM signing end to end, in one run: relayd signing (unsigned, RSA-2048,
# Ed25519, both) against Postfix + OpenDKIM as a milter (the setup an operator
# would use; unsigned, RSA-2048, Ed25519, both), each relaying the same messages
# to an smtp-sink of its own. Prints delivered msg/s and CPU µs per message per
# round, the medians, and the ratios (relayd / Postfix+OpenDKIM per algorithm,
# and what each algorithm costs relayd against its own unsigned rate).
#
#   tests/bench/dkim-sign.sh [--rounds R] [--messages N] [--postfix-messages N] [--size BYTES]
#
# Before the clock runs, each configuration sends one probe message to
# x@probe.test, which both servers route to a dumping smtp-sink (relayd by a
# [[route]], Postfix by transport_maps); the script checks that it carries the
# signatures that configuration must add (a= values) and stops if not.
#
# OpenDKIM 2.11 signs with one SignatureAlgorithm per process, so Postfix gets
# one opendkim milter per algorithm (`both` = two milters in a row, RSA then
# Ed25519), on loopback, from private configs (relaxed/relaxed, From
# over-signed); "unsigned" is Postfix with no milter.
#
# Load: smtp-source -s 20 -d -l SIZE -m N -f sender@example.org -t rcpt@example.com
# (20 sessions, many messages per connection, From: <sender@example.org>, the
# signing domain). Delivered msg/s = N / (start of smtp-source until the
# server's sink has counted N). CPU: relayd's process (all threads); Postfix:
# every process of the private instance plus the children master reaped, plus
# the opendkim processes. 200 warm-up messages per configuration; `sync` and 1 s
# pause before each measurement; rounds alternate which server goes first.
#
# Needs root (Postfix's master), postfix (smtp-source, smtp-sink), opendkim,
# openssl. Binaries: RELAYD_BIN (build/release/relayd/relayd), RELAYCTL_BIN.
# Scratch under BENCH_DIR (/var/tmp), removed at the end unless BENCH_KEEP=1.
# Timings go to BENCHMARKS.md, never into a test.
set -euo pipefail

here=$(dirname "$(readlink -f "$0")")
repo=$(readlink -f "$here/../..")
relayd_bin=${RELAYD_BIN:-$repo/build/release/relayd/relayd}
relayctl_bin=${RELAYCTL_BIN:-$repo/build/release/cli/relayctl}
rounds=3 n_relayd=4000 n_postfix=1500 size=2048 warmup=200
while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --messages) n_relayd=$2; shift 2 ;;
        --postfix-messages) n_postfix=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        *) echo "usage: $0 [--rounds R] [--messages N] [--postfix-messages N] [--size BYTES]" >&2; exit 2 ;;
    esac
done

die() { echo "dkim-sign: $*" >&2; exit 1; }
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
[[ $(id -u) == 0 ]] || die "must run as root (Postfix's master)"
for t in smtp-source smtp-sink postfix opendkim openssl; do
    command -v "$t" >/dev/null || die "$t is not installed"
done
[[ -x $relayd_bin ]] || die "no relayd at $relayd_bin (RELAYD_BIN)"
source "$here/relayd-config.sh"

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/relayd-dkim-bench.XXXXXX")
chmod 755 "$work"
base_port=$((20000 + RANDOM % 20000))
relayd_port=$base_port relayd_sink=$((base_port + 1)) pf_port=$((base_port + 2))
pf_sink=$((base_port + 3)) probe_sink=$((base_port + 4)) milter_port=$((base_port + 5))
milter_port2=$((base_port + 6))
relayd_pid="" opendkim_pids=() sink_pids=()

cleanup() {
    [[ -n $relayd_pid ]] && kill "$relayd_pid" 2>/dev/null
    for p in "${opendkim_pids[@]}"; do kill "$p" 2>/dev/null; done
    bash "$here/postfix-instance.sh" stop "$work/postfix" >/dev/null 2>&1 || true
    for p in "${sink_pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

wait_port() {  # PORT SECONDS
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# ---- keys (the same files for both servers)
mkdir -p "$work/keys"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/keys/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$work/keys/ed.pem" 2>/dev/null
chown opendkim:opendkim "$work/keys"/*.pem && chmod 600 "$work/keys"/*.pem

# ---- sinks: one counting sink per server, one dumping sink for the probes
start_sink() {  # PORT LOGFILE [ARGS...]
    local port=$1 logf=$2; shift 2
    smtp-sink "$@" -u nobody "127.0.0.1:$port" 1024 >"$logf" 2>&1 &
    sink_pids+=($!)
    wait_port "$port" 5 || die "smtp-sink did not start on $port"
}
start_sink "$relayd_sink" "$work/sink-relayd.log" -c
start_sink "$pf_sink" "$work/sink-postfix.log" -c
mkdir -p "$work/probe" && chown nobody "$work/probe"
start_sink "$probe_sink" "$work/sink-probe.log" -d "$work/probe/%H%M%S."

sink_count() {  # LOGFILE: the last counter smtp-sink -c wrote ("... mesg=N")
    local t
    t=$(tail -c 200 "$1" 2>/dev/null) || true
    t=${t##*mesg=}
    t=${t%%[!0-9]*}
    echo "${t:-0}"
}

# ---- relayd: one process per configuration, fresh spool
dkim_toml() {  # CONFIG
    local sel
    case $1 in none) return ;; rsa) sel="rsa" ;; ed25519) sel="ed" ;; both) sel="rsa ed" ;; esac
    for s in $sel; do
        printf '\n[[dkim]]\ndomain = "example.org"\nselector = "%s"\nkey = "%s"\n' "$s" "$work/keys/$s.pem"
    done
}
start_relayd() {  # CONFIG
    stop_relayd
    rm -rf "$work/relayd" && mkdir -p "$work/relayd"
    {
        bench_relayd_config "$work/relayd" "$relayd_port" "$relayd_sink"
        printf '\n[[route]]\nrecipient_domain = "probe.test"\nrelayhost = "[127.0.0.1]:%s"\ntls = "none"\n' "$probe_sink"
        dkim_toml "$1"
    } >"$work/relayd/relayd.toml"
    "$relayd_bin" --config "$work/relayd/relayd.toml" 2>>"$work/relayd-$1.log" &
    relayd_pid=$!
    wait_port "$relayd_port" 10 || die "relayd did not start ($(tail -5 "$work/relayd-$1.log"))"
}
stop_relayd() {
    [[ -n $relayd_pid ]] || return 0
    kill "$relayd_pid" 2>/dev/null || true
    wait "$relayd_pid" 2>/dev/null || true
    relayd_pid=""
}
relayd_cpu() { awk '{print $14 + $15}' "/proc/$relayd_pid/stat"; }

# ---- Postfix + OpenDKIM: one instance; the milter is switched per configuration
pf_conf=$work/postfix/etc
POSTFIX_EXTRA_MAIN="milter_default_action = tempfail
transport_maps = inline:{ probe.test=smtp:[127.0.0.1]:$probe_sink }" \
    bash "$here/postfix-instance.sh" start "$work/postfix" "$pf_port" "$pf_sink" >/dev/null
# One opendkim per algorithm: OpenDKIM 2.11 signs with one SignatureAlgorithm per
# process, so RSA + Ed25519 dual signing is two milters in a row (what operators
# run). Each: relaxed/relaxed and From over-signed, as relayd signs; no syslog here.
start_one_opendkim() {  # SELECTOR ALGORITHM PORT
    local d=$work/opendkim-$1
    mkdir -p "$d" && chown opendkim "$d"
    echo "$1._domainkey.example.org example.org:$1:$work/keys/$1.pem" >"$d/keytable"
    echo "*@example.org $1._domainkey.example.org" >"$d/signingtable"
    cat >"$d/opendkim.conf" <<EOF2
Mode                    s
Canonicalization        relaxed/relaxed
SignatureAlgorithm      $2
KeyTable                file:$d/keytable
SigningTable            refile:$d/signingtable
OversignHeaders         From
Socket                  inet:$3@127.0.0.1
UserID                  opendkim
PidFile                 $d/opendkim.pid
Syslog                  no
RequireSafeKeys         no
EOF2
    opendkim -f -x "$d/opendkim.conf" 2>>"$d/stderr" &
    opendkim_pids+=($!)
    wait_port "$3" 10 || die "opendkim ($1) did not start ($(cat "$d/stderr"))"
}
start_opendkim() {  # CONFIG: the milters, then Postfix told to use them
    stop_opendkim
    local milters=()
    case $1 in
        rsa) start_one_opendkim rsa rsa-sha256 "$milter_port"; milters=("inet:127.0.0.1:$milter_port") ;;
        ed25519) start_one_opendkim ed ed25519-sha256 "$milter_port"; milters=("inet:127.0.0.1:$milter_port") ;;
        both) start_one_opendkim rsa rsa-sha256 "$milter_port"
              start_one_opendkim ed ed25519-sha256 "$milter_port2"
              milters=("inet:127.0.0.1:$milter_port" "inet:127.0.0.1:$milter_port2") ;;
    esac
    postfix_milters "${milters[*]}"
}
stop_opendkim() {
    local p
    for p in "${opendkim_pids[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    opendkim_pids=()
}
postfix_milters() {  # "inet:... inet:..." or ""
    postconf -c "$pf_conf" -e "smtpd_milters = ${1// /, }"
    postfix -c "$pf_conf" reload >/dev/null 2>&1
    sleep 1  # new smtpd processes read the setting
}
postfix_cpu() {  # every process of the instance, master's reaped children, opendkim
    local conf_env="MAIL_CONFIG=$pf_conf" f p total=0 master
    master=$(tr -dc 0-9 <"$work/postfix/spool/pid/master.pid")
    for f in $(grep -lzxF "$conf_env" /proc/[0-9]*/environ 2>/dev/null); do
        p=${f#/proc/}; p=${p%/environ}
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    total=$((total + $(awk '{print $16 + $17}' "/proc/$master/stat")))
    for p in "${opendkim_pids[@]}"; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$total"
}

# ---- probe: one message to x@probe.test must arrive with the expected a= values
probe() {  # SERVER CONFIG PORT
    local before want got f
    before=$(find "$work/probe" -type f | wc -l)
    smtp-source -m 1 -f sender@example.org -t x@probe.test -M bench.localdomain \
        "127.0.0.1:$3" >/dev/null 2>&1 || die "$1 $2: probe not accepted"
    for _ in $(seq 1 200); do
        [[ $(find "$work/probe" -type f | wc -l) -gt $before ]] && break
        sleep 0.05
    done
    f=$(find "$work/probe" -type f | head -1)  # the previous probe's file was removed
    [[ -n $f ]] || die "$1 $2: the probe never reached the probe sink"
    case $2 in none) want="" ;; rsa) want="rsa-sha256" ;; ed25519) want="ed25519-sha256" ;; both) want="ed25519-sha256 rsa-sha256" ;; esac
    # The a= of every DKIM-Signature (folded fields joined first).
    got=$(sed -e ':a' -e 'N' -e '$!ba' -e 's/\r\?\n[ \t]/ /g' "$f" | grep -i '^DKIM-Signature:' |
          grep -o 'a=[a-z0-9-]*' | cut -d= -f2 | sort | tr '\n' ' ' | sed 's/ $//') || true
    [[ $got == "$want" ]] || die "$1 $2: probe signed with '${got}', expected '${want}' ($f)"
    rm -f "$f"
}

results=$work/results.tsv
: >"$results"
measure() {  # ROUND SERVER CONFIG PORT SINKLOG N CPUFN
    local round=$1 server=$2 config=$3 port=$4 sinklog=$5 n=$6 cpufn=$7 base c0 c1 t0 t1 i
    base=$(sink_count "$sinklog")
    smtp-source -s 20 -d -l "$size" -m "$warmup" -f sender@example.org -t rcpt@example.com \
        -M bench.localdomain "127.0.0.1:$port" >/dev/null 2>&1 || die "$server $config: warm-up failed"
    for ((i = 0; i < 1200; i++)); do  # the warm-up delivered
        [[ $(sink_count "$sinklog") -ge $((base + warmup)) ]] && break
        sleep 0.1
    done
    base=$(sink_count "$sinklog")
    sync; sleep 1
    c0=$($cpufn); t0=${EPOCHREALTIME/./}
    smtp-source -s 20 -d -l "$size" -m "$n" -f sender@example.org -t rcpt@example.com \
        -M bench.localdomain "127.0.0.1:$port" >/dev/null 2>&1 || die "$server $config: smtp-source failed"
    while [[ $(sink_count "$sinklog") -lt $((base + n)) ]]; do
        sleep 0.02
        (( ${EPOCHREALTIME/./} - t0 < 300000000 )) || die "$server $config: sink counted $(( $(sink_count "$sinklog") - base )) of $n in 300 s"
    done
    t1=${EPOCHREALTIME/./}; c1=$($cpufn)
    local rate cpu
    rate=$(awk -v n="$n" -v us=$((t1 - t0)) 'BEGIN {printf "%.0f", n / (us / 1e6)}')
    cpu=$(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN {printf "%.0f", d / hz * 1e6 / n}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$server" "$config" "$n" "$rate" "$cpu" >>"$results"
    log "round $round | $server | $config | $n msgs | delivered $rate msg/s | CPU $cpu us/msg | load $(cut -d' ' -f1 /proc/loadavg)"
}

run_relayd() {  # ROUND
    for config in none rsa ed25519 both; do
        start_relayd "$config"
        probe relayd "$config" "$relayd_port"
        measure "$1" relayd "$config" "$relayd_port" "$work/sink-relayd.log" "$n_relayd" relayd_cpu
        stop_relayd
    done
}
run_postfix() {  # ROUND
    stop_opendkim
    postfix_milters ""
    probe postfix none "$pf_port"
    measure "$1" postfix+opendkim none "$pf_port" "$work/sink-postfix.log" "$n_postfix" postfix_cpu
    for config in rsa ed25519 both; do
        start_opendkim "$config"
        probe postfix "$config" "$pf_port"
        measure "$1" postfix+opendkim "$config" "$pf_port" "$work/sink-postfix.log" "$n_postfix" postfix_cpu
    done
    stop_opendkim
}

log "relayd $relayd_bin; Postfix $(postconf -d -h mail_version); $(opendkim -V 2>&1 | head -1); $(nproc) CPUs"
log "load: smtp-source -s 20 -d -l $size; relayd $n_relayd, Postfix $n_postfix messages per run; $rounds rounds"
for ((round = 1; round <= rounds; round++)); do
    if ((round % 2)); then run_relayd "$round"; run_postfix "$round"
    else run_postfix "$round"; run_relayd "$round"; fi
done

# ---- medians and ratios (after every timing)
python3 - "$results" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
med = {}
for key in sorted({(r[1], r[2]) for r in rows}):
    rates = [int(r[4]) for r in rows if (r[1], r[2]) == key]
    cpus = [int(r[5]) for r in rows if (r[1], r[2]) == key]
    med[key] = (statistics.median(rates), statistics.median(cpus))
print("| server | signing | delivered msg/s (median) | CPU µs/msg (median) |")
print("|---|---|---:|---:|")
for server in ("relayd", "postfix+opendkim"):
    for config in ("none", "rsa", "ed25519", "both"):
        if (server, config) in med:
            rate, cpu = med[(server, config)]
            print(f"| {server} | {config} | {rate:.0f} | {cpu:.0f} |")
print()
print("| signing | relayd / Postfix+OpenDKIM, msg/s | Postfix+OpenDKIM / relayd, CPU per msg | relayd's rate vs its unsigned rate | relayd's CPU per msg vs unsigned |")
print("|---|---:|---:|---:|---:|")
none_rate, none_cpu = med[("relayd", "none")]
for config in ("none", "rsa", "ed25519", "both"):
    r, p = med.get(("relayd", config)), med.get(("postfix+opendkim", config))
    if not r or not p:
        continue
    print(f"| {config} | {r[0] / p[0]:.1f}x | {p[1] / r[1]:.1f}x | "
          f"{(r[0] / none_rate - 1) * 100:+.1f} % | {(r[1] / none_cpu - 1) * 100:+.1f} % |")
# Per-round ratios (each round's relayd and Postfix runs are minutes apart at most).
print()
for config in ("rsa", "ed25519", "both"):
    ratios = []
    for rnd in sorted({r[0] for r in rows}):
        a = [int(r[4]) for r in rows if r[0] == rnd and r[1] == "relayd" and r[2] == config]
        b = [int(r[4]) for r in rows if r[0] == rnd and r[1] == "postfix+opendkim" and r[2] == config]
        if a and b:
            ratios.append(a[0] / b[0])
    if ratios:
        print(f"{config}: per-round relayd/Postfix+OpenDKIM ratios "
              + ", ".join(f"{x:.1f}x" for x in ratios))
# What each algorithm costs relayd against its unsigned run of the same round
# (rate and CPU per message): median and range over the rounds.
print()
for config in ("rsa", "ed25519", "both"):
    rate_d, cpu_d = [], []
    for rnd in sorted({r[0] for r in rows}):
        a = [r for r in rows if r[0] == rnd and r[1] == "relayd" and r[2] == config]
        b = [r for r in rows if r[0] == rnd and r[1] == "relayd" and r[2] == "none"]
        if a and b:
            rate_d.append((int(a[0][4]) / int(b[0][4]) - 1) * 100)
            cpu_d.append((int(a[0][5]) / int(b[0][5]) - 1) * 100)
    if rate_d:
        print(f"relayd {config} vs unsigned, same round: rate median {statistics.median(rate_d):+.1f} % "
              f"({', '.join(f'{x:+.0f}' for x in rate_d)}), CPU/msg median "
              f"{statistics.median(cpu_d):+.1f} % ({', '.join(f'{x:+.0f}' for x in cpu_d)})")
EOF
