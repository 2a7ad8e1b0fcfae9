#!/usr/bin/env bash
# install-test-deps.sh - install the Debian packages the tsnet end-to-end tests need.
#
# Idempotent and fast when everything is already installed (one dpkg-query per package).
# It installs system packages only; npm dependencies are the caller's job (npm ci).
# Must run as root on Debian/Ubuntu.
#
# Services: docker.io and etcd-server would start a system dockerd / etcd from their postinst.
# The tests start private engines themselves, so /usr/sbin/policy-rc.d is made to exit 101
# ("do not start services") before apt runs.
set -euo pipefail

# openssl makes the etcd TLS certificates (contract, e2e); curl scrapes the metrics endpoint (e2e operators).
PKGS=(docker.io containerd runc tini busybox-static iptables ipset conntrack iproute2 procps util-linux etcd-server etcd-client strace openssl curl)

log() { printf '[install-test-deps] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root"; exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  log "all present: ${PKGS[*]}"
  exit 0
fi

# policy-rc.d must exist and exit 101, whatever was there before (a different one is kept aside).
prc=/usr/sbin/policy-rc.d
policy_ok() {
  [ -x "$prc" ] || return 1
  local rc=0
  "$prc" >/dev/null 2>&1 || rc=$?
  [ "$rc" -eq 101 ]
}
if ! policy_ok; then
  if [ -e "$prc" ] && [ ! -e "$prc.tsnet-orig" ]; then mv "$prc" "$prc.tsnet-orig"; fi
  log "writing $prc (exit 101)"
  printf '#!/bin/sh\n# tsnet scripts/install-test-deps.sh: never start services from maintainer scripts\nexit 101\n' > "$prc"
  chmod 0755 "$prc"
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() {
  apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -print -quit 2>/dev/null)" ]; then
  log "no package lists: apt-get update"
  apt-get update -q
fi

log "apt-get install ${missing[*]}"
if ! apt_install "${missing[@]}"; then
  log "install failed; apt-get update and retry"
  apt-get update -q
  apt_install "${missing[@]}"
fi

# Verify.
still=()
for p in "${missing[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || still+=("$p")
done
if [ ${#still[@]} -ne 0 ]; then
  log "still missing after install: ${still[*]}"; exit 1
fi
# Debian's busybox-static provides /bin/busybox, which the tests import as an image.
[ -x /bin/busybox ] || { log "/bin/busybox not found after install"; exit 1; }
log "done"
