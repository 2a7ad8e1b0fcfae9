/** `tsnet doctor`'s readings of the host around tsnet (read only): routes, uplink, br_netfilter, forwarding, FORWARD's policy, UDP sockets, the swarm's underlay. */
import { existsSync } from 'node:fs'
import { readFile, readdir, readlink } from 'node:fs/promises'
import { join } from 'node:path'
import { createRunner } from '../host/exec.js'
import { listAddresses, listLinks, listRoutes, sharedRtnl } from '../host/netlink/index.js'
import type { HostReadings } from '../observe/host-checks.js'
import { parseProcUdp, type UdpSocket } from '../observe/proc-net-udp.js'

const read = (path: string) => readFile(path, 'utf8').then((s) => s.trim(), () => undefined)

/** FORWARD's policy, from `iptables -S FORWARD` ("-P FORWARD DROP"); undefined when it cannot be read. */
async function policyOf(tool: 'iptables' | 'ip6tables'): Promise<string | undefined> {
  try {
    const r = await createRunner().run(tool, ['-w', '10', '-S', 'FORWARD'])
    return r.code === 0 ? /^-P FORWARD (\S+)/m.exec(r.stdout)?.[1] : undefined
  } catch {
    return undefined
  }
}

/** Which of `inodes` some process holds open: a /proc/PID/fd entry links to "socket:[inode]". */
async function heldByProcesses(inodes: ReadonlySet<number>, procRoot: string): Promise<Set<number>> {
  const held = new Set<number>()
  if (inodes.size === 0) return held
  const pids = (await readdir(procRoot).catch(() => [] as string[])).filter((p) => /^\d+$/.test(p))
  for (const pid of pids) {
    const dir = join(procRoot, pid, 'fd')
    // A process may end between the listings: what cannot be read holds nothing.
    for (const fd of await readdir(dir).catch(() => [] as string[])) {
      const m = /^socket:\[(\d+)\]$/.exec(await readlink(join(dir, fd)).catch(() => ''))
      if (m && inodes.has(Number(m[1]))) held.add(Number(m[1]))
    }
    if (held.size === inodes.size) break
  }
  return held
}

/**
 * The UDP sockets on `ports` in the network namespace `procNet` belongs to (/proc/net, or
 * /proc/PID/net), each marked whether a process holds it; undefined when neither file can be
 * read (a host without IPv6 has no udp6: that is no socket).
 */
export async function readUdpSockets(ports: ReadonlySet<number>, procNet = '/proc/net', procRoot = '/proc'): Promise<UdpSocket[] | undefined> {
  const [v4, v6] = await Promise.all([read(join(procNet, 'udp')), read(join(procNet, 'udp6'))])
  if (v4 === undefined && v6 === undefined) return undefined
  const sockets = [...parseProcUdp(v4 ?? '', 4), ...parseProcUdp(v6 ?? '', 6)].filter((s) => ports.has(s.port))
  const held = await heldByProcesses(new Set(sockets.map((s) => s.inode).filter((i) => i !== 0)), procRoot)
  return sockets.map((s) => ({ ...s, process: held.has(s.inode) }))
}

/** What doctor knows besides the host: this node's swarm address and the peer book's size. */
export interface SwarmFacts {
  self?: string
  swarm?: HostReadings['swarm']
  /** The overlay networks' VXLAN ports (only their sockets are looked at). */
  vxlanPorts?: ReadonlySet<number>
}

export async function readHost(procSys: string, facts: SwarmFacts = {}): Promise<HostReadings> {
  const rtnl = sharedRtnl()
  const links = new Map((await listLinks(rtnl)).map((l) => [l.index, l]))
  const routes: HostReadings['routes'] = []
  let uplink: HostReadings['uplink']
  const defaultRoutes: Array<4 | 6> = []
  for (const family of [4, 6] as const) {
    for (const r of await listRoutes(rtnl, family)) {
      const dev = r.dev !== undefined ? links.get(r.dev) : undefined
      if (r.dst !== 'default') routes.push({ dst: r.dst, ...(dev ? { dev: dev.name } : {}) })
      else if (!defaultRoutes.includes(family)) defaultRoutes.push(family)
      if (r.dst === 'default' && family === 4 && dev && !uplink) uplink = { dev: dev.name, mtu: dev.mtu }
    }
  }
  const [v4, v6, p4, p6, udp] = await Promise.all([
    read(join(procSys, 'net/ipv4/ip_forward')), read(join(procSys, 'net/ipv6/conf/all/forwarding')), policyOf('iptables'), policyOf('ip6tables'),
    facts.vxlanPorts?.size ? readUdpSockets(facts.vxlanPorts) : Promise.resolve(undefined),
  ])
  let underlay: HostReadings['underlay']
  if (facts.self !== undefined) {
    const found = (await listAddresses(rtnl)).find((a) => a.address === facts.self)
    const dev = found && links.get(found.link)
    if (dev) underlay = { dev: dev.name, mtu: dev.mtu, family: facts.self.includes(':') ? 6 : 4 }
  }
  return {
    routes,
    defaultRoutes,
    ...(uplink ? { uplink } : {}),
    brNetfilter: existsSync(join(procSys, 'net/bridge/bridge-nf-call-iptables')),
    forwarding: { ...(v4 !== undefined ? { 4: v4 } : {}), ...(v6 !== undefined ? { 6: v6 } : {}) },
    forwardPolicy: { ...(p4 !== undefined ? { 4: p4 } : {}), ...(p6 !== undefined ? { 6: p6 } : {}) },
    ...(udp ? { udp } : {}),
    ...(underlay ? { underlay } : {}),
    ...(facts.swarm ? { swarm: facts.swarm } : {}),
  }
}
