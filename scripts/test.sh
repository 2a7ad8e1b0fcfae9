#!/usr/bin/env bash
# Runs every test of tsnet on a Debian 12 machine as root (directly, or with sudo where it is
# installed), installing what they need first:
# Debian packages (docker.io, iproute2, iptables, etcd-server, busybox-static, ...), npm packages, the build.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (su -, or sudo where it is installed): the tests create namespaces, bridges and a private dockerd" >&2; exit 1; }
command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] \
  || { echo "tsnet's tests need Node.js 20 or newer" >&2; exit 1; }

bash scripts/install-test-deps.sh
npm ci --no-audit --no-fund --loglevel=error
npm run -s build

summary=$(mktemp)
# e2e files that wait out real time and start no dockerd (names of their own, nothing shared): they
# run in the background beside the stages below instead of in the serial e2e queue.
BESIDE=(test/e2e/docker-silence.test.ts)
beside_out=$(mktemp)
# its own process group (setsid), so that an early exit stops it and its test process too
trap 'rm -f "$summary" "$beside_out"; [ -z "${beside_pid:-}" ] || kill -TERM -- "-$beside_pid" 2>/dev/null || true' EXIT
setsid npx tap run --reporter=tap --timeout=900 --jobs=1 "${BESIDE[@]}" >"$beside_out" 2>&1 &
beside_pid=$!

# tap runs the test files without type-checking them; check them (and src) here, two at a time.
printf '%s\n' test/*/tsconfig.json | xargs -P 2 -n 1 npx tsc -p

status=0
shopt -s globstar nullglob
record() { # tap's output file, its exit code
  [ "$2" = 0 ] || status=1
  # tap closes with "# { total: N, pass: N, fail: N, ... }"
  grep -E '^# \{ total' "$1" | tail -1 >> "$summary" || echo "# { total: 0, pass: 0, fail: 1 }" >> "$summary"
}
run_suite() { # name, per-file timeout (s), parallel files, dir
  local name=$1 timeout=$2 jobs=$3 dir=$4
  echo "=== $name"
  local files=() f out
  for f in "$dir"/**/*.test.ts; do
    [[ " ${BESIDE[*]} " == *" $f "* ]] || files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || { echo "no test files in $dir"; return 0; }
  out=$(mktemp)
  set +e
  npx tap run --reporter=tap --timeout="$timeout" --jobs="$jobs" "${files[@]}" 2>&1 | tee "$out"
  local rc=${PIPESTATUS[0]}
  set -e
  record "$out" "$rc"
  rm -f "$out"
}
run_suite unit 60 2 test/unit
run_suite contract 60 2 test/contract
run_suite integration 300 2 test/integration
run_suite fuzz 300 1 test/fuzz
run_suite e2e 900 1 test/e2e
echo "=== e2e, beside the stages above: ${BESIDE[*]}"
set +e
wait "$beside_pid"
beside_rc=$?
set -e
beside_pid=''
cat "$beside_out"
record "$beside_out" "$beside_rc"

node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").filter(Boolean)
  let pass = 0, fail = 0, skip = 0
  for (const l of lines) {
    const num = (k) => Number((new RegExp(k + ": (\\d+)").exec(l) || [0, 0])[1])
    pass += num("pass"); fail += num("fail"); skip += num("skip") + num("todo")
  }
  console.log(`tests: ${pass} passed, ${fail} failed, ${skip} skipped`)
' "$summary"
exit $status
