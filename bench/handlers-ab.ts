/**
 * Per-call latency of two tsnet builds in one run: this checkout's against an earlier one
 * (`TSNET_AB_OLD`, the dist/ directory of another build). Each build serves its own namespace
 * with the same networks and endpoints present; one container's calls (bench/handlers.ts
 * SEQUENCE) run against A, then B, then B, then A, ... at concurrency 1, so drift of the machine
 * (disk, load) falls on both alike. Prints per-call p50s, the ratio of medians and the median
 * of the per-pair ratios; then IPAM alone, with a fixed idle time before ReleaseAddress.
 *
 *   TSNET_AB_OLD=/path/to/old/dist npm run bench:handlers-ab
 *   (AB_NETWORKS, AB_ENDPOINTS, AB_SEQUENCES set the sizes; defaults 10, 1000, 300)
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createEngineNetns, destroyEngine, type Engine } from '../test/e2e/lib/engine.js'
import { REPO_ROOT, startTsnet, type TsnetHandle } from '../test/e2e/lib/tsnet.js'
import { mapLimit } from '../test/e2e/lib/resilience.js'
import { runOk } from '../test/e2e/lib/proc.js'
import { PluginClient } from './lib/plugin-client.js'
import { fmt, median, p99 } from './lib/stats.js'
import { SEQUENCE, attach, createNetwork, lifecycle, type Net } from './handlers.js'

const OLD = process.env.TSNET_AB_OLD
const NETWORKS = Number(process.env.AB_NETWORKS ?? 10)
const ENDPOINTS = Number(process.env.AB_ENDPOINTS ?? 1000)
const SEQUENCES = Number(process.env.AB_SEQUENCES ?? 300)

interface Side {
  label: string
  engine: Engine
  tsnet: TsnetHandle
  client: PluginClient
  nets: Net[]
  samples: Array<Record<string, number>>
  /** IPAM alone: RequestAddress then ReleaseAddress, by the idle time before ReleaseAddress (ms) */
  ipam: Map<number, Array<Record<string, number>>>
}

/**
 * A durable write costs more after the process sat idle (here 0.7 ms right after another call,
 * 1.2 ms after 20 ms: threads and the disk queue asleep), so a call's figure in a lifecycle depends
 * on how long the call before it waited on the kernel. IPAM alone, with a fixed idle time before
 * ReleaseAddress, compares the builds' own work.
 */
const IDLE_MS = [0, 20]

async function ipamPair(s: Side, idleMs: number): Promise<Record<string, number>> {
  const n = s.nets[0] as Net
  const { reply, ms } = await s.client.call<{ Address: string }>('IpamDriver.RequestAddress', { PoolID: n.poolId, Address: '', Options: {} })
  if (idleMs > 0) await new Promise((r) => setTimeout(r, idleMs))
  const release = await s.client.call('IpamDriver.ReleaseAddress', { PoolID: n.poolId, Address: reply.Address.split('/')[0] })
  return { 'IpamDriver.RequestAddress': ms, 'IpamDriver.ReleaseAddress': release.ms }
}

