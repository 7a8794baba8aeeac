#!/usr/bin/env bash
# Which process each picks under host memory pressure, on the same processes: supervise's
# [pressure] policy (with a recorded trace replayed, so the machine is not starved) against
# earlyoom --dryrun (which picks by the kernel's oom_score, as the kernel's OOM killer does), not
# part of CI.
#
#   supervisor/benches/pressure/run.sh [--supervise PATH]
#
# Installs earlyoom (Debian package) if missing, builds supervise and the leaky example (debug
# unless --supervise is given), and runs under one supervise:
#   db     a flat database: 300 MiB, not growing          (oom = "normal")
#   cache  an idle cache: 150 MiB, not growing            (oom = "normal")
#   api    2 replicas, each growing 5 MiB/s from 10 MiB   (oom = "normal")
# supervise replays tests/traces/small_host_stall.trace (calm 4 s, then full stalls and 3 %
# available) with `for = "3s"`; earlyoom runs with its memory threshold at 99 % (so it acts on
# this machine at once, whatever it has free), swap ignored (-s 100), --prefer '^leaky$' (so
# that it chooses among the same processes: without it, it picked a compiler running beside
# them), and --dryrun, so it only says which process it would send SIGTERM. Both are read about 8 s in; the picks are printed
# side by side. systemd-oomd is not compared here: it needs cgroup v2 (this kind of machine is
# cgroup v1) and acts on whole cgroups (a systemd unit), not on processes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
sup=""
while [ $# -gt 0 ]; do
    case "$1" in
        --supervise) sup=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
command -v earlyoom >/dev/null 2>&1 || apt-get install -y -qq earlyoom >/dev/null
(cd "$root" && cargo build -q -p supervisor --bin supervise --example leaky)
[ -n "$sup" ] || sup="$root/target/debug/supervise"
leaky="$root/target/debug/examples/leaky"
work=$(mktemp -d)
trap 'kill $spid $epid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/supervise.toml" <<TOML
[pressure]
replay = "$root/tests/traces/small_host_stall.trace"
for = "3s"
[program.db]
command = ["$leaky", "--rate", "0", "--start", "300"]
[program.cache]
command = ["$leaky", "--rate", "0", "--start", "150"]
[program.api]
command = ["$leaky", "--rate", "5", "--start", "10"]
replicas = 2
TOML
"$sup" --admin "$work/ctl.sock" --events "$work/events.jsonl" -c "$work/supervise.toml" \
    >"$work/supervise.out" 2>&1 &
spid=$!
sleep 1
# --prefer: among this machine's processes, these are the candidates (badness + 300), so the
# comparison is on the same processes; within them earlyoom goes by oom_score, as the kernel does.
earlyoom --dryrun -m 99 -s 100 -r 0 --prefer '^leaky$' >"$work/earlyoom.out" 2>&1 &
epid=$!
sleep 8
kill "$epid" 2>/dev/null || true
wait "$epid" 2>/dev/null || true
name_of() { tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | cut -c1-60; }
program_of() {
    local env n i
    env=$(tr '\0' '\n' < "/proc/$1/environ" 2>/dev/null) || return 0
    n=$(sed -n 's/^SUPERVISE_NAME=//p' <<<"$env")
    i=$(sed -n 's/^SUPERVISE_INSTANCE=//p' <<<"$env")
    [ -n "$n" ] && printf '%s/%s' "$n" "$i"
}
echo "processes (pid, program, RSS):"
for p in $(pgrep -f "$leaky"); do
    printf '  %-7s %-8s %s KiB\n' "$p" "$(program_of "$p")" "$(awk '/VmRSS/{print $2}' /proc/$p/status)"
done
sup_pick=$(grep -m1 '"event":"pressure"' "$work/events.jsonl" \
    | sed -n 's/.*"program":"\([^"]*\)","instance":\([0-9]*\),"pid":\([0-9]*\).*/\1\/\2 (pid \3)/p')
eo_pid=$(grep -m1 -o 'sending SIGTERM to process [0-9]*' "$work/earlyoom.out" | awk '{print $5}')
eo_pick="${eo_pid:+pid $eo_pid}"
[ -n "$eo_pid" ] && eo_pick="$(program_of "$eo_pid") ($eo_pick)"
echo
echo "supervise [pressure]: ${sup_pick:-nothing}"
echo "earlyoom --dryrun:    ${eo_pick:-nothing}"
grep -m3 -i 'sending\|mem avail' "$work/earlyoom.out" | sed 's/^/  earlyoom: /'
