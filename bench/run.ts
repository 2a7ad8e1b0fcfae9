// tsnet against Docker's own bridge driver, side by side, and how tsnet's cost grows with the
// number of networks. A report, not a test: it prints a table and writes bench/results/<date>.md
// and bench/results/<date>-scale.svg. Run as root from a clean checkout: npm run bench
// (BENCH_QUICK=1 for a short smoke run with small sizes).
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import * as vega from 'vega'
import * as vl from 'vega-lite'
import { REPO_ROOT } from '../test/e2e/lib/tsnet.js'
import { datapathBench, type PathName } from './datapath.js'
import { handlerBench, SEQUENCE } from './handlers.js'
import { fmt, median, p90, spread } from './lib/stats.js'

const QUICK = process.env.BENCH_QUICK === '1'
const log = (s: string) => console.log(`[bench] ${s}`)
const sh = (cmd: string, args: string[]) => {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim().split('\n')[0] ?? ''
  } catch {
    return '?'
  }
}

async function chart(points: Array<{ networks: number; series: string; ms: number }>): Promise<string> {
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'tsnet: cost against the number of networks (5,000 endpoints present)',
    width: 560,
    height: 320,
    data: { values: points },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'networks', type: 'quantitative', scale: { type: 'log' }, title: 'tsnet networks' },
      y: { field: 'ms', type: 'quantitative', scale: { type: 'log' }, title: 'milliseconds' },
      color: { field: 'series', type: 'nominal', title: null },
    },
  }
  const view = new vega.View(vega.parse(vl.compile(spec as vl.TopLevelSpec).spec), { renderer: 'none' })
  return view.toSVG()
}

