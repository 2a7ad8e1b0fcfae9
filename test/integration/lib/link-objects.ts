/**
 * Host objects for the link driver's integration tests (as modes/bridge.ts renders them), the
 * engine over the real host layer, and the comparison of what the host layer observes with what
 * iproute2 shows (`ip -j -d link show`, `ip -j addr show`).
 */
import type { Test } from 'tap'
import type { AddrObject, HostObject, LinkObject } from '../../../src/core/objects.js'
import { keyOf } from '../../../src/core/objects.js'
import { Engine, type ReconcileReport } from '../../../src/engine/engine.js'
import type { Host } from '../../../src/host/host.js'
import { groupNumber, ipAddrs, ipLinks } from './ip-json.js'
import { log, type Netns } from './netns.js'

export function bridgeObject(name: string, over: Partial<LinkObject> & Pick<LinkObject, 'alias' | 'mtu' | 'mac'>): LinkObject {
  return { kind: 'link', name, type: 'bridge', up: true, recreate: true, group: 0x74730000, ...over }
}

export function vethObject(name: string, peer: string, peerMac: string, over: Partial<LinkObject> & Pick<LinkObject, 'alias' | 'mtu'>): LinkObject {
  return { kind: 'link', name, type: 'veth', up: true, recreate: true, veth: { peer, peerMac }, ...over }
}

export const addrObject = (link: string, cidr: string): AddrObject => ({ kind: 'addr', link, cidr })

/** The engine over `host`, with one-owner changes as the driver services make them. */
export class Owners {
  readonly engine: Engine

  constructor(host: Host) {
    this.engine = new Engine(host)
  }

  /** Gives `owner` exactly `objects` (undefined: removes the owner), as a request would. */
  set(owner: string, objects: HostObject[] | undefined, doing = `changing ${owner}`, verify = false): Promise<void> {
    return this.engine.change(new Map([[owner, objects]]), { doing, log, ...(verify ? { verify: [owner] } : {}) })
  }

  /** What a reconcile would change now. */
  dryRun(): Promise<ReconcileReport> {
    return this.engine.reconcile({ dryRun: true, log })
  }

  reconcile(): Promise<ReconcileReport> {
    return this.engine.reconcile({ log })
  }
}

/** Keys of objects, for observe queries. */
export const keysOf = (objects: HostObject[]) => objects.map(keyOf)

/**
 * Every link and address object `observed` holds, compared field by field with iproute2's view of
 * the namespace: type (info_kind), alias, MTU, MAC, master, device group, administratively up;
 * addresses as `ip -j addr` lists them (not link-local).
 */
export async function matchesIp(t: Test, ns: Netns, observed: Map<string, HostObject>, what: string): Promise<void> {
  const ip = new Map((await ipLinks(ns)).map((l) => [l.ifname, l]))
  let links = 0
  let addrs = 0
  for (const o of observed.values()) {
    if (o.kind === 'link') {
      links++
      const l = ip.get(o.name)
      t.ok(l, `${what}: ${o.name} is in ip link show`)
      if (!l) continue
      t.same({
        type: o.type, alias: o.alias, mtu: o.mtu, mac: o.mac, master: o.master, group: o.group, up: o.up,
      }, {
        type: l.linkinfo?.info_kind ?? 'device', alias: l.ifalias ?? '', mtu: l.mtu, mac: l.address, master: l.master, group: groupNumber(l.group), up: l.flags.includes('UP'),
      }, `${what}: ${o.name} as observed is what ip -d link show says`)
    } else if (o.kind === 'addr') {
      addrs++
      const have = (await ipAddrs(ns, o.link)).filter((a) => a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`)
      t.ok(have.includes(o.cidr), `${what}: address ${o.cidr} observed on ${o.link} is in ip addr show (${have.join(', ')})`)
    }
  }
  t.ok(links > 0, `${what}: there were links to compare (${links} links, ${addrs} addresses)`)
}
