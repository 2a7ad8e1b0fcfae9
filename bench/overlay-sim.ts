/**
 * Beyond this machine, by simulation: a swarm of up to 200 nodes announced to one host through
 * DiscoverNew, as Docker sends it. The host is a namespace running a whole `tsnet serve` (global
 * scope) with one overlay network and one container; the other nodes' addresses live in a
 * namespace of their own on its underlay, so every VXLAN copy really leaves the host. Measured:
 * the entries tsnet programs, the time to program them, and the cost of one broadcast (copies on
 * the wire, microseconds of the sender's time) as the node count grows.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createEngineNetns, destroyEngine, nsExecOk, type Engine } from '../test/e2e/lib/engine.js'
import { TsnetProcess } from '../test/integration/lib/overlay-hosts.js'
import { median, p99 } from './lib/stats.js'

export interface SimStep {
  nodes: number
  /** ms of the DiscoverNew calls that brought the count here (each call, in order). */
  discoverMs: number[]
  floodEntries: number
  vtepMembers: number
  /** Packets on the underlay per frame sent to an unknown MAC (flooded like a broadcast). */
  copiesPerFrame: number
  /** Sender's time per such frame, µs (the kernel replicates it in the sender's context). */
  usPerFrame: number
}

const NET = 's1m2n3e4t5w6o7r8k9i0dabcd'
const EP = 'e5'.repeat(32)
const FRAMES = 2000

const nsLike = (e: Engine) => ({ name: e.netns, prefix: ['nsenter', `--net=${e.netnsPath}`] as const, run: async () => ({ code: 0, stdout: '', stderr: '' }), ok: async () => '' })

/** Sends FRAMES UDP datagrams to an address whose MAC nobody has: each is flooded to every node. */
const SENDER = `
const dgram = require('node:dgram'); const s = dgram.createSocket('udp4'); const buf = Buffer.alloc(64)
let left = ${FRAMES}; let failed = 0; const t0 = process.hrtime.bigint()
const next = (err) => { if (err) failed++; if (left-- === 0) { console.log(Number(process.hrtime.bigint() - t0) / 1e3, failed); s.close(); return } s.send(buf, 9, '10.210.0.250', next) }
next()`

/** Packets eth0 sent (/proc/net/dev is the reader's namespace's; /sys would be the root one's). */
async function txPackets(e: Engine): Promise<number> {
  const line = (await nsExecOk(e, ['cat', '/proc/net/dev'])).split('\n').find((l) => l.trim().startsWith('eth0:')) ?? ''
  return Number(line.split(':')[1]?.trim().split(/\s+/)[9])
}

