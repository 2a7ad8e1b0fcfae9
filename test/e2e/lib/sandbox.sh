#!/usr/bin/env bash
# sandbox.sh - the file-system and capability sandbox of packaging/tsnet.service, for the e2e
# legacy tsnet (there is no systemd as PID 1 here). test/e2e/lib/sandbox.ts derives the arguments
# from the unit file and runs:
#   nsenter --net=<engine netns> -- unshare --mount --uts --propagation slave -- \
#     bash sandbox.sh [options] -- setpriv <caps from the unit> -- node .../cli.js serve ...
# Everything below happens in that private mount namespace (mounts flow in from the host, none
# flow out) and ends with exec, so the pid the harness holds is tsnet's.
# Options (each as the unit means it):
#   --rw PATH           ReadWritePaths=/StateDirectory=/RuntimeDirectory=: stays writable
#   --keep PATH         with --private-tmp: a path under /tmp that stays visible (the engine's
#                       directory: its docker.sock, plugins dir and tsnet-state live there)
#   --protect-system    ProtectSystem=strict: every other mount read-only (not /proc, /sys, /dev)
#   --protect-tunables  ProtectKernelTunables=yes: /proc/sys and /sys read-only, kallsyms/kcore hidden
#   --protect-logs      ProtectKernelLogs=yes: /proc/kmsg hidden (/dev/kmsg: see --private-dev)
#   --protect-home      ProtectHome=yes: /home, /root, /run/user empty and inaccessible
#   --private-tmp       PrivateTmp=yes: empty /tmp and /var/tmp of its own
#   --private-dev       PrivateDevices=yes: a /dev with only null, zero, full, random, urandom, tty, pts, shm
set -euo pipefail
die() { echo "sandbox.sh: $*" >&2; exit 70; }

rw=() keep=()
protect_system=0 tunables=0 logs=0 home=0 private_tmp=0 private_dev=0
while [ $# -gt 0 ]; do
  case $1 in
    --rw) rw+=("${2:?}"); shift ;;
    --keep) keep+=("${2:?}"); shift ;;
    --protect-system) protect_system=1 ;;
    --protect-tunables) tunables=1 ;;
    --protect-logs) logs=1 ;;
    --protect-home) home=1 ;;
    --private-tmp) private_tmp=1 ;;
    --private-dev) private_dev=1 ;;
    --) shift; break ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
