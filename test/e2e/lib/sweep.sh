#!/bin/bash
# sweep.sh NAME - hard cleanup of one e2e test engine, whatever state it is in.
#
# Kills every process that lives in the engine's netns (dockerd, containerd, shims, tsnet, stray
# nsenter'd commands) or names its state dir on its command line, together with all their
# descendants (container processes are children of the shims); deletes the netns; saves the *.log
# files to /tmp/tse-logs/NAME/; removes the state dir /tmp/tse/NAME.
# Used before an engine starts (stale leftovers), after a graceful stop (stragglers) and by the
# reaper when the test process died without cleaning up. Idempotent.
set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin
name=${1:?usage: sweep.sh NAME}
[[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || { echo "sweep.sh: bad engine name '$name'" >&2; exit 2; }
root=${TSE_STATE_ROOT:-/tmp/tse}
st=$root/$name
ns=tse-$name

roots() {
  {
    [ -e "/run/netns/$ns" ] && ip netns pids "$ns" 2>/dev/null
    pgrep -f -- "$st/" 2>/dev/null
  } | grep -vx -e "$$" -e "$PPID" | sort -un
}

# roots + all their descendants, from one ps snapshot
with_descendants() {
  ps -e -o pid=,ppid= | awk -v roots="$*" -v self="$$" '
    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
    { parent[$1] = $2 }
    END {
      do { changed = 0
        for (p in parent) if (!(p in keep) && (parent[p] in keep) && p != self) { keep[p] = 1; changed = 1 }
      } while (changed)
      for (p in keep) if (p in parent) print p
    }'
}

for round in 1 2 3 4 5; do
  r=$(roots | tr '\n' ' ')
  [ -z "${r// /}" ] && break
  pids=$(with_descendants $r | tr '\n' ' ')
  [ -z "${pids// /}" ] && break
  echo "sweep.sh $name: round $round: SIGKILL $pids" >&2
  kill -KILL $pids 2>/dev/null
  for _ in $(seq 1 50); do
    left=0
    for p in $pids; do
      if [ -e "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]; then left=1; break; fi
    done
    [ $left = 0 ] && break
    sleep 0.1
  done
done

if [ -e "/run/netns/$ns" ] || ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$ns"; then
  ip netns del "$ns" 2>/dev/null || { umount -l "/run/netns/$ns" 2>/dev/null; rm -f "/run/netns/$ns"; }
fi

if [ -d "$st" ]; then
  # mounts should only ever exist in the engine's private mount ns; be defensive anyway
  awk -v st="$st" '$2 == st || index($2, st "/") == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
  logs=$(find "$st" -maxdepth 1 -name '*.log' 2>/dev/null)
  if [ -n "$logs" ]; then
    mkdir -p "/tmp/tse-logs/$name"
    cp -f $logs "/tmp/tse-logs/$name/" 2>/dev/null
  fi
  rm -rf --one-file-system "$st"
fi
exit 0