export async function simulate(steps: readonly number[], log: (s: string) => void, dir: string): Promise<SimStep[]> {
  const host = await createEngineNetns('bvsim')
  const peers = await createEngineNetns('bvpeers')
  const ctr = await createEngineNetns('bvsimc')
  const tsnet = new TsnetProcess(nsLike(host) as never, join(dir, 'sim-tsnet'), ['--scope', 'global', '--log-level', 'warn'])
  try {
    await nsExecOk(host, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peers.netnsPath])
    await nsExecOk(host, ['ip', 'addr', 'add', '10.252.0.1/16', 'dev', 'eth0'])
    await nsExecOk(host, ['ip', 'link', 'set', 'eth0', 'up'])
    const batch = ['addr add 10.252.0.2/16 dev eth0', 'link set eth0 up', ...Array.from({ length: 200 }, (_, i) => `addr add 10.252.1.${i + 1}/16 dev eth0`)]
    await nsExecOk(peers, ['ip', '-batch', '-'], { input: batch.join('\n') + '\n' })
    // The other nodes take the datagrams in silence (no ICMP back).
    await nsExecOk(peers, ['iptables', '-A', 'INPUT', '-p', 'udp', '--dport', '4789', '-j', 'DROP'])
    await tsnet.start()
    await tsnet.ok('NetworkDriver.DiscoverNew', { DiscoveryType: 1, DiscoveryData: { Address: '10.252.0.1', BindAddress: '10.252.0.1', Self: true } })
    const ipv4 = [{ AddressSpace: '', Pool: '10.210.0.0/24', Gateway: '10.210.0.1/24' }]
    const { Options } = await tsnet.ok('NetworkDriver.AllocateNetwork', { NetworkID: NET, Options: {}, IPv4Data: ipv4 })
    await tsnet.ok('NetworkDriver.CreateNetwork', { NetworkID: NET, Options: { 'com.docker.network.generic': Options }, IPv4Data: ipv4, IPv6Data: [] })
    await tsnet.ok('NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: EP, Interface: { Address: '10.210.0.2/24' }, Options: {} })
    const joined = await tsnet.ok('NetworkDriver.Join', { NetworkID: NET, EndpointID: EP, SandboxKey: '/var/run/docker/netns/sim', Options: {} })
    const src = (joined.InterfaceName as { SrcName: string }).SrcName
    await nsExecOk(host, ['ip', 'link', 'set', src, 'netns', ctr.netnsPath])
    await nsExecOk(ctr, ['ip', 'link', 'set', src, 'name', 'eth0'])
    await nsExecOk(ctr, ['ip', 'addr', 'add', '10.210.0.2/24', 'dev', 'eth0'])
    await nsExecOk(ctr, ['ip', 'link', 'set', 'eth0', 'up'])
    await nsExecOk(ctr, ['ip', 'neigh', 'replace', '10.210.0.250', 'lladdr', '02:00:00:00:00:fa', 'dev', 'eth0', 'nud', 'permanent'])
    const vxlan = `tsvx-${NET.slice(0, 10)}`
    const out: SimStep[] = []
    let announced = 0
    for (const target of steps) {
      const discoverMs: number[] = []
      for (; announced < target; announced++) {
        const t0 = process.hrtime.bigint()
        await tsnet.ok('NetworkDriver.DiscoverNew', { DiscoveryType: 1, DiscoveryData: { Address: `10.252.1.${announced + 1}`, BindAddress: '', Self: false } })
        discoverMs.push(Number(process.hrtime.bigint() - t0) / 1e6)
      }
      const fdb = (await nsExecOk(host, ['bridge', 'fdb', 'show', 'dev', vxlan])).split('\n').filter((l) => l.startsWith('00:00:00:00:00:00'))
      const members = (await nsExecOk(host, ['ipset', 'list', 'tsnet-vtep4'])).split('\n').filter((l) => /^10\.252\.1\.\d+/.test(l))
      const before = await txPackets(host)
      const [usText, failedText] = (await nsExecOk(ctr, [process.execPath, '-e', SENDER])).trim().split(' ')
      const us = Number(usText)
      if (Number(failedText) > 0) log(`sim: ${failedText} of ${FRAMES} datagrams could not be sent`)
      const copies = (await txPackets(host)) - before
      const step = { nodes: target, discoverMs, floodEntries: fdb.length, vtepMembers: members.length, copiesPerFrame: copies / FRAMES, usPerFrame: us / FRAMES }
      log(`sim ${target} nodes: ${fdb.length} flood entries, ${members.length} VTEP members; DiscoverNew p50 ${median(discoverMs).toFixed(2)} ms; ${step.copiesPerFrame.toFixed(1)} copies and ${step.usPerFrame.toFixed(1)} µs per broadcast`)
      out.push(step)
    }
    writeFileSync(join(dir, 'sim-tsnet.log'), tsnet.logTail(200))
    return out
  } finally {
    await tsnet.stop().catch(() => undefined)
    for (const e of [ctr, host, peers]) await destroyEngine(e).catch(() => undefined)
  }
}

export const simSummary = (s: SimStep[]) => s.map((x) => ({ ...x, p50: median(x.discoverMs), p99: p99(x.discoverMs), total: x.discoverMs.reduce((a, b) => a + b, 0) }))
