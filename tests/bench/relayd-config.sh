# The relayd configuration the bench scripts run: a loopback listener open to
# 127.0.0.0/8, relaying to an smtp-sink without TLS, spool and control socket in
# one scratch directory, no metrics listener. Sourced; defines one function.
#   bench_relayd_config DIR SMTP_PORT SINK_PORT [DELIVERY_LINES] [QUEUE_LINES] >FILE
bench_relayd_config() {
    local dir=$1 smtp_port=$2 sink_port=$3 delivery_lines=${4:-} queue_lines=${5:-}
    cat <<EOF
hostname = "relayd-bench.localdomain"
spool    = "$dir/spool"

[smtp]
listen     = ["127.0.0.1:$smtp_port"]
mynetworks = ["127.0.0.0/8"]
max_connections = 1000
max_connections_per_client = 1000

[delivery]
relayhost = "[127.0.0.1]:$sink_port"
tls = "none"
${delivery_lines}
[queue]
${queue_lines}min_free_disk = "100M"

[control]
socket = "$dir/control.sock"

[local]
socket = "$dir/submit.sock"

[metrics]
listen = ""
EOF
}