const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`)

async function describe(dir: string): Promise<string> {
  return (await runOk('git', ['-C', dir, 'describe', '--always', '--dirty'])).stdout.trim()
}

async function prepare(label: string, engineName: string, cli: string | undefined): Promise<Side> {
  const engine = await createEngineNetns(engineName)
  // No Docker API: garbage collection and names are off, as for a managed plugin without the socket.
  const tsnet = await startTsnet(engine, { logLevel: 'info', env: { DOCKER_HOST: '' }, ...(cli ? { cli } : {}) })
  const client = new PluginClient(tsnet.socketPath)
  const nets = await mapLimit(8, Array.from({ length: NETWORKS }, (_, k) => k), (k) => createNetwork(client, k))
  await mapLimit(16, Array.from({ length: ENDPOINTS }, (_, i) => i), (i) => attach(client, nets[i % nets.length] as Net))
  log(`${label}: ${NETWORKS} networks, ${ENDPOINTS} endpoints present`)
  return { label, engine, tsnet, client, nets, samples: [], ipam: new Map(IDLE_MS.map((ms) => [ms, []])) }
}

async function main(): Promise<void> {
  if (!OLD) throw new Error('set TSNET_AB_OLD to the dist/ directory of the build to compare with')
  const sides: Side[] = []
  try {
    sides.push(await prepare('A (old)', 'bench-ha', join(OLD, 'cli.js')))
    sides.push(await prepare('B (this checkout)', 'bench-hb', undefined))
    const [a, b] = sides as [Side, Side]
    for (let i = 0; i < SEQUENCES; i++) {
      // ABBA: neither build always goes first.
      for (const s of i % 2 === 0 ? [a, b] : [b, a]) s.samples.push(await lifecycle(s.client, s.nets[(i * 7919) % s.nets.length] as Net))
    }
    for (let i = 0; i < SEQUENCES; i++) {
      for (const idle of IDLE_MS) for (const s of i % 2 === 0 ? [a, b] : [b, a]) s.ipam.get(idle)?.push(await ipamPair(s, idle))
    }
    const oldRev = await describe(join(OLD, '..')).catch(() => OLD)
    const newRev = await describe(REPO_ROOT)
    const lines = [
      `# tsnet handler latency, two builds in one run, ${new Date().toISOString().slice(0, 10)}`, '',
      `A = ${oldRev}, B = ${newRev}. Each in a namespace of its own with ${NETWORKS} networks and ${ENDPOINTS} endpoints present;`,
      `${SEQUENCES} container lifecycles each, alternating A and B (ABBA), concurrency 1. Cells in ms.`, '',
      '| call | A p50 | B p50 | A p99 | B p99 | B/A of p50s | median of per-pair B/A |',
      '|---|---|---|---|---|---|---|',
    ]
    for (const m of [...SEQUENCE, 'sequence']) {
      const xs = (s: Side) => s.samples.map((t) => (m === 'sequence' ? Object.values(t).reduce((x, y) => x + y, 0) : t[m] ?? NaN))
      const [xa, xb] = [xs(a), xs(b)]
      const pairs = xa.map((v, i) => (xb[i] as number) / v)
      lines.push(`| ${m} | ${fmt(median(xa), 2)} | ${fmt(median(xb), 2)} | ${fmt(p99(xa), 2)} | ${fmt(p99(xb), 2)} | ${fmt(median(xb) / median(xa), 2)} | ${fmt(median(pairs), 2)} |`)
    }
    lines.push('', `IPAM alone: ${SEQUENCES} RequestAddress + ReleaseAddress pairs per build, alternating, with a fixed idle time before ReleaseAddress.`, '',
      '| call | idle before (ms) | A p50 | B p50 | B/A of p50s | median of per-pair B/A |', '|---|---|---|---|---|---|')
    for (const idle of IDLE_MS) {
      for (const m of ['IpamDriver.RequestAddress', 'IpamDriver.ReleaseAddress']) {
        const [xa, xb] = [a, b].map((s) => (s.ipam.get(idle) ?? []).map((x) => x[m] ?? NaN)) as [number[], number[]]
        const pairs = xa.map((v, i) => (xb[i] as number) / v)
        lines.push(`| ${m} | ${m === 'IpamDriver.ReleaseAddress' ? idle : '-'} | ${fmt(median(xa), 2)} | ${fmt(median(xb), 2)} | ${fmt(median(xb) / median(xa), 2)} | ${fmt(median(pairs), 2)} |`)
      }
    }
    for (const s of sides) {
      const log = readFileSync(s.tsnet.logPath, 'utf8')
      const count = (msg: string) => log.split('\n').filter((l) => l.includes(msg)).length
      lines.push('', `${s.label}: drift reconciles ${count("behind tsnet's back")}, reconcile passes logged ${count('reconcile')}`)
    }
    const text = lines.join('\n') + '\n'
    process.stdout.write(text)
    const dir = join(REPO_ROOT, 'bench', 'results')
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, `${new Date().toISOString().slice(0, 10)}-handlers-ab.md`), text)
  } finally {
    for (const s of sides) {
      s.client.close()
      await s.tsnet.stop().catch(() => undefined)
      await destroyEngine(s.engine)
    }
  }
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`)
  process.exitCode = 1
})
