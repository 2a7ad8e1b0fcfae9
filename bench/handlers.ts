/**
 * Handler latency and scale, driving tsnet's socket directly with the calls Docker makes for a
 * container (no dockerd: the cost measured is tsnet's). tsnet runs in a network namespace of its
 * own; networks and endpoints are real bridges and veths there.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createEngineNetns, destroyEngine, nsExecOk, type Engine } from '../test/e2e/lib/engine.js'
import { startTsnet, type TsnetHandle } from '../test/e2e/lib/tsnet.js'
import { mapLimit } from '../test/e2e/lib/resilience.js'
import { runOk } from '../test/e2e/lib/proc.js'
import { PluginClient } from './lib/plugin-client.js'
import { median, p99 } from './lib/stats.js'

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
  createJoin: { p50: number; p99: number }
  rssMb: number
}

export interface ScaleFacts {
  createNetworksMs: Array<{ from: number; to: number; ms: number }>
  createEndpointsMs: number
  rssMb: Record<number, number>
  reconcileIntactMs?: number
  reconcileRebootMs?: number
  reconcileListenMs?: number
  ruleLinesPerFamily: Record<number, number>
  ipsetMembers: Record<number, number>
}

interface Net {
  id: string
  poolId: string
}

const hexId = () => randomBytes(32).toString('hex')

/** Network k gets 10.0.0.0/10 + k * /20: room for 1,024 networks of 4,094 addresses. */
function subnetOf(k: number): string {
  const base = (10 << 24) + k * 4096
  return `${base >>> 24}.${(base >>> 16) & 255}.${(base >>> 8) & 255}.0/20`
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : NaN
}

async function createNetwork(c: PluginClient, k: number): Promise<Net> {
  const pool = (await c.call<{ PoolID: string }>('IpamDriver.RequestPool', { AddressSpace: 'LocalDefault', Pool: subnetOf(k), SubPool: '', Options: {}, V6: false })).reply.PoolID
  const gw = (await c.call<{ Address: string }>('IpamDriver.RequestAddress', { PoolID: pool, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } })).reply.Address
  const id = hexId()
  await c.call('NetworkDriver.CreateNetwork', {
    NetworkID: id, Options: { 'com.docker.network.generic': {}, 'com.docker.network.enable_ipv6': false },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: subnetOf(k), Gateway: gw }], IPv6Data: [],
  })
  return { id, poolId: pool }
}

/** A container's endpoint that stays (the 5,000 present). */
async function attach(c: PluginClient, n: Net): Promise<void> {
  const addr = (await c.call<{ Address: string }>('IpamDriver.RequestAddress', { PoolID: n.poolId, Address: '', Options: {} })).reply.Address
  const ep = hexId()
  await c.call('NetworkDriver.CreateEndpoint', { NetworkID: n.id, EndpointID: ep, Interface: { Address: addr, AddressIPv6: '', MacAddress: '' }, Options: {} })
  await c.call('NetworkDriver.Join', { NetworkID: n.id, EndpointID: ep, SandboxKey: `/var/run/docker/netns/${ep.slice(0, 12)}`, Options: {} })
}

/** One container's whole life as Docker drives it; the time of each call. */
async function lifecycle(c: PluginClient, n: Net): Promise<Record<string, number>> {
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
  return { networks: nets.length, endpoints, concurrency, sequences, calls, createJoin: { p50: median(cj), p99: p99(cj) }, rssMb: rssMb(pid) }
}

/** The duration tsnet logged for its boot reconcile, in the log written after offset `since`. */
async function bootReconcileMs(ts: TsnetHandle, since: number): Promise<{ ms?: number }> {
  const lines = readFileSync(ts.logPath, 'utf8').slice(since).split('\n')
  const done = lines.map((l) => { try { return JSON.parse(l) as { msg?: string; ms?: number } } catch { return {} } }).find((x) => x.msg === 'boot reconcile done')
  return { ms: done?.ms }
}

