#!/usr/bin/env bash
# Runs bench/ (tsnet against Docker's own drivers) from a clean checkout, as root.
# Installs what it needs (the test dependencies, iperf3, npm packages), builds, then reports to
# stdout and bench/results/<date>.md. A report, not a test: it does not fail on a missed target.
# BENCH_QUICK=1 runs small sizes (a smoke run, not for comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
scripts/install-test-deps.sh
command -v iperf3 >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iperf3
npm ci --no-audit --no-fund
npm run build
npx tsc -p bench/tsconfig.json
TS_NODE_TRANSPILE_ONLY=1 exec node --import @tapjs/typescript/import bench/run.ts
