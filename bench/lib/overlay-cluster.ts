/**
 * The bench's cluster: three private engines on an underlay, a swarm across them, tsnet's managed
 * plugin in global scope on each (test/e2e/lib does the work), plus a raw VXLAN path with no
 * firewall on the same underlay: two "hosts" with a bridge and a VXLAN port each and a container
 * namespace behind a veth (the limit tsnet and Docker's overlay are measured against), and, when
 * asked, a second such pair on its own VNI, for bench/overlay.ts to give a Docker container's rules.
 */
import { createEngineNetns, destroyEngine, ensureBusyboxImage, nsExecOk, startDockerd, type Engine } from '../../test/e2e/lib/engine.js'
import { removeAllPlugins } from '../../test/e2e/lib/plugin.js'
import { createUnderlay, type Underlay } from '../../test/e2e/lib/underlay.js'
import { installPlugin, swarmInit, swarmJoin, waitReady, type SwarmNode } from '../../test/e2e/lib/swarm.js'
import { importNetImage } from '../datapath.js'

export const PLUGIN = 'tsnet-swarm:latest'
export const SUBNET = '10.251.0'

export interface Cluster {
  underlay: Underlay
  nodes: SwarmNode[]
  /** Raw VXLAN: host namespaces (with the VXLAN port) and container namespaces behind them. */
  raw: { hosts: Engine[]; ctrs: Engine[]; ips: string[] }
  /** A second raw path, the same but on VNI 998 (bench/overlay.ts gives its containers Docker's nat rules); empty unless asked for. */
  rawct: { hosts: Engine[]; ctrs: Engine[]; ips: string[] }
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

export async function createCluster(prefix: string, log: (s: string) => void, extraSettings: string[] = [], opts: { secondRawPath?: boolean } = {}): Promise<Cluster> {
  const underlay = await createUnderlay(`${prefix}ul`)
  const nodes: SwarmNode[] = []
  const raw: Cluster['raw'] = { hosts: [], ctrs: [], ips: ['10.213.0.2', '10.213.0.3'] }
  const rawct: Cluster['rawct'] = { hosts: [], ctrs: [], ips: ['10.214.0.2', '10.214.0.3'] }
  const cluster: Cluster = {
    underlay, nodes, raw, rawct,
    async destroy() {
      for (const n of nodes) if (n.e.running) await removeAllPlugins(n.e).catch(() => undefined)
      for (const e of [...nodes.map((n) => n.e), ...raw.hosts, ...raw.ctrs, ...rawct.hosts, ...rawct.ctrs]) await destroyEngine(e).catch(() => undefined)
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
    if (opts.secondRawPath) {
      const rc = await rawHost(underlay, `${prefix}rc`, `${SUBNET}.13`, `${SUBNET}.14`, rawct.ips[0] as string, 998)
      const rd = await rawHost(underlay, `${prefix}rd`, `${SUBNET}.14`, `${SUBNET}.13`, rawct.ips[1] as string, 998)
      rawct.hosts.push(rc.host, rd.host)
      rawct.ctrs.push(rc.ctr, rd.ctr)
    }
    return cluster
  } catch (err) {
    await cluster.destroy()
    throw err
  }
}