export async function handlerBench(opts: { steps: number[]; endpoints: number; sequences: number; log: (s: string) => void }): Promise<{ rows: HandlerRow[]; facts: ScaleFacts }> {
  const e: Engine = await createEngineNetns('bench-h')
  const rows: HandlerRow[] = []
  const facts: ScaleFacts = { createNetworksMs: [], createEndpointsMs: 0, rssMb: {}, ruleLinesPerFamily: {}, ipsetMembers: {} }
  let ts: TsnetHandle | undefined
  const env = { TSNET_GC_INTERVAL: '0', DOCKER_HOST: 'unix:///nonexistent/docker.sock' }
  try {
    ts = await startTsnet(e, { logLevel: 'info', env })
    let c = new PluginClient(ts.socketPath)
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
        await mapLimit(16, Array.from({ length: opts.endpoints }, (_, i) => i), (i) => attach(c, nets[i % nets.length] as Net))
        facts.createEndpointsMs = Date.now() - t1
        opts.log(`${opts.endpoints} endpoints: ${facts.createEndpointsMs} ms`)
      }
      for (const concurrency of [1, 16]) {
        const row = await measure(c, nets, ts.pid, concurrency, concurrency === 1 ? opts.sequences : opts.sequences * 2, opts.endpoints)
        rows.push(row)
        opts.log(`networks ${row.networks} c=${concurrency}: create+join p50 ${row.createJoin.p50.toFixed(2)} ms p99 ${row.createJoin.p99.toFixed(2)} ms, rss ${row.rssMb.toFixed(0)} MB`)
      }
      facts.rssMb[nets.length] = rssMb(ts.pid)
      const rules = (await nsExecOk(e, ['iptables-save'])).split('\n').filter((l) => /^-A TSNET-|-j TSNET-/.test(l)).length
      facts.ruleLinesPerFamily[nets.length] = rules
      facts.ipsetMembers[nets.length] = (await nsExecOk(e, ['ipset', 'save'])).split('\n').filter((l) => l.startsWith('add tsnet-')).length
    }
    // Boot reconcile at the largest size: a restart with the kernel intact, then after a "reboot"
    // (every link, rule and set of the namespace gone).
    c.close()
    await reconcileFacts()
  } catch (err) {
    opts.log(`handler bench stopped early: ${err instanceof Error ? err.message : String(err)}`)
  } finally {
    await ts?.stop().catch(() => undefined)
    await destroyEngine(e)
  }
  return { rows, facts }

  async function reconcileFacts(): Promise<void> {
    if (!ts) return
    let c: PluginClient
    await ts.stop()
    let mark = readFileSync(ts.logPath, 'utf8').length
    const t2 = Date.now()
    ts = await startTsnet(e, { logLevel: 'info', env })
    facts.reconcileListenMs = Date.now() - t2
    c = new PluginClient(ts.socketPath)
    await c.call('NetworkDriver.GetCapabilities', {}) // answered once the reconcile is done
    facts.reconcileIntactMs = (await bootReconcileMs(ts, mark)).ms
    c.close()
    await ts.stop()
    // A reboot: the namespace goes with every link, rule and set in it, and comes back empty.
    await runOk('ip', ['netns', 'del', e.netns])
    await runOk('ip', ['netns', 'add', e.netns])
    await runOk('ip', ['-n', e.netns, 'link', 'set', 'lo', 'up'])
    mark = readFileSync(ts.logPath, 'utf8').length
    ts = await startTsnet(e, { logLevel: 'info', env })
    c = new PluginClient(ts.socketPath)
    await c.call('NetworkDriver.GetCapabilities', {})
    facts.reconcileRebootMs = (await bootReconcileMs(ts, mark)).ms
    c.close()
    opts.log(`boot reconcile at ${opts.steps[opts.steps.length - 1]} networks / ${opts.endpoints} endpoints: ${facts.reconcileIntactMs} ms (kernel intact), ${facts.reconcileRebootMs} ms (after a reboot)`)
  }
}
