#!/usr/bin/env bash
# The demo: supervise a worker that leaks 20 MiB/s under a 64 MiB memory limit for 12 seconds,
# watch it get restarted each time it crosses the limit, then stop everything as Ctrl-C would.
set -euo pipefail
cd "$(dirname "$0")"
echo "Building supervise and the example workers in release mode (about two minutes on a fresh" \
    "clone; cargo shows its progress)..." >&2
cargo build --release -p supervisor --bins --examples
events=$(mktemp)
trap 'rm -f "$events"' EXIT
echo "supervise --memory-max 64MiB --memory-for 1 -- leaky --rate 20"
target/release/supervise --events "$events" --memory-max 64MiB --memory-for 1 --max-restarts 10 \
    -- target/release/examples/leaky --rate 20 &
sup=$!
sleep "${DEMO_SECONDS:-12}"
kill -INT "$sup"
wait "$sup" || true
restarts=$(grep '"event":"restarting"' "$events" | grep -c '"reason":"memory"' || true)
peak=$(grep -o '"event":"memory_over","bytes":[0-9]*' "$events" | grep -o '[0-9]*$' | sort -n | tail -1)
echo
peak_mib=$(awk -v b="${peak:-0}" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "leaky was restarted ${restarts} times for memory; the largest tree seen over the limit was" \
    "${peak_mib} MiB against a 64 MiB limit."
if [ "${restarts}" -lt 1 ]; then
    echo "demo failed: no memory restart happened" >&2
    exit 1
fi
