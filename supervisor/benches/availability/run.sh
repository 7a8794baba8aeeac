#!/usr/bin/env bash
# What memory restarts and rolling restarts cost the clients of a real server under supervise
# (not part of CI).
#
#   supervisor/benches/availability/run.sh [--quick] [--long] [--only a,b,c] \
#       [--supervise PATH] [--baseline PATH] [--tcp-migrate-req 0|1] [--rate N] [--out DIR]
#
# Installs gunicorn 27.0.1 into a venv under ${SUPERVISE_AVAIL_CACHE:-~/.cache/supervise-avail}
# (nothing lands in the repository), builds `supervise` (release) unless --supervise is given,
# and runs avail.py: gunicorn with sync workers serving app.py under supervise, while load.py
# sends 200 paced HTTP/1.0 GETs a second (4 clients, a new connection each, 1 s connect and 2 s
# request timeouts) from this machine to 127.0.0.1. Scenarios:
#   a   gunicorn -w 4, one worker leaking 16 MiB/s, --memory-max 300MiB, 60 s
#   b2  2 replicas of gunicorn -w 1 --reuse-port, all leaking 10 MiB/s, --memory-max 150MiB, 40 s
#   b4  the same, 4 replicas
#   bL  (--long) 2 replicas leaking 5.5 MiB/s: about 30 memory restarts in 5 minutes
#   c2  2 replicas, --ready tcp://127.0.0.1:PORT, `supervise restart gu --wait` 3 times under load
#   c4  the same, 4 replicas
# --quick shortens a, b and bL (25 s, 20 s, 120 s). Everything takes about 3.5 minutes (--quick:
# 2; --long adds 5, or 2 with --quick), twice that with two variants. For each: requests failed
# by kind of all sent, restarts by reason (events file), fatal or not, the most instances not
# ready at once and the fewest sockets listening on the port (sampled every 10 ms: the control
# socket's status, and sock_diag), peak tree memory, load average. A table on stdout; the raw
# figures in DIR/results.json (default: under the cache, with each run's events, supervise
# output and load result beside it). Other options (--clients, --rate): avail.py --help.
#
# Binaries and flags. --supervise PATH measures that binary instead of a fresh build (say, an
# older one); --baseline PATH measures it too, in the same run: the `today` column is then the
# baseline and the `new` column the build. Each scenario's extra flags come from the
# environment: TODAY_FLAGS_A, TODAY_FLAGS_B (b2, b4, bL), TODAY_FLAGS_C (c2, c4; default: none,
# none, `--ready tcp://127.0.0.1:{port}`) and NEW_FLAGS_A/B/C, `{port}` standing for the port. The
# `new` column runs when its NEW_FLAGS_ variable is set, e.g.
#   NEW_FLAGS_A="--memory-recycle member" supervisor/benches/availability/run.sh --only a
# Every flag used is checked against the binary's --help first.
#
# net.ipv4.tcp_migrate_req (avail.py prints it and keeps it in results.json; 0 on the project's
# VM, 2026-12-07). The kernel spreads a SO_REUSEPORT port's new connections over the listeners
# of its group by hash. When one of those listening sockets is closed (its last fd: a gunicorn
# instance stopping) with connections queued on it, then with 0 (the default, per network
# namespace, since Linux 5.14) what is queued is lost: connections that completed the handshake
# but were not yet accept()ed are reset, and handshakes still in progress (SYN_RECV) are
# dropped, their final ACK then answered with a reset. Clients see ECONNRESET (the `reset`
# column), although other listeners of the same group were there to take them. With 1, the
# kernel moves both kinds to another listener of the group (picked by hash, or by a
# BPF_SK_REUSEPORT_SELECT_OR_MIGRATE program where one is attached) at close() or shutdown(),
# and later for requests whose SYN+ACK is retransmitted or whose final ACK arrives after the
# close. It does not help when the group's last listener goes (then nothing is left:
# `refused`), with connections the dying process had already accepted (its own to finish), or
# while a listener stays open in a process that no longer accepts (a gunicorn worker finishing
# its request still holds the fd: migration happens only once that is closed). Caveat: until
# the fix "tcp: call sk_data_ready() after listener migration" (upstream 3864c6b, in the stable
# series), a migrated connection did not wake the target's poll/epoll waiters, so it waited for
# the next new connection to wake the acceptor (moments under load; a stall on an idle port).
# --tcp-migrate-req 0|1 sets it for the run (root, this network namespace) and restores it
# after, so both can be measured.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cache=${SUPERVISE_AVAIL_CACHE:-$HOME/.cache/supervise-avail}
gunicorn_version=27.0.1
mkdir -p "$cache"

supervise=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
    --supervise)
        [ $# -ge 2 ] || { echo "--supervise needs a path" >&2; exit 2; }
        supervise=$2; shift 2 ;;
    --supervise=*) supervise=${1#--supervise=}; shift ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
    esac
done

if ! /usr/bin/python3 -c 'import ensurepip' 2>/dev/null; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
    echo "installing python3-venv (apt)" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >&2
fi

venv=$cache/venv
if [ "$("$venv/bin/gunicorn" --version 2>/dev/null)" != "gunicorn (version $gunicorn_version)" ]; then
    echo "installing gunicorn $gunicorn_version (pip, $venv)" >&2
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q "gunicorn==$gunicorn_version" >&2
fi

if [ -z "$supervise" ]; then
    echo "building supervise (release)" >&2
    (cd "$root" && cargo build -q --release -p supervisor --bin supervise)
    target=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
        /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    supervise=$target/release/supervise
fi

exec /usr/bin/python3 "$here/avail.py" --supervise "$supervise" \
    --gunicorn "$venv/bin/gunicorn" ${args[@]+"${args[@]}"}
