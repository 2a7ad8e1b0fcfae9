/** `tsnet doctor`'s readings of the host around tsnet (read only): routes, uplink, br_netfilter, forwarding, FORWARD's policy. */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createRunner } from '../host/exec.js'
import { listLinks, listRoutes, sharedRtnl } from '../host/netlink/index.js'
import type { HostReadings } from '../observe/host-checks.js'

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

export async function readHost(procSys: string): Promise<HostReadings> {
  const rtnl = sharedRtnl()
  const links = new Map((await listLinks(rtnl)).map((l) => [l.index, l]))
  const routes: HostReadings['routes'] = []
  let uplink: HostReadings['uplink']
  for (const family of [4, 6] as const) {
    for (const r of await listRoutes(rtnl, family)) {
      const dev = r.dev !== undefined ? links.get(r.dev) : undefined
      if (r.dst !== 'default') routes.push({ dst: r.dst, ...(dev ? { dev: dev.name } : {}) })
      else if (family === 4 && dev && !uplink) uplink = { dev: dev.name, mtu: dev.mtu }
    }
  }
  const [v4, v6, p4, p6] = await Promise.all([
    read(join(procSys, 'net/ipv4/ip_forward')), read(join(procSys, 'net/ipv6/conf/all/forwarding')), policyOf('iptables'), policyOf('ip6tables'),
  ])
  return {
    routes,
    ...(uplink ? { uplink } : {}),
    brNetfilter: existsSync(join(procSys, 'net/bridge/bridge-nf-call-iptables')),
    forwarding: { ...(v4 !== undefined ? { 4: v4 } : {}), ...(v6 !== undefined ? { 6: v6 } : {}) },
    forwardPolicy: { ...(p4 !== undefined ? { 4: p4 } : {}), ...(p6 !== undefined ? { 6: p6 } : {}) },
  }
}
