// tsnet against Docker's own bridge driver, side by side, and how tsnet's cost grows with the
// number of networks, judged against issue 12's targets (each with its spread; ratios from one
// run). A report, not a test: it prints a table and writes bench/results/<date>.md and
// bench/results/<date>-scale.svg, and never fails on a missed target. Run as root from a clean
// checkout: npm run bench (BENCH_QUICK=1 for a short smoke run with small sizes, not judged).
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import * as vega from 'vega'
import * as vl from 'vega-lite'
import { REPO_ROOT } from '../test/e2e/lib/tsnet.js'
import { datapathBench, type PathName } from './datapath.js'
import { handlerBench, SEQUENCE, type HandlerRow } from './handlers.js'
import { fmt, median, p90, p99, quantile, spread } from './lib/stats.js'

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

  // 1 + 3: docker run (with tsnet's spawns counted), round trip and throughput
  const runPairs = QUICK ? 6 : 30
  const dp = await datapathBench({ steps: QUICK ? [10] : [10, 1000], rounds: QUICK ? 2 : 8, pings: 200, runPairs, portPairs: QUICK ? 2 : 10, log })
  const dr = dp.dockerRun
  const runRatio = median(dr.tsnetMs) / median(dr.bridgeMs)
  const runRatioP90 = p90(dr.tsnetMs) / p90(dr.bridgeMs)
  const pairRatios = dr.tsnetMs.map((x, i) => x / (dr.bridgeMs[i] ?? NaN))
  const runRow = (what: string, xs: number[]) => `| ${what} | ${xs.length} | ${fmt(median(xs), 0)} | ${fmt(p90(xs), 0)} | ${fmt(Math.min(...xs), 0)}–${fmt(Math.max(...xs), 0)} |`
  const sum = (xs: number[]) => xs.reduce((x, y) => x + y, 0)
  const sp = dr.spawns
  const spawnText = (perRun: number[], programs: string[]) => sp.tool === 'none'
    ? `not counted (${sp.error ?? 'no tracer'})`
    : `${sum(perRun)} in ${perRun.length} runs (max ${perRun.length ? Math.max(...perRun) : 0} per run)${programs.length ? `: ${programs.join(', ')}` : ''}`
  out.push('## docker run --rm (interleaved A/B in one engine)', '', '| driver | runs | median ms | p90 ms | min–max ms |', '|---|---|---|---|---|',
    runRow('tsnet', dr.tsnetMs), runRow('Docker bridge', dr.bridgeMs),
    runRow('tsnet, -p 127.0.0.1::8080', dr.portsTsnetMs), runRow('Docker bridge, -p 127.0.0.1::8080', dr.portsBridgeMs),
    '', `tsnet/bridge without ports: ratio of medians **${fmt(runRatio, 3)}**, of p90s **${fmt(runRatioP90, 3)}**; per-pair ratios ${fmt(median(pairRatios), 3)} [p10 ${fmt(quantile(pairRatios, 0.1), 3)} – p90 ${fmt(p90(pairRatios), 3)}] over ${pairRatios.length} pairs.`,
    '', `Processes tsnet spawned while a tsnet \`docker run --rm\` ran (create, start, exit, removal), traced with ${sp.tool === 'perf' ? '`perf record -e sched:sched_process_exec -p PID` (inherited by its children; tsnet is not slowed)' : sp.tool === 'strace' ? '`strace -f -e trace=execve,execveat -p PID` (perf was not usable: the timings above are slowed by ptrace)' : 'nothing'}:`,
    `without ports ${spawnText(sp.perRun, sp.programs)}; with a published port ${spawnText(sp.perRunPorts, sp.programsPorts)}.`, '')
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
  const hb = await handlerBench({ steps, endpoints: QUICK ? 200 : 5000, sequences: QUICK ? 40 : 200, intactBoots: QUICK ? 2 : 3, rebootBoots: QUICK ? 1 : 2, log })
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
  const largestN = steps[steps.length - 1] as number
  const endpoints = hb.rows[0]?.endpoints ?? 0
  const rssAtLargest = f.rssMb[largestN] ?? []
  const deletes = large?.deleteEndpointMs ?? []
  const floor = f.vethDeleteFloorMs
  const deleteLimit = Math.max(10, median(floor) + 2)
  out.push('## DeleteEndpoint against the kernel floor', '',
    `At ${largestN} networks, concurrency 1: DeleteEndpoint over the socket ${fmt(median(deletes), 2)} ms [p10 ${fmt(quantile(deletes, 0.1), 2)} – p90 ${fmt(p90(deletes), 2)}] over ${deletes.length} calls; ` +
    `a bare netlink delete of the same kind of veth (host end up on a bridge, peer beside it) in the same namespace right after: ${fmt(median(floor), 2)} ms [p10 ${fmt(quantile(floor, 0.1), 2)} – p90 ${fmt(p90(floor), 2)}] over ${floor.length}.`, '')
  out.push('## Scale', '', '| step | result |', '|---|---|',
    ...f.createNetworksMs.map((c) => `| create networks ${c.from} → ${c.to} (concurrency 8, socket) | ${c.ms} ms (${fmt(c.ms / Math.max(1, c.to - c.from), 1)} ms each) |`),
    `| create ${endpoints} endpoints (RequestAddress + CreateEndpoint + Join, concurrency 16) | ${f.createEndpointsMs} ms (each: p50 ${fmt(median(f.attachMs), 1)}, p99 ${fmt(p99(f.attachMs), 1)} ms) |`,
    ...Object.entries(f.ruleLinesPerFamily).map(([n, rules]) => `| iptables lines of tsnet at ${n} networks (per family) | ${rules} (${fmt(rules / Number(n), 3)} per network); ipset members ${f.ipsetMembers[Number(n)]} |`),
    ...Object.entries(f.rssMb).map(([n, mb]) => `| tsnet memory (RSS) at ${n} networks | ${spread(mb, 0)} MB |`),
    `| boot reconcile at ${largestN} networks, ${endpoints} endpoints, kernel intact (tsnet's log) | ${f.reconcileIntactMs.join(', ')} ms (listening after ${f.reconcileListenMs.slice(0, f.reconcileIntactMs.length).join(', ')} ms) |`,
    `| boot reconcile at ${largestN} networks, after a reboot (links, rules, sets gone) | ${f.reconcileRebootMs.join(', ')} ms |`,
    `| changes a dry-run /Tsnet.Reconcile planned right after each boot | ${f.plannedAfterBoot.join(', ')} |`, '')

  // targets (issue 12), each with its spread; a figure measured below the target's sizes is not judged
  const atSize = largestN >= 1000 && endpoints >= 5000
  const judge = (ok: boolean, sized = atSize) => (!sized ? '— (smaller sizes)' : ok ? 'yes' : '**no**')
  const c16 = at(largestN, 16)
  const latency = (r: HandlerRow | undefined) => r ? `${fmt(r.createJoin.p99, 2)} ms (p50 ${fmt(r.createJoin.p50, 2)}, p90 ${fmt(p90(r.createJoin.all), 2)}, max ${fmt(Math.max(...r.createJoin.all), 2)}; ${r.sequences} containers)` : '-'
  const noPortSpawns = sum(sp.perRun)
  const targets: Array<[string, string, string]> = [
    ['`docker run --rm` ≤ 0.97× Docker bridge, median of ≥ 30 interleaved pairs', `${fmt(runRatio, 3)}× (${fmt(median(dr.tsnetMs), 0)} / ${fmt(median(dr.bridgeMs), 0)} ms; per-pair ${fmt(quantile(pairRatios, 0.1), 2)}–${fmt(p90(pairRatios), 2)}, ${pairRatios.length} pairs)`, judge(runRatio <= 0.97, pairRatios.length >= 30)],
    ['`docker run --rm` ≤ 0.97× Docker bridge at p90', `${fmt(runRatioP90, 3)}× (${fmt(p90(dr.tsnetMs), 0)} / ${fmt(p90(dr.bridgeMs), 0)} ms)`, judge(runRatioP90 <= 0.97, pairRatios.length >= 30)],
    [`Create+Join p99 ≤ 5 ms, concurrency 1 (${largestN} networks, ${endpoints} endpoints)`, latency(large), judge((large?.createJoin.p99 ?? Infinity) <= 5)],
    [`Create+Join p99 ≤ 40 ms, concurrency 16 (${largestN} networks, ${endpoints} endpoints)`, latency(c16), judge((c16?.createJoin.p99 ?? Infinity) <= 40)],
    [`${endpoints} endpoints created at concurrency 16 ≤ 15 s (target: 5,000)`, `${fmt(f.createEndpointsMs / 1000, 1)} s (each ${fmt(median(f.attachMs), 1)} ms p50, ${fmt(p99(f.attachMs), 1)} ms p99)`, judge(f.createEndpointsMs <= 15_000, endpoints >= 5000)],
    [`DeleteEndpoint p50 ≤ 10 ms or kernel floor + 2 ms (= ${fmt(deleteLimit, 2)} ms)`, `${fmt(median(deletes), 2)} ms (p10–p90 ${fmt(quantile(deletes, 0.1), 2)}–${fmt(p90(deletes), 2)}); floor ${fmt(median(floor), 2)} ms (${fmt(quantile(floor, 0.1), 2)}–${fmt(p90(floor), 2)})`, judge(median(deletes) <= deleteLimit)],
    [`boot reconcile ≤ 1 s, kernel intact (${largestN} networks, ${endpoints} endpoints)`, `${spread(f.reconcileIntactMs, 0)} ms over ${f.reconcileIntactMs.length} boot(s)`, judge(median(f.reconcileIntactMs) <= 1000)],
    [`boot reconcile ≤ 2 s after a reboot (${largestN} networks, ${endpoints} endpoints)`, `${spread(f.reconcileRebootMs, 0)} ms over ${f.reconcileRebootMs.length} boot(s)`, judge(median(f.reconcileRebootMs) <= 2000)],
    [`memory ≤ 120 MB RSS at ${largestN} networks (target: 1,000)`, `${fmt(Math.max(...rssAtLargest), 0)} MB max (${spread(rssAtLargest, 0)} over ${rssAtLargest.length} samples)`, judge(Math.max(...rssAtLargest) <= 120, largestN >= 1000)],
    ['processes tsnet spawned while containers without ports started and went: 0', sp.tool === 'none' ? 'not counted' : `${noPortSpawns} in ${sp.perRun.length} runs; with a published port ${sum(sp.perRunPorts)} in ${sp.perRunPorts.length} runs (${sp.programsPorts.join(', ') || 'none'})`, sp.tool === 'none' ? '**no** (not counted)' : noPortSpawns === 0 ? 'yes' : '**no**'],
  ]
  out.push('## Targets (issue 12)', '', '| target | measured (spread) | met |', '|---|---|---|', ...targets.map(([t, m, ok]) => `| ${t} | ${m} | ${ok} |`), '',
    'Round trip and throughput (above) are reported for information: issue 12 sets no target for them.', '')
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
  out.splice(out.indexOf('## Targets (issue 12)'), 0, `![cost against networks](${stem}-scale.svg)`, '')
  const report = out.join('\n')
  writeFileSync(join(dir, `${stem}.md`), report)
  console.log(report)
  log(`written to bench/results/${stem}.md and ${stem}-scale.svg`)
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
