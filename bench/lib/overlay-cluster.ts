/**
 * The bench's cluster: three private engines on an underlay, a swarm across them, tsnet's managed
 * plugin in global scope on each (test/e2e/lib does the work), plus a raw VXLAN path with no
 * firewall on the same underlay: two "hosts" with a bridge and a VXLAN port each and a container
 * namespace behind a veth (the limit tsnet and Docker's overlay are measured against), and, when
 * asked, more such pairs, each on its own VNI, for bench/overlay.ts to add Docker's rules to.
 */
import { createEngineNetns, destroyEngine, ensureBusyboxImage, nsExecOk, startDockerd, type Engine } from '../../test/e2e/lib/engine.js'
import { removeAllPlugins } from '../../test/e2e/lib/plugin.js'
import { createUnderlay, type Underlay } from '../../test/e2e/lib/underlay.js'
import { installPlugin, swarmInit, swarmJoin, waitReady, type SwarmNode } from '../../test/e2e/lib/swarm.js'
import { importNetImage } from '../datapath.js'

export const PLUGIN = 'tsnet-swarm:latest'
export const SUBNET = '10.251.0'

/** Raw VXLAN: host namespaces (with the VXLAN port) and container namespaces behind them. */
export interface RawPath { hosts: Engine[]; ctrs: Engine[]; ips: string[] }

export interface Cluster {
  underlay: Underlay
  nodes: SwarmNode[]
  raw: RawPath
  /** More raw paths, the same but each on a VNI of its own (VNI 998, 997, ...; containers in 10.214.0.0/24, 10.215.0.0/24, ...), as many as asked for. */
  extraRaw: RawPath[]
  destroy(): Promise<void>
}

async function rawHost(u: Underlay, name: string, ip: string, peer: string, ctrIp: string, vni = 999): Promise<{ host: Engine; ctr: Engine }> {
  const host = await createEngineNetns(name)
  await u.attach(host, ip)
  const ctr = await createEngineNetns(`${name}c`)
  const sh = (e: Engine, ...argv: string[]) => nsExecOk(e, argv)
  await sh(host, 'sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=0')
  await sh(host, 'ip', 'link', 'add', 'br0', 'type', 'bridge')
  await sh(host, 'ip', 'link', 'add', 'vx0', 'type', 'vxlan', 'id', String(vni), 'dstport', '4789', 'local', ip, 'learning', 'ageing', '30')
  await sh(host, 'ip', 'link', 'set', 'vx0', 'master', 'br0', 'mtu', '1450', 'up')
  await sh(host, 'bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'vx0', 'dst', peer)
  await sh(host, 'ip', 'link', 'add', 'hv0', 'mtu', '1450', 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', '1450', 'netns', ctr.netnsPath)
  await sh(host, 'ip', 'link', 'set', 'hv0', 'master', 'br0', 'up')
  await sh(host, 'ip', 'link', 'set', 'br0', 'up')
  await sh(ctr, 'ip', 'addr', 'add', `${ctrIp}/24`, 'dev', 'eth0')
  await sh(ctr, 'ip', 'link', 'set', 'eth0', 'up')
  return { host, ctr }
}

export async function createCluster(prefix: string, log: (s: string) => void, extraSettings: string[] = [], opts: { extraRawPaths?: number } = {}): Promise<Cluster> {
  const underlay = await createUnderlay(`${prefix}ul`)
  const nodes: SwarmNode[] = []
  const raw: RawPath = { hosts: [], ctrs: [], ips: ['10.213.0.2', '10.213.0.3'] }
  const extraRaw: RawPath[] = []
  const cluster: Cluster = {
    underlay, nodes, raw, extraRaw,
    async destroy() {
      for (const n of nodes) if (n.e.running) await removeAllPlugins(n.e).catch(() => undefined)
      for (const e of [...nodes.map((n) => n.e), ...[raw, ...extraRaw].flatMap((p) => [...p.hosts, ...p.ctrs])]) await destroyEngine(e).catch(() => undefined)
      await underlay.destroy().catch(() => undefined)
    },
  }
  try {
    for (const [i, letter] of ['a', 'b', 'c'].entries()) {
      const e = await createEngineNetns(`${prefix}${letter}`)
      const ip = `${SUBNET}.${i + 1}`
      await underlay.attach(e, ip)
      await startDockerd(e)
      await ensureBusyboxImage(e)
      await importNetImage(e)
      nodes.push({ e, ip })
    }
    log('engines up; installing the plugin')
    await installPlugin(nodes, PLUGIN, (n) => [
      'TSNET_SCOPE=global', `state.source=${n.e.stateDir}/tsnet-state`, `docker-socket.source=${n.e.sockPath}`, 'DOCKER_HOST=unix:///var/run/docker.sock', ...extraSettings,
    ])
    const [a, b, c] = nodes as [SwarmNode, SwarmNode, SwarmNode]
    const token = await swarmInit(a)
    await swarmJoin(b, a, token)
    await swarmJoin(c, a, token)
    await waitReady(a, 3)
    const ra = await rawHost(underlay, `${prefix}ra`, `${SUBNET}.11`, `${SUBNET}.12`, raw.ips[0] as string)
    const rb = await rawHost(underlay, `${prefix}rb`, `${SUBNET}.12`, `${SUBNET}.11`, raw.ips[1] as string)
    raw.hosts.push(ra.host, rb.host)
    raw.ctrs.push(ra.ctr, rb.ctr)
    for (let i = 0; i < (opts.extraRawPaths ?? 0); i++) {
      const path: RawPath = { hosts: [], ctrs: [], ips: [`10.${214 + i}.0.2`, `10.${214 + i}.0.3`] }
      extraRaw.push(path)
      const [ua, ub] = [`${SUBNET}.${13 + 2 * i}`, `${SUBNET}.${14 + 2 * i}`]
      const x = await rawHost(underlay, `${prefix}r${i}x`, ua, ub, path.ips[0] as string, 998 - i)
      path.hosts.push(x.host)
      path.ctrs.push(x.ctr)
      const y = await rawHost(underlay, `${prefix}r${i}y`, ub, ua, path.ips[1] as string, 998 - i)
      path.hosts.push(y.host)
      path.ctrs.push(y.ctr)
    }
    return cluster
  } catch (err) {
    await cluster.destroy()
    throw err
  }
}