[ $# -gt 0 ] || die "no command after --"
# Only ever in a mount namespace of our own: never touch the host's mounts.
[ "$(readlink /proc/self/ns/mnt)" != "$(readlink "/proc/$PPID/ns/mnt")" ] || die "not in a mount namespace of its own (run under unshare --mount)"

# The stash: a private /var/tmp (PrivateTmp= gives one anyway) holds what must survive the
# tmpfs mounts over /tmp and /dev, and the inaccessible stand-ins.
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
stash=/var/tmp/.tsnet-sandbox
mkdir -m 0700 "$stash"
mkdir -m 0000 "$stash/inaccessible-dir"
: > "$stash/inaccessible-file" && chmod 0000 "$stash/inaccessible-file"
n=0
# stash_bind SRC: rbind SRC into the stash, at $stashed (a global: no subshell may count)
stash_bind() {
  n=$((n + 1))
  stashed=$stash/$n
  if [ -d "$1" ]; then mkdir "$stashed"; else : > "$stashed"; fi
  mount --rbind "$1" "$stashed"
}
# place STASHED DEST: move a stashed mount to DEST (created in the new tmpfs)
place() {
  if [ -d "$1" ]; then mkdir -p "$2"; else mkdir -p "$(dirname "$2")"; : > "$2"; fi
  mount --move "$1" "$2"
  rmdir "$1" 2>/dev/null || rm -f "$1"
}
hide() { # hide PATH behind an inaccessible stand-in (InaccessiblePaths=)
  [ -e "$1" ] || return 0
  if [ -d "$1" ]; then mount --bind "$stash/inaccessible-dir" "$1"; else mount --bind "$stash/inaccessible-file" "$1"; fi
}

# ProtectKernelTunables: /proc/sys becomes a mount of its own first, so that writable paths
# below it (/proc/sys/net) can sit on top of it.
if [ $tunables = 1 ]; then
  mount --bind /proc/sys /proc/sys
  [ -e /proc/sysrq-trigger ] && mount --bind /proc/sysrq-trigger /proc/sysrq-trigger
fi
# Writable paths: each a mount of its own, left out of every read-only remount below.
for p in "${rw[@]}"; do
  [ -e "$p" ] || die "writable path $p does not exist"
  mount --rbind "$p" "$p"
done

if [ $private_dev = 1 ]; then
  declare -A devs=()
  for d in null zero full random urandom tty; do stash_bind "/dev/$d"; devs[$d]=$stashed; done
  stash_bind /dev/pts; pts=$stashed
  mount -t tmpfs -o mode=0755,nosuid,noexec tmpfs /dev
  for d in "${!devs[@]}"; do place "${devs[$d]}" "/dev/$d"; done
  place "$pts" /dev/pts
  mkdir /dev/shm && mount -t tmpfs -o mode=1777,nosuid,nodev,noexec tmpfs /dev/shm
  ln -s pts/ptmx /dev/ptmx
  ln -s /proc/self/fd /dev/fd
  ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
fi

if [ $private_tmp = 1 ]; then
  kept=()
  for k in "${keep[@]}"; do
    case $k in /tmp/*) ;; *) die "--keep $k is not under /tmp" ;; esac
    stash_bind "$k"; kept+=("$stashed")
  done
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
  for i in "${!keep[@]}"; do place "${kept[$i]}" "${keep[$i]}"; done
fi

# under PATH PREFIX: PATH is PREFIX or below it
under() { [ "$1" = "$2" ] || [[ $1 == "${2%/}/"* ]]; }
writable() {
  local p
  for p in "${rw[@]}"; do under "$1" "$p" && return 0; done
  [ $private_tmp = 1 ] && { [ "$1" = /tmp ] || [ "$1" = /var/tmp ]; } && return 0
  return 1
}
# remount_ro TARGET OPTS: read-only, keeping the mount's own nosuid/nodev/noexec/atime flags
remount_ro() {
  local keep_flags='' o
  for o in ${2//,/ }; do
    case $o in nosuid|nodev|noexec|noatime|nodiratime|relatime|strictatime|nosymfollow) keep_flags+=",$o" ;; esac
  done
  local err
  if ! err=$(mount -o "remount,bind,ro$keep_flags" "$1" 2>&1); then
    # a mount that went away meanwhile (another engine's container) is no hole
    [ -e "$1" ] && die "could not make $1 read-only: $err"
  fi
}
# ro_wanted TARGET: the unit makes this mount read-only
ro_wanted() {
  if under "$1" /proc; then [ $tunables = 1 ] && { under "$1" /proc/sys || [ "$1" = /proc/sysrq-trigger ]; }
  elif under "$1" /sys; then [ $tunables = 1 ]
  elif under "$1" /dev; then return 1
  else [ $protect_system = 1 ]
  fi
}
# every mount (mountinfo fields 5 and 6; octal escapes such as \040 decoded)
while read -r _ _ _ _ target opts _; do
  target=$(printf '%b' "${target//\\/\\0}")
  if ro_wanted "$target" && ! writable "$target"; then remount_ro "$target" "$opts"; fi
done < /proc/self/mountinfo

if [ $tunables = 1 ]; then hide /proc/kallsyms; hide /proc/kcore; fi
if [ $logs = 1 ]; then hide /proc/kmsg; [ $private_dev = 1 ] || hide /dev/kmsg; fi
if [ $home = 1 ]; then
  for d in /home /root /run/user; do
    [ -d "$d" ] && mount -t tmpfs -o ro,mode=0000,nosuid,nodev,noexec tmpfs "$d"
  done
fi
exec "$@"
