/**
 * Handler latency and scale, driving tsnet's socket directly with the calls Docker makes for a
 * container (no dockerd: the cost measured is tsnet's). tsnet is `tsnet serve` (dist/cli.js, as
 * the e2e harness starts it) in a network namespace of its own; networks and endpoints are real
 * bridges and veths there. The kernel floor of DeleteEndpoint is measured in the same namespace,
 * the boot reconcile figures are what tsnet's reconciler logs ("boot reconcile done").
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createEngineNetns, destroyEngine, nsExecOk, type Engine } from '../test/e2e/lib/engine.js'
import { reconcilePlan, startTsnet, type TsnetHandle } from '../test/e2e/lib/tsnet.js'
import { mapLimit } from '../test/e2e/lib/resilience.js'
import { runOk } from '../test/e2e/lib/proc.js'
import { PluginClient } from './lib/plugin-client.js'
import { median, p99 } from './lib/stats.js'
import { vethDeleteFloor } from './lib/veth-floor.js'

export const SEQUENCE = [
  'IpamDriver.RequestAddress', 'NetworkDriver.CreateEndpoint', 'NetworkDriver.Join', 'NetworkDriver.ProgramExternalConnectivity',
  'NetworkDriver.EndpointOperInfo', 'NetworkDriver.RevokeExternalConnectivity', 'NetworkDriver.Leave', 'NetworkDriver.DeleteEndpoint',
  'IpamDriver.ReleaseAddress',
] as const

export interface HandlerRow {
  networks: number
  endpoints: number
  concurrency: number
  sequences: number
  /** per call: p50 and p99 in ms */
  calls: Record<string, { p50: number; p99: number }>
  /** CreateEndpoint + Join of one container */
  createJoin: { p50: number; p99: number; all: number[] }
  deleteEndpointMs: number[]
  rssMb: number
}

export interface ScaleFacts {
  createNetworksMs: Array<{ from: number; to: number; ms: number }>
  createEndpointsMs: number
  /** each endpoint's RequestAddress + CreateEndpoint + Join while the endpoints were made */
  attachMs: number[]
  /** RSS samples (MB) at each number of networks */
  rssMb: Record<number, number[]>
  /** boot reconcile durations tsnet logged at the largest size, restart by restart */
  reconcileIntactMs: number[]
  reconcileRebootMs: number[]
  /** how long each restart took to listen */
  reconcileListenMs: number[]
  /** changes a dry-run reconcile planned right after each boot (0: the boot left nothing to do) */
  plannedAfterBoot: number[]
  /** bare netlink deletes of an endpoint-like veth at the largest size, in ms (the kernel floor) */
  vethDeleteFloorMs: number[]
  ruleLinesPerFamily: Record<number, number>
  ipsetMembers: Record<number, number>
}

export interface Net {
  id: string
  poolId: string
}

export const hexId = () => randomBytes(32).toString('hex')

/** Network k gets 10.0.0.0/10 + k * /20: room for 1,024 networks of 4,094 addresses. */
export function subnetOf(k: number): string {
  const base = (10 << 24) + k * 4096
  return `${base >>> 24}.${(base >>> 16) & 255}.${(base >>> 8) & 255}.0/20`
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : NaN
}

export async function createNetwork(c: PluginClient, k: number): Promise<Net> {
  const pool = (await c.call<{ PoolID: string }>('IpamDriver.RequestPool', { AddressSpace: 'LocalDefault', Pool: subnetOf(k), SubPool: '', Options: {}, V6: false })).reply.PoolID
  const gw = (await c.call<{ Address: string }>('IpamDriver.RequestAddress', { PoolID: pool, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } })).reply.Address
  const id = hexId()
  await c.call('NetworkDriver.CreateNetwork', {
    NetworkID: id, Options: { 'com.docker.network.generic': {}, 'com.docker.network.enable_ipv6': false },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: subnetOf(k), Gateway: gw }], IPv6Data: [],
  })
  return { id, poolId: pool }
}

/** A container's endpoint that stays (the 5,000 present); its RequestAddress + CreateEndpoint + Join in ms. */
export async function attach(c: PluginClient, n: Net): Promise<number> {
  const t0 = process.hrtime.bigint()
  const addr = (await c.call<{ Address: string }>('IpamDriver.RequestAddress', { PoolID: n.poolId, Address: '', Options: {} })).reply.Address
  const ep = hexId()
  await c.call('NetworkDriver.CreateEndpoint', { NetworkID: n.id, EndpointID: ep, Interface: { Address: addr, AddressIPv6: '', MacAddress: '' }, Options: {} })
  await c.call('NetworkDriver.Join', { NetworkID: n.id, EndpointID: ep, SandboxKey: `/var/run/docker/netns/${ep.slice(0, 12)}`, Options: {} })
  return Number(process.hrtime.bigint() - t0) / 1e6
}

