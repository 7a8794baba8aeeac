#!/usr/bin/env bash
# supervise against its peers, in one run on the same workers (not part of CI).
#
#   supervisor/benches/peers/run.sh [--quick] [--only supervise,runit,s6,supervisord,circus,pm2]
#
# On a fresh Debian 12 machine, as root (or with sudo for apt): installs runit and s6 from the
# distribution; supervisord 4.3.0 + superlance 2.0.0 and circus 0.19.0 into a venv, PM2 7.0.4
# into an npm prefix, both under ${SUPERVISE_PEERS_CACHE:-~/.cache/supervise-peers} (nothing lands
# in the repository); builds `supervise` (release) and the `peerwork` example; then runs
# peers.py, which prints one table with ratios to supervise. About 10 minutes (--quick: about 5,
# shorter idle window and n = 3). What is measured and how: peers.py's docstring and
# /work/shared/PEERS.md's rules, summarised in docs/performance.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cache=${SUPERVISE_PEERS_CACHE:-$HOME/.cache/supervise-peers}
mkdir -p "$cache"

sudo=""
if [ "$(id -u)" != 0 ]; then sudo=sudo; fi

need_apt=()
command -v runsvdir >/dev/null || need_apt+=(runit)
command -v s6-svscan >/dev/null || need_apt+=(s6)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
/usr/bin/python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v ps >/dev/null || need_apt+=(procps)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} (apt)" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
fi

# The venv copies the interpreter (--copies): the harness runs on /usr/bin/python3, and a shared
# executable would lower supervisord's and circus's PSS.
venv=$cache/venv
if ! "$venv/bin/python" -c 'import supervisor, superlance, circus, psutil' 2>/dev/null; then
    echo "installing supervisor, superlance, circus (pip, $venv)" >&2
    rm -rf "$venv"
    /usr/bin/python3 -m venv --copies "$venv"
    "$venv/bin/pip" install -q supervisor==4.3.0 superlance==2.0.0 circus==0.19.0 psutil >&2
fi

pm2=$cache/npm/node_modules/.bin/pm2
if [ ! -x "$pm2" ]; then
    echo "installing pm2 (npm, $cache/npm)" >&2
    npm install -q --no-fund --no-audit --prefix "$cache/npm" pm2@7.0.4 >&2
fi

echo "building supervise and peerwork (release)" >&2
(cd "$root" && cargo build -q --release -p supervisor --bin supervise --example peerwork)
target=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

exec /usr/bin/python3 "$here/peers.py" \
    --supervise "$target/release/supervise" \
    --peerwork "$target/release/examples/peerwork" \
    --venv "$venv" --pm2 "$pm2" "$@"
