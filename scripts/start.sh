#!/usr/bin/env bash
# Sets up and starts tsnet on this host with its embedded store (nothing else to install or run).
#   scripts/start.sh          build, then start tsnet (systemd unit if systemd runs, else a background process)
#   scripts/start.sh --stop   stop the background process started by this script
# Run it as root: directly (a fresh Debian 12 may have no sudo), or with sudo where it is installed.
# Settings come from the environment (TSNET_SOCKET, TSNET_STATE_DIR, TSNET_LOG_LEVEL, TSNET_DEFAULT_POOLS,
# TSNET_DEFAULT_MTU, DOCKER_HOST, ...) or /etc/default/tsnet under systemd. Without DOCKER_HOST tsnet runs
# without the Docker API (no garbage collection, no network names in policies); setting it, e.g.
# DOCKER_HOST=unix:///run/docker.sock, gives tsnet control of the engine, i.e. root on the host.
# Under systemd tsnet runs in the unit's sandbox (packaging/tsnet.service); the background process
# started without systemd runs as plain root.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
PIDFILE=/run/tsnet.pid
LOG=${TSNET_LOG_FILE:-/var/log/tsnet.log}

if [ "${1:-}" = --stop ]; then
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then kill -TERM "$(cat "$PIDFILE")"; echo "tsnet stopped"; fi
  rm -f "$PIDFILE"; exit 0
fi

[ "$(id -u)" = 0 ] || { echo "run as root (su -, or sudo where it is installed): tsnet creates bridges, veths and firewall rules" >&2; exit 1; }
command -v node >/dev/null || { echo "tsnet needs Node.js 20 or newer (https://nodejs.org or NodeSource packages); Debian 12's nodejs is 18" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { echo "tsnet needs Node.js 20 or newer; this is $(node --version)" >&2; exit 1; }
for tool in ipset iptables ip6tables iptables-restore conntrack; do
  command -v "$tool" >/dev/null || { echo "installing ipset, iptables and conntrack from Debian"; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ipset iptables conntrack >/dev/null; break; }
done

npm ci --no-audit --no-fund --loglevel=error
npm run -s build

if [ -d /run/systemd/system ]; then
  install -d /opt/tsnet && cp -r dist node_modules package.json README.md /opt/tsnet/
  install -m 0644 packaging/tsnet.service /etc/systemd/system/tsnet.service
  systemctl daemon-reload && systemctl enable --now tsnet.service
  echo "tsnet runs as systemd unit tsnet.service (journalctl -u tsnet)"
else
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then echo "tsnet already runs (pid $(cat "$PIDFILE"))"; exit 0; fi
  setsid node --max-semi-space-size=2 dist/cli.js serve >>"$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  sock=${TSNET_SOCKET:-/run/docker/plugins/tsnet.sock}
  for _ in $(seq 1 50); do [ -S "$sock" ] && break; sleep 0.1; done
  [ -S "$sock" ] || { echo "tsnet did not start; see $LOG" >&2; tail -5 "$LOG" >&2; exit 1; }
  echo "tsnet listening on $sock (pid $(cat "$PIDFILE"), log $LOG)"
fi
command -v dockerd >/dev/null || echo "note: Docker is not installed; on Debian 12: apt-get install docker.io"