/** One container's whole life as Docker drives it; the time of each call. */
export async function lifecycle(c: PluginClient, n: Net): Promise<Record<string, number>> {
  const t: Record<string, number> = {}
  const time = async <T>(method: string, body: unknown) => {
    const r = await c.call<T>(method, body)
    t[method] = r.ms
    return r.reply
  }
  const ep = hexId()
  const ref = { NetworkID: n.id, EndpointID: ep }
  const ports = { 'com.docker.network.portmap': [], 'com.docker.network.endpoint.exposedports': [] }
  const { Address } = await time<{ Address: string }>('IpamDriver.RequestAddress', { PoolID: n.poolId, Address: '', Options: {} })
  await time('NetworkDriver.CreateEndpoint', { ...ref, Interface: { Address, AddressIPv6: '', MacAddress: '' }, Options: ports })
  await time('NetworkDriver.Join', { ...ref, SandboxKey: `/var/run/docker/netns/${ep.slice(0, 12)}`, Options: ports })
  await time('NetworkDriver.ProgramExternalConnectivity', { ...ref, Options: ports })
  await time('NetworkDriver.EndpointOperInfo', ref)
  await time('NetworkDriver.RevokeExternalConnectivity', ref)
  await time('NetworkDriver.Leave', ref)
  await time('NetworkDriver.DeleteEndpoint', ref)
  await time('IpamDriver.ReleaseAddress', { PoolID: n.poolId, Address: Address.split('/')[0] })
  return t
}

async function measure(c: PluginClient, nets: Net[], pid: number, concurrency: number, sequences: number, endpoints: number): Promise<HandlerRow> {
  const samples: Array<Record<string, number>> = []
  // Spread over every network present, so a lookup that grew with the count would show.
  await mapLimit(concurrency, Array.from({ length: sequences }, (_, i) => i), async (i) => {
    samples.push(await lifecycle(c, nets[(i * 7919) % nets.length] as Net))
  })
  const calls: HandlerRow['calls'] = {}
  for (const m of SEQUENCE) {
    const xs = samples.map((s) => s[m] ?? NaN)
    calls[m] = { p50: median(xs), p99: p99(xs) }
  }
  const cj = samples.map((s) => (s['NetworkDriver.CreateEndpoint'] ?? 0) + (s['NetworkDriver.Join'] ?? 0))
  const deletes = samples.map((s) => s['NetworkDriver.DeleteEndpoint'] ?? NaN)
  return { networks: nets.length, endpoints, concurrency, sequences, calls, createJoin: { p50: median(cj), p99: p99(cj), all: cj }, deleteEndpointMs: deletes, rssMb: rssMb(pid) }
}

/** The duration tsnet logged for its boot reconcile, in the log written after offset `since`. */
async function bootReconcileMs(ts: TsnetHandle, since: number): Promise<{ ms?: number }> {
  const lines = readFileSync(ts.logPath, 'utf8').slice(since).split('\n')
  const done = lines.map((l) => { try { return JSON.parse(l) as { msg?: string; ms?: number } } catch { return {} } }).find((x) => x.msg === 'boot reconcile done')
  return { ms: done?.ms }
}

export interface HandlerOptions {
  steps: number[]
  endpoints: number
  sequences: number
  /** tsnet restarts at the largest size: with the kernel intact, and after a "reboot" */
  intactBoots: number
  rebootBoots: number
  log: (s: string) => void
}

