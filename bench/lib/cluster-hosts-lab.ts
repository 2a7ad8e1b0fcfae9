/**
 * The lab of bench/cluster-hosts.ts: beside the overlay bench's swarm (bench/lib/overlay-cluster.ts:
 * three engines with tsnet's Swarm plugin, Docker's overlay and a raw VXLAN pair, all on one
 * underlay), one etcd member and three more engines on the same underlay running tsnet's managed
 * plugin on etcd (cluster networks, issue 14). Two tsnet daemons cannot share a host, so the two
 * tsnet modes live on different engines; every path crosses the same underlay bridge.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createEngineNetns, destroyEngine, ensureBusyboxImage, startDockerd, DOCKER_BIN, type Engine } from '../../test/e2e/lib/engine.js'
import { assemblePlugin, createPluginOn, enablePluginOn, liveSocket, startEtcd, vxlanEntries, type EtcdCluster, type EtcdHost } from '../../test/e2e/lib/etcd-hosts.js'
import { pluginPid, removeAllPlugins } from '../../test/e2e/lib/plugin.js'
import type { Underlay } from '../../test/e2e/lib/underlay.js'
import { importNetImage } from '../datapath.js'
import { PluginClient } from './plugin-client.js'

export const ETCD_PLUGIN = 'tsnet-managed:latest'
const ETCD_IP = '10.251.0.30'
const HOST_IPS = ['10.251.0.21', '10.251.0.22', '10.251.0.23']

export interface EtcdLab {
  etcd: EtcdCluster
  hosts: EtcdHost[]
  destroy(): Promise<void>
}

/** One etcd member and three engines with the plugin on it, on `u` (names `<prefix>e0`, `<prefix>d|e|f`). */
export async function createEtcdHosts(u: Underlay, prefix: string, log: (s: string) => void): Promise<EtcdLab> {
  const hosts: EtcdHost[] = []
  const buildDir = join(u.ns.stateDir, `${prefix}-plugin-build`)
  const assembled = assemblePlugin(buildDir)
  const etcd = await startEtcd(u, [`${prefix}e0`], [ETCD_IP])
  const lab: EtcdLab = {
    etcd, hosts,
    async destroy() {
      for (const h of hosts) {
        if (h.e.running) {
          const ids = (await h.e.docker(['ps', '-aq'], { timeoutMs: 10_000 })).stdout.split('\n').filter(Boolean)
          if (ids.length) await h.e.docker(['rm', '-f', ...ids], { timeoutMs: 120_000 })
          await removeAllPlugins(h.e).catch(() => undefined)
        }
        await destroyEngine(h.e).catch(() => undefined)
      }
      await etcd.stop(0).catch(() => undefined)
      for (const m of etcd.members) await destroyEngine(m.ns).catch(() => undefined)
    },
  }
  try {
    for (const [i, letter] of ['d', 'e', 'f'].entries()) {
      const e = await createEngineNetns(`${prefix}${letter}`)
      await u.attach(e, HOST_IPS[i] as string)
      hosts.push({ e, ip: HOST_IPS[i] as string })
    }
    await Promise.all(hosts.map((h) => startDockerd(h.e)))
    for (const h of hosts) {
      await ensureBusyboxImage(h.e)
      await importNetImage(h.e)
    }
    await assembled
    for (const h of hosts) {
      await createPluginOn(h, ETCD_PLUGIN, buildDir)
      // GC off: the bench's 1,000 endpoints are made through the plugin's socket, which Docker does not know.
      await enablePluginOn(h, ETCD_PLUGIN, [
        `TSNET_ETCD_ENDPOINTS=${etcd.endpoints.join(',')}`, `state.source=${h.e.stateDir}/tsnet-state`, 'TSNET_LOG_LEVEL=info', 'TSNET_GC_INTERVAL=0',
        `docker-socket.source=${h.e.sockPath}`, 'DOCKER_HOST=unix:///var/run/docker.sock',
      ])
    }
    log('etcd hosts up')
    return lab
  } catch (err) {
    await lab.destroy()
    throw err
  }
}

/** Resident memory of a host's plugin process, MB. */
export function pluginRssMb(h: EtcdHost): number {
  const pid = h.pluginId ? pluginPid(h.e, h.pluginId) : undefined
  if (!pid) return NaN
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : NaN
}

export interface EntryCounts { fdbToPeers: number; neigh: number; byVtep: Map<string, number> }

/** What tsnet programmed on a VXLAN device: FDB entries toward other hosts (by VTEP) and neighbour entries. */
export async function entryCounts(e: Engine, vxlan: string): Promise<EntryCounts> {
  const { fdb, neigh } = await vxlanEntries(e, [vxlan])
  const byVtep = new Map<string, number>()
  for (const f of fdb) if (f.dst) byVtep.set(f.dst, (byVtep.get(f.dst) ?? 0) + 1)
  return { fdbToPeers: [...byVtep.values()].reduce((a, b) => a + b, 0), neigh: neigh.filter((n) => n.lladdr).length, byVtep }
}

/**
 * `docker run` with its output read as it comes: `firstLineMs` is when the container printed its
 * first line (here: right after its first reply), counted from the moment `docker run` was started.
 */
export function timedRun(e: Engine, args: readonly string[], timeoutMs = 60_000): Promise<{ code: number | null; firstLineMs: number; totalMs: number; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint()
    const since = () => Number(process.hrtime.bigint() - t0) / 1e6
    const child = spawn(DOCKER_BIN, ['-H', e.host, 'run', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    let firstLineMs = NaN
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString()
      if (Number.isNaN(firstLineMs) && out.includes('\n')) firstLineMs = since()
    })
    child.stderr.on('data', (c: Buffer) => { err += c.toString() })
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, firstLineMs, totalMs: since(), out, err })
    })
  })
}

/**
 * `count` endpoints on a host's cluster network, made as Docker makes them (RequestAddress, then
 * CreateEndpoint) through the plugin's socket, `concurrency` at a time; no container behind them.
 */
export async function addEndpoints(h: EtcdHost, networkId: string, poolId: string, count: number, concurrency = 8): Promise<string[]> {
  const socket = liveSocket(h)
  if (!socket) throw new Error(`${h.e.name}: the plugin is not running`)
  const client = new PluginClient(socket, concurrency)
  const ids: string[] = []
  let next = 0
  try {
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next++
        const { reply } = await client.call<{ Address: string }>('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: {} })
        const id = randomBytes(32).toString('hex')
        await client.call('NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: id, Interface: { Address: reply.Address, AddressIPv6: '', MacAddress: '' }, Options: {} })
        ids.push(id)
      }
    }))
  } finally {
    client.close()
  }
  return ids
}
