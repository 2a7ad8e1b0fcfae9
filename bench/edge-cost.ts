// Per-packet cost of tsnet's firewall against the number of networks: the rules a forwarded
// packet is evaluated against, and the container round trip, at 10 and at 500 tsnet networks, with
// Docker's bridge in the same engine as the reference. A report, not a test: it prints and writes
// bench/results/edge-cost-<date>.md.
//   npm run bench:edge            (as root; BENCH_NETWORKS=10,500 BENCH_PINGS=200 to change)
import { destroyEngine, ensureBusyboxImage, nsExecOk, startEngine, type Engine } from '../test/e2e/lib/engine.js'
import { containerIPv4, runSleeper } from '../test/e2e/lib/containers.js'
import { startTsnet } from '../test/e2e/lib/tsnet.js'
import { mapLimit } from '../test/e2e/lib/resilience.js'
import { runBench, writeReport } from './lib/report.js'

const STEPS = (process.env.BENCH_NETWORKS ?? '10,500').split(',').map(Number)
const PINGS = Number(process.env.BENCH_PINGS ?? 200)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const TS = ['-d', 'tsnet', '--ipam-driver', 'tsnet']
const CHAINS = ['FORWARD', 'DOCKER-USER', 'TSNET-FORWARD', 'TSNET-FROM', 'TSNET-TO']

interface Rtt { avg: number; min: number; mdev: number }

/** busybox ping -A (next ping as soon as the reply is in): round trip min/avg and spread. */
async function ping(e: Engine, from: string, to: string): Promise<Rtt> {
  const out = await e.dockerOk(['exec', from, 'ping', '-A', '-q', '-c', String(PINGS), to])
  const m = /= ([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(out)
  if (!m) throw new Error(`no ping summary: ${out}`)
  const [min, avg, max] = [Number(m[1]), Number(m[2]), Number(m[3])]
  return { min: min * 1000, avg: avg * 1000, mdev: (max - min) * 500 }
}

/**
 * Rules evaluated per packet on a path: reset the counters, send N pings, then in each chain the
 * packet visited, the position of the rule that took it (every rule above it was evaluated too).
 */
async function rulesOnPath(e: Engine, from: string, to: string): Promise<{ evaluated: number; path: string[] }> {
  await nsExecOk(e, ['iptables', '-w', '10', '-Z'])
  const n = 50
  await e.docker(['exec', from, 'ping', '-A', '-q', '-c', String(n), to])
  let evaluated = 0
  const path: string[] = []
  for (const chain of CHAINS) {
    const out = await nsExecOk(e, ['iptables', '-w', '10', '-L', chain, '-v', '-x', '-n', '--line-numbers']).catch(() => '')
    for (const line of out.split('\n')) {
      const m = /^(\d+)\s+(\d+)\s+\d+\s+(\S+)/.exec(line)
      // a rule that took at least n packets is on the path (requests and replies both count)
      if (m && Number(m[2]) >= n) {
        evaluated += Number(m[1])
        path.push(`${chain}#${m[1]} ${m[3]}`)
        break
      }
    }
  }
  return { evaluated, path }
}

async function tsnetRuleCount(e: Engine): Promise<number> {
  const all = (await nsExecOk(e, ['iptables-save'])) + (await nsExecOk(e, ['ip6tables-save']))
  return all.split('\n').filter((l) => l.startsWith('-A TSNET-') || / -j TSNET-/.test(l)).length
}

async function main(): Promise<void> {
  const e = await startEngine('bench-edge')
  const rows: string[] = []
  try {
    const ts = await startTsnet(e, { logLevel: 'warn', env: { TSNET_GC_INTERVAL: '0' } })
    await ensureBusyboxImage(e)
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.200.0.0/24', 'a'])
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.200.1.0/24', '-o', 'tsnet.allow=a icmp', 'b'])
    await e.dockerOk(['network', 'create', '--subnet', '10.199.0.0/24', 'dbr'])
    for (const [c, net] of [['a1', 'a'], ['a2', 'a'], ['b1', 'b'], ['d1', 'dbr'], ['d2', 'dbr']] as const) await runSleeper(e, c, ['--network', net])
    const ip = Object.fromEntries(await Promise.all(['a2', 'b1', 'd2'].map(async (c) => [c, await containerIPv4(e, c)] as const)))
    let existing = 2
    rows.push('| tsnet networks | tsnet rule lines | rules evaluated: same network | rules evaluated: between networks (policy) | rtt same network µs (avg/min/mdev) | rtt between networks µs | rtt Docker bridge µs | ratio tsnet/Docker |', '|---|---|---|---|---|---|---|---|')
    for (const target of STEPS) {
      const missing = Array.from({ length: Math.max(0, target - existing) }, (_, i) => existing + i)
      const t0 = Date.now()
      await mapLimit(8, missing, (k) => e.dockerOk(['network', 'create', ...TS, '--subnet', `10.${201 + Math.floor(k / 250)}.${k % 250}.0/24`, `n${k}`]))
      if (missing.length) console.log(`created ${missing.length} networks in ${Date.now() - t0} ms`)
      existing = Math.max(existing, target)
      const intraPath = await rulesOnPath(e, 'a1', ip.a2 as string)
      const interPath = await rulesOnPath(e, 'a1', ip.b1 as string)
      const samples: Record<'intra' | 'inter' | 'docker', Rtt[]> = { intra: [], inter: [], docker: [] }
      for (let r = 0; r < ROUNDS; r++) {
        samples.intra.push(await ping(e, 'a1', ip.a2 as string))
        samples.docker.push(await ping(e, 'd1', ip.d2 as string))
        samples.inter.push(await ping(e, 'a1', ip.b1 as string))
      }
      const med = (xs: Rtt[]) => {
        const s = [...xs].sort((x, y) => x.avg - y.avg)
        return s[Math.floor(s.length / 2)] as Rtt
      }
      const fmt = (x: Rtt) => `${x.avg.toFixed(0)}/${x.min.toFixed(0)}/${x.mdev.toFixed(0)}`
      const [intra, inter, docker] = [med(samples.intra), med(samples.inter), med(samples.docker)]
      rows.push(`| ${existing} | ${await tsnetRuleCount(e)} | ${intraPath.evaluated} (${intraPath.path.join(' → ')}) | ${interPath.evaluated} (${interPath.path.join(' → ')}) | ${fmt(intra)} | ${fmt(inter)} | ${fmt(docker)} | ${(intra.avg / docker.avg).toFixed(2)} |`)
      console.log(rows.at(-1))
    }
    await ts.stop()
  } finally {
    await destroyEngine(e)
  }
  const date = new Date().toISOString().slice(0, 10)
  const report = [`# tsnet edge cost, ${date}`, '', `Round trips: busybox \`ping -A -c ${PINGS}\` between two containers, median of ${ROUNDS} interleaved rounds; "rules evaluated" counts, per chain the packet visits, the rules up to the one that took it (from the rule counters).`, '', ...rows, ''].join('\n')
  writeReport('edge-cost', report)
}

runBench(main)
