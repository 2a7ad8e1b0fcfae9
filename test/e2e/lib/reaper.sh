#!/bin/bash
# reaper.sh PID MANIFEST - started (detached) by the e2e harness. Waits until the test process PID
# is gone, then cleans up whatever MANIFEST still lists, i.e. what the test process could not clean
# up itself (it was SIGKILLed, e.g. by tap's timeout). Lines: "engine NAME" | "pid PID START".
# The harness kills the reaper when it exits normally with nothing left to do.
set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin
watch=${1:?} manifest=${2:?}
here=$(dirname "$(readlink -f "$0")")
while kill -0 "$watch" 2>/dev/null; do sleep 0.5; done
[ -f "$manifest" ] || exit 0
while read -r kind a b; do
  case $kind in
    pid)
      # only if it is still the same process (start time from /proc/PID/stat field 22)
      if [ -n "$a" ] && [ "$(awk '{print $22}' "/proc/$a/stat" 2>/dev/null)" = "$b" ]; then kill -KILL "$a" 2>/dev/null; fi ;;
    engine)
      "$here/sweep.sh" "$a" ;;
  esac
done < <(tac "$manifest")
rm -f "$manifest"
