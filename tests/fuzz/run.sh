#!/usr/bin/env bash
# Runs each libFuzzer target for N seconds on a scratch copy of its corpus, then
# copies new interesting inputs back (minimised) so the replay tests grow.
# Usage: tests/fuzz/run.sh BUILD_DIR SECONDS
set -euo pipefail
build=$1 seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
for bin in "$build"/tests/fuzz/fuzz_*; do
  t=${bin##*/fuzz_}
  work=$(mktemp -d)
  cp -r "$here/corpus/$t/." "$work/" 2>/dev/null || true
  echo "== fuzz_$t for ${seconds}s"
  "$bin" -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$here/crashes-$t-" "$work" 2>&1 | tail -12
  mkdir -p "$here/corpus/$t"
  "$bin" -merge=1 "$here/corpus/$t" "$work" >/dev/null 2>&1 || true
  rm -rf "$work"
done