async function main(): Promise<void> {
  const started = Date.now()
  const date = new Date().toISOString().slice(0, 10)
  const out: string[] = [`# tsnet benchmark, ${date}`, '']
  out.push('## Machine', '', `- ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, kernel ${sh('uname', ['-r'])}`,
    `- ${sh('/usr/bin/docker', ['--version'])}; node ${process.version}; ${sh('iptables', ['--version'])}; ${sh('ipset', ['--version'])}; ${sh('iperf3', ['--version'])}`,
    `- tsnet ${sh('git', ['-C', REPO_ROOT, 'describe', '--always', '--dirty'])}${QUICK ? ' (BENCH_QUICK: small sizes, not for comparison)' : ''}`, '')

  // 1 + 3: docker run, round trip and throughput
  const dp = await datapathBench({ steps: QUICK ? [10] : [10, 1000], rounds: QUICK ? 2 : 8, pings: 200, runPairs: QUICK ? 6 : 30, log })
  const runRatio = median(dp.dockerRun.tsnetMs) / median(dp.dockerRun.bridgeMs)
  out.push('## docker run --rm (interleaved A/B in one engine)', '', '| driver | median ms | p90 ms | min–max ms |', '|---|---|---|---|',
    `| tsnet | ${fmt(median(dp.dockerRun.tsnetMs), 0)} | ${fmt(p90(dp.dockerRun.tsnetMs), 0)} | ${fmt(Math.min(...dp.dockerRun.tsnetMs), 0)}–${fmt(Math.max(...dp.dockerRun.tsnetMs), 0)} |`,
    `| Docker bridge | ${fmt(median(dp.dockerRun.bridgeMs), 0)} | ${fmt(p90(dp.dockerRun.bridgeMs), 0)} | ${fmt(Math.min(...dp.dockerRun.bridgeMs), 0)}–${fmt(Math.max(...dp.dockerRun.bridgeMs), 0)} |`,
    '', `Ratio of medians tsnet/bridge: **${fmt(runRatio, 2)}** over ${dp.dockerRun.tsnetMs.length} pairs.`, '')
  out.push('## Between two containers: round trip (busybox `ping -A -c 200`) and TCP throughput (iperf3, 3 s)', '',
    'Medians over interleaved rounds, with min–max; ratios are medians of the same-round ratios.', '',
    '| tsnet networks | path | rtt avg µs | rtt min µs | rtt mdev µs | Gbit/s |', '|---|---|---|---|---|---|')
  const ratios: Record<number, { rttDocker: number; rttPlain: number; tput: number }> = {}
  for (const row of dp.rows) {
    for (const p of ['tsnet', 'docker', 'plain'] as PathName[]) {
      const s = row.rounds.map((r) => r[p])
      out.push(`| ${row.networks} | ${p === 'docker' ? 'Docker bridge' : p === 'plain' ? 'plain Linux bridge (limit)' : 'tsnet'} | ${spread(s.map((x) => x.rttAvgUs), 0)} | ${fmt(median(s.map((x) => x.rttMinUs)), 0)} | ${fmt(median(s.map((x) => x.rttMdevUs)), 0)} | ${spread(s.map((x) => x.gbps), 2)} |`)
    }
    ratios[row.networks] = {
      rttDocker: median(row.rounds.map((r) => r.tsnet.rttAvgUs / r.docker.rttAvgUs)),
      rttPlain: median(row.rounds.map((r) => r.tsnet.rttAvgUs / r.plain.rttAvgUs)),
      tput: median(row.rounds.map((r) => r.tsnet.gbps / r.docker.gbps)),
    }
  }
  out.push('', ...Object.entries(ratios).map(([n, r]) => `- ${n} networks: rtt tsnet/Docker ${fmt(r.rttDocker, 2)}, tsnet/plain ${fmt(r.rttPlain, 2)}; throughput tsnet/Docker ${fmt(r.tput, 2)}`), '')

  // 2 + 4: handlers and scale
  const steps = QUICK ? [10, 50] : [10, 100, 1000]
  const hb = await handlerBench({ steps, endpoints: QUICK ? 200 : 5000, sequences: QUICK ? 40 : 200, log })
  out.push('## Handler latency (tsnet socket driven directly, the calls of one container)', '',
    `Endpoints present: ${hb.rows[0]?.endpoints}. Each sequence is one container's life: ${SEQUENCE.join(' → ')}.`, '',
    `| networks | concurrency | ${SEQUENCE.map((m) => m.split('.')[1]).join(' | ')} | Create+Join |`,
    `|---|---|${SEQUENCE.map(() => '---').join('|')}|---|`)
  for (const r of hb.rows) {
    out.push(`| ${r.networks} | ${r.concurrency} | ${SEQUENCE.map((m) => `${fmt(r.calls[m]?.p50 ?? NaN, 2)} / ${fmt(r.calls[m]?.p99 ?? NaN, 2)}`).join(' | ')} | ${fmt(r.createJoin.p50, 2)} / ${fmt(r.createJoin.p99, 2)} |`)
  }
  out.push('', 'Cells: p50 / p99 in ms.', '')
  const at = (n: number, c: number) => hb.rows.find((r) => r.networks === n && r.concurrency === c)
  const small = at(steps[0] as number, 1)
  const large = at(steps[steps.length - 1] as number, 1)
  const growth = SEQUENCE.map((m) => (large?.calls[m]?.p50 ?? NaN) / (small?.calls[m]?.p50 ?? NaN))
  out.push(`Growth of p50 from ${steps[0]} to ${steps[steps.length - 1]} networks (concurrency 1): ${SEQUENCE.map((m, i) => `${m.split('.')[1]} ${fmt(growth[i] as number, 2)}×`).join(', ')}; the largest is **${fmt(Math.max(...growth), 2)}×**.`, '')
  const f = hb.facts
  out.push('## Scale', '', '| step | result |', '|---|---|',
    ...f.createNetworksMs.map((c) => `| create networks ${c.from} → ${c.to} (concurrency 8, socket) | ${c.ms} ms (${fmt(c.ms / Math.max(1, c.to - c.from), 1)} ms each) |`),
    `| create ${hb.rows[0]?.endpoints} endpoints (concurrency 16) | ${f.createEndpointsMs} ms |`,
    ...Object.entries(f.ruleLinesPerFamily).map(([n, rules]) => `| iptables lines of tsnet at ${n} networks (per family) | ${rules} (${fmt(rules / Number(n), 3)} per network); ipset members ${f.ipsetMembers[Number(n)]} |`),
    ...Object.entries(f.rssMb).map(([n, mb]) => `| tsnet memory (RSS) at ${n} networks | ${fmt(mb, 0)} MB |`),
    `| boot reconcile at ${steps[steps.length - 1]} networks, kernel intact | ${f.reconcileIntactMs} ms (listening after ${f.reconcileListenMs} ms) |`,
    `| boot reconcile at ${steps[steps.length - 1]} networks, after a reboot (links, rules, sets gone) | ${f.reconcileRebootMs} ms |`, '')

  // targets
  const big = ratios[Math.max(...Object.keys(ratios).map(Number))]
  const maxRss = Math.max(...Object.values(f.rssMb))
  const largeP99 = large?.createJoin.p99 ?? NaN
  const targets: Array<[string, string, boolean]> = [
    ['docker run ≤ 1.00× Docker bridge', `${fmt(runRatio, 2)}×`, runRatio <= 1],
    ['round trip ≤ 1.00× Docker bridge', Object.entries(ratios).map(([n, r]) => `${fmt(r.rttDocker, 2)}× at ${n}`).join(', '), Object.values(ratios).every((r) => r.rttDocker <= 1)],
    ['round trip ≤ 1.3× plain bridge', Object.entries(ratios).map(([n, r]) => `${fmt(r.rttPlain, 2)}× at ${n}`).join(', '), Object.values(ratios).every((r) => r.rttPlain <= 1.3)],
    [`Create+Join p99 ≤ 10 ms at ${steps[steps.length - 1]} networks, concurrency 1`, `${fmt(largeP99, 2)} ms (concurrency 16: ${fmt(at(steps[steps.length - 1] as number, 16)?.createJoin.p99 ?? NaN, 2)} ms)`, largeP99 <= 10],
    ['per-call growth 10 → 1,000 networks ≤ 1.2×', `${fmt(Math.max(...growth), 2)}×`, Math.max(...growth) <= 1.2],
    ['throughput ≥ 0.95× Docker bridge', `${fmt(big?.tput ?? NaN, 2)}×`, Object.values(ratios).every((r) => r.tput >= 0.95)],
    ['reconcile ≤ 5 s at 1,000 networks', `${f.reconcileIntactMs} ms intact, ${f.reconcileRebootMs} ms after a reboot`, (f.reconcileRebootMs ?? Infinity) <= 5000 && (f.reconcileIntactMs ?? Infinity) <= 5000],
    ['memory ≤ 120 MB', `${fmt(maxRss, 0)} MB`, maxRss <= 120],
  ]
  out.push('## Targets', '', '| target | measured | met |', '|---|---|---|', ...targets.map(([t, m, ok]) => `| ${t} | ${m} | ${ok ? 'yes' : '**no**'} |`), '')
  out.push(`Total run time ${Math.round((Date.now() - started) / 1000)} s.`, '')

  const points = hb.rows.filter((r) => r.concurrency === 1).flatMap((r) => [
    { networks: r.networks, series: 'Create+Join p50', ms: r.createJoin.p50 },
    { networks: r.networks, series: 'Create+Join p99', ms: r.createJoin.p99 },
    { networks: r.networks, series: 'CreateEndpoint p50', ms: r.calls['NetworkDriver.CreateEndpoint']?.p50 ?? 0 },
    { networks: r.networks, series: 'Join p50', ms: r.calls['NetworkDriver.Join']?.p50 ?? 0 },
  ])
  const dir = join(REPO_ROOT, 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  const stem = QUICK ? `${date}-quick` : date
  writeFileSync(join(dir, `${stem}-scale.svg`), await chart(points))
  out.splice(out.indexOf('## Targets'), 0, `![cost against networks](${stem}-scale.svg)`, '')
  const report = out.join('\n')
  writeFileSync(join(dir, `${stem}.md`), report)
  console.log(report)
  log(`written to bench/results/${stem}.md and ${stem}-scale.svg`)
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