export async function handlerBench(opts: HandlerOptions): Promise<{ rows: HandlerRow[]; facts: ScaleFacts }> {
  const e: Engine = await createEngineNetns('bench-h')
  const rows: HandlerRow[] = []
  const facts: ScaleFacts = {
    createNetworksMs: [], createEndpointsMs: NaN, attachMs: [], rssMb: {}, reconcileIntactMs: [], reconcileRebootMs: [],
    reconcileListenMs: [], plannedAfterBoot: [], vethDeleteFloorMs: [], ruleLinesPerFamily: {}, ipsetMembers: {},
  }
  let ts: TsnetHandle | undefined
  // `tsnet serve` with its defaults (periodic reconcile included), without a Docker API: garbage
  // collection and network names are off, as for a managed plugin without the socket.
  const env = { DOCKER_HOST: '' }
  const largest = opts.steps[opts.steps.length - 1] as number
  try {
    ts = await startTsnet(e, { logLevel: 'info', env })
    const c = new PluginClient(ts.socketPath)
    const nets: Net[] = []
    for (const target of opts.steps) {
      const from = nets.length
      const t0 = Date.now()
      const made = await mapLimit(8, Array.from({ length: Math.max(0, target - from) }, (_, i) => from + i), (k) => createNetwork(c, k))
      nets.push(...made)
      facts.createNetworksMs.push({ from, to: nets.length, ms: Date.now() - t0 })
      opts.log(`networks ${from} -> ${nets.length}: ${Date.now() - t0} ms`)
      if (from === 0) {
        const t1 = Date.now()
        facts.attachMs = await mapLimit(16, Array.from({ length: opts.endpoints }, (_, i) => i), (i) => attach(c, nets[i % nets.length] as Net))
        facts.createEndpointsMs = Date.now() - t1
        opts.log(`${opts.endpoints} endpoints at concurrency 16: ${facts.createEndpointsMs} ms`)
      }
      const rss: number[] = []
      for (const concurrency of [1, 16]) {
        const row = await measure(c, nets, ts.pid, concurrency, concurrency === 1 ? opts.sequences : opts.sequences * 2, opts.endpoints)
        rows.push(row)
        rss.push(row.rssMb)
        opts.log(`networks ${row.networks} c=${concurrency}: create+join p50 ${row.createJoin.p50.toFixed(2)} ms p99 ${row.createJoin.p99.toFixed(2)} ms, DeleteEndpoint p50 ${median(row.deleteEndpointMs).toFixed(2)} ms, rss ${row.rssMb.toFixed(0)} MB`)
        if (concurrency === 1 && nets.length === largest) {
          // The kernel's share of DeleteEndpoint: the same kind of veth deleted bare, now, here.
          facts.vethDeleteFloorMs = await vethDeleteFloor(e.netnsPath, opts.sequences)
          opts.log(`bare netlink veth delete (kernel floor): p50 ${median(facts.vethDeleteFloorMs).toFixed(2)} ms`)
        }
      }
      rss.push(rssMb(ts.pid))
      facts.rssMb[nets.length] = rss
      const rules = (await nsExecOk(e, ['iptables-save'])).split('\n').filter((l) => /^-A TSNET-|-j TSNET-/.test(l)).length
      facts.ruleLinesPerFamily[nets.length] = rules
      facts.ipsetMembers[nets.length] = (await nsExecOk(e, ['ipset', 'save'])).split('\n').filter((l) => l.startsWith('add tsnet-')).length
    }
    c.close()
    await reconcileFacts()
  } catch (err) {
    opts.log(`handler bench stopped early: ${err instanceof Error ? err.message : String(err)}`)
  } finally {
    await ts?.stop().catch(() => undefined)
    await destroyEngine(e)
  }
  return { rows, facts }

  /** Restarts tsnet; the boot reconcile it logged, and what a dry run plans right after it. */
  async function restart(into: number[]): Promise<void> {
    if (!ts) return
    await ts.stop()
    const mark = readFileSync(ts.logPath, 'utf8').length
    const t0 = Date.now()
    ts = await startTsnet(e, { logLevel: 'info', env })
    facts.reconcileListenMs.push(Date.now() - t0)
    const c = new PluginClient(ts.socketPath)
    try {
      await c.call('NetworkDriver.GetCapabilities', {}) // answered once the boot reconcile is done
    } finally {
      c.close()
    }
    into.push((await bootReconcileMs(ts, mark)).ms ?? NaN)
    facts.plannedAfterBoot.push((await reconcilePlan(ts.socketPath, 120_000)).Changes.length)
  }

  /** Boot reconcile at the largest size: restarts with the kernel intact, then after "reboots". */
  async function reconcileFacts(): Promise<void> {
    for (let i = 0; i < opts.intactBoots; i++) await restart(facts.reconcileIntactMs)
    for (let i = 0; i < opts.rebootBoots; i++) {
      await ts?.stop()
      // A reboot: the namespace goes with every link, rule and set in it, and comes back empty.
      await runOk('ip', ['netns', 'del', e.netns])
      await runOk('ip', ['netns', 'add', e.netns])
      await runOk('ip', ['-n', e.netns, 'link', 'set', 'lo', 'up'])
      await restart(facts.reconcileRebootMs)
    }
    opts.log(`boot reconcile at ${largest} networks / ${opts.endpoints} endpoints: ${facts.reconcileIntactMs.join(', ')} ms (kernel intact), ${facts.reconcileRebootMs.join(', ')} ms (after a reboot)`)
  }
}
