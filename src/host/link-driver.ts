/**
 * Links, their addresses, neighbour and FDB entries as objects, over the in-process rtnetlink
 * client: nothing is spawned on a container's path.
 */
import type { Logger } from 'pino'
import { formatCidr, parseCidr } from '../core/addr.js'
import { type AddrObject, type FdbObject, type HostObject, type LinkObject, type NeighObject, type Op, isOwned, keyOf } from '../core/objects.js'
import { TsnetError, withContext } from '../errors.js'
import { type KindDriver, type ObserveScope, keyRest } from './driver.js'
import {
  type Link, type LinkChanges, type LinkSpec, type Rtnl, addFdb, addNeighbour, createLink, deleteAddress, deleteFdb, deleteLink, deleteNeighbour,
  getLink, listAddresses, listFdb, listLinks, listNeighbours, replaceAddress, setLink,
} from './netlink/index.js'

/** The all-zeros MAC of a vxlan device's flood entries (one per remote host). */
const FLOOD_MAC = '00:00:00:00:00:00'

/** Above this many links to look at, one dump of the table is cheaper than one request each. */
const DUMP_OVER = 8

/** An address as the kernel prints it, so desired and observed keys agree. */
export function canonicalCidr(cidr: string): string {
  const c = parseCidr(cidr)
  return c ? formatCidr(c.ip, c.prefix.bits) : cidr
}

/** How long a link this process deleted is expected to show up in a delete event. */
const OWN_DELETE_MS = 10_000

export class LinkDriver implements KindDriver {
  readonly kinds = ['link', 'addr', 'neigh', 'fdb'] as const
  /** Links this process is deleting, until their delete event is seen (by name: when it expires). */
  private readonly ownDeletes = new Map<string, number>()

  constructor(private readonly rtnl: Rtnl) {}

  /**
   * Whether the kernel's report that `name` was deleted is about a deletion of this process's
   * own (consumed once): that is no drift, and must not set off a reconcile.
   */
  deletedHere(name: string): boolean {
    const until = this.ownDeletes.get(name)
    this.ownDeletes.delete(name)
    return until !== undefined && until >= Date.now()
  }

  async observe(scope: ObserveScope): Promise<HostObject[]> {
    const names = new Set<string>()
    const linkKeys = new Set<string>()
    /** Links whose addresses, neighbours or FDB entries were asked about. */
    const onKeys = new Set<string>()
    /**
     * Links whose neighbours or FDB entries were asked about. Only these (and owned VXLAN devices)
     * are dumped for them: one dump per link, so asking it of every bridge for its addresses
     * made a boot at 1,000 networks wait two seconds on 1,000 dumps it then threw away.
     */
    const neighKeys = new Set<string>()
    for (const k of scope.keys) {
      const rest = keyRest(k)
      if (k.startsWith('link ')) {
        names.add(rest)
        linkKeys.add(rest)
      } else {
        const link = rest.split(' ')[0] as string
        names.add(link)
        onKeys.add(link)
        if (!k.startsWith('addr ')) neighKeys.add(link)
      }
    }
    const table = scope.allOwned || names.size > DUMP_OVER ? await listLinks(this.rtnl) : await this.getSome(names)
    const byIndex = new Map(table.map((l) => [l.index, l]))
    const out: HostObject[] = []
    const owned = new Map<string, LinkObject>()
    for (const l of table) {
      const o = this.toObject(l, byIndex)
      if (isOwned(o)) owned.set(l.name, o)
      if ((scope.allOwned && isOwned(o)) || linkKeys.has(l.name)) out.push(o)
    }
    // What sits on links: of the links asked about, and in a full look, of every owned link.
    const present = new Set(table.map((l) => l.name))
    const on = new Set([...onKeys].filter((n) => present.has(n)))
    if (scope.allOwned) for (const n of owned.keys()) on.add(n)
    if (on.size === 0) return out
    const wanted = new Set(scope.keys)
    const keep = (o: HostObject) => wanted.has(keyOf(o)) || (scope.allOwned && owned.has((o as AddrObject).link))
    // One dump of every address (the kernel dumps them all whatever the filter), grouped by link.
    for (const a of await listAddresses(this.rtnl)) {
      const link = byIndex.get(a.link)?.name
      if (!link || !on.has(link) || a.scope === 'link') continue
      const o: AddrObject = { kind: 'addr', link, cidr: a.cidr }
      if (keep(o)) out.push(o)
    }
    for (const name of on) {
      if (owned.get(name)?.type !== 'vxlan' && !neighKeys.has(name)) continue
      for (const o of await this.neighboursOn(name)) if (keep(o)) out.push(o)
    }
    return out
  }

  private async getSome(names: Set<string>): Promise<Link[]> {
    const out: Link[] = []
    for (const n of names) {
      const l = await getLink(this.rtnl, n)
      if (!l) continue
      out.push(l)
    }
    // The links these name by index (a port's bridge, a macvlan's or VLAN's parent, a VXLAN
    // device's underlay), so that their names compare: '#12' never equals the parent a record names.
    for (const l of [...out]) {
      for (const i of [l.master, l.macvlan?.parent, l.vlan?.parent, l.vxlan?.dev]) {
        if (i === undefined || out.some((x) => x.index === i)) continue
        const m = await getLink(this.rtnl, i)
        if (m) out.push(m)
      }
    }
    return out
  }

  private toObject(l: Link, byIndex: Map<number, Link>): LinkObject {
    const nameAt = (i: number | undefined) => (i === undefined ? undefined : byIndex.get(i)?.name ?? `#${i}`)
    const o: LinkObject = {
      kind: 'link', name: l.name, type: (l.kind ?? 'device') as LinkObject['type'], alias: l.alias ?? '', mtu: l.mtu, up: l.up, recreate: false, group: l.group,
      ...(l.mac ? { mac: l.mac } : {}),
      ...(l.master !== undefined ? { master: nameAt(l.master) as string } : {}),
    }
    if (l.vxlan) {
      const dev = nameAt(l.vxlan.dev)
      o.vxlan = { vni: l.vxlan.vni, port: l.vxlan.port, local: l.vxlan.local ?? '', learning: l.vxlan.learning, proxy: l.vxlan.proxy, ...(dev ? { dev } : {}) }
    }
    if (l.macvlan) o.macvlan = { parent: nameAt(l.macvlan.parent) ?? '', mode: l.macvlan.mode as NonNullable<LinkObject['macvlan']>['mode'] }
    if (l.vlan) o.vlan = { parent: nameAt(l.vlan.parent) ?? '', id: l.vlan.id }
    return o
  }

  /**
   * The static neighbour and FDB entries of a vxlan port, and learned ones toward a host it no
   * longer floods to (stale: what a reconcile removes); the static bridge entries of other ports.
   */
  private async neighboursOn(name: string): Promise<HostObject[]> {
    const link = await getLink(this.rtnl, name)
    if (!link) return []
    const out: HostObject[] = []
    const entries = await listFdb(this.rtnl, name)
    if (link.kind !== 'vxlan') {
      for (const f of entries) if (!f.self && f.state.includes('noarp')) out.push({ kind: 'fdb', link: name, mac: f.mac } satisfies FdbObject)
      return out
    }
    for (const n of await listNeighbours(this.rtnl, name)) {
      if (n.mac && n.state.includes('permanent')) out.push({ kind: 'neigh', link: name, ip: n.address, mac: n.mac } satisfies NeighObject)
    }
    // Static bridge entries on the VXLAN port itself (cluster networks pin remote MACs there).
    for (const f of entries) if (!f.self && f.state.includes('noarp')) out.push({ kind: 'fdb', link: name, mac: f.mac } satisfies FdbObject)
    const floods = new Set(entries.filter((f) => f.mac === FLOOD_MAC && f.dst).map((f) => f.dst))
    for (const f of entries) {
      if (!f.dst || !f.self) continue
      if (f.state.includes('permanent') || !floods.has(f.dst)) out.push({ kind: 'fdb', link: name, mac: f.mac, dst: f.dst } satisfies FdbObject)
    }
    return out
  }

  /** A host is no longer flooded to: what the device learned behind it goes too (at once, not after ageing). */
  private async forgetLearnedBehind(link: string, dst: string, log: Logger): Promise<void> {
    const learned = (await listFdb(this.rtnl, link)).filter((f) => f.self && f.dst === dst && f.mac !== FLOOD_MAC && !f.state.includes('permanent'))
    for (const f of learned) {
      await deleteFdb(this.rtnl, { link, mac: f.mac, dst }).catch((err: unknown) => {
        if (!(err instanceof TsnetError && err.kind === 'notfound')) throw err
      })
    }
    if (learned.length > 0) log.info({ host: 'fdb.forgotten', link, dst, macs: learned.map((f) => f.mac) }, 'learned FDB entries behind a departed host removed')
  }

  async apply(ops: readonly Op[], log: Logger): Promise<void> {
    for (const op of ops) {
      try {
        await this.applyOne(op, log)
      } catch (err) {
        throw withContext(err, `${op.op === 'delete' ? 'removing' : 'setting up'} ${describe(op.obj)}`)
      }
    }
  }

  private async applyOne(op: Op, log: Logger): Promise<void> {
    const o = op.obj
    switch (o.kind) {
      case 'link':
        if (op.op === 'delete') {
          this.ownDeletes.set(o.name, Date.now() + OWN_DELETE_MS)
          await deleteLink(this.rtnl, o.name).catch((err: unknown) => {
            this.ownDeletes.delete(o.name)
            throw err
          })
          log.info({ host: 'link.deleted', link: o.name, type: o.type }, 'link deleted')
        } else if (op.op === 'create') {
          await createLink(this.rtnl, specOf(o))
          log.info({ host: 'link.created', link: o.name, type: o.type, mtu: o.mtu, master: o.master, peer: o.veth?.peer, mac: o.mac ?? o.veth?.peerMac }, 'link created')
        } else {
          const changes = changesOf(o, op.from as LinkObject)
          await setLink(this.rtnl, o.name, changes)
          log.info({ host: 'link.updated', link: o.name, changes }, 'link brought to spec')
        }
        return
      case 'addr':
        if (op.op === 'delete') await deleteAddress(this.rtnl, o.link, o.cidr)
        else await replaceAddress(this.rtnl, o.link, o.cidr)
        log.info({ host: op.op === 'delete' ? 'addr.deleted' : 'addr.added', link: o.link, address: o.cidr }, op.op === 'delete' ? 'address removed' : 'address added')
        return
      case 'neigh':
        if (op.op === 'delete') await deleteNeighbour(this.rtnl, { link: o.link, address: o.ip })
        else await addNeighbour(this.rtnl, { link: o.link, address: o.ip, mac: o.mac })
        log.info({ host: `neigh.${op.op}`, link: o.link, ip: o.ip, mac: o.mac }, 'neighbour entry changed')
        return
      case 'fdb': {
        const spec = o.dst === undefined ? { link: o.link, mac: o.mac, master: true } : { link: o.link, mac: o.mac, dst: o.dst }
        if (op.op === 'delete') {
          await deleteFdb(this.rtnl, spec)
          if (o.mac === FLOOD_MAC && o.dst !== undefined) await this.forgetLearnedBehind(o.link, o.dst, log)
        } else {
          // The flood MAC has one entry per remote host; any other MAC lives behind exactly one.
          await addFdb(this.rtnl, spec, o.mac === FLOOD_MAC ? 'append' : 'replace')
        }
        log.info({ host: `fdb.${op.op}`, link: o.link, mac: o.mac, dst: o.dst ?? 'this port (static)' }, 'FDB entry changed')
        return
      }
      default:
        throw new Error(`the link driver does not handle ${o.kind}`)
    }
  }
}

function describe(o: HostObject): string {
  if (o.kind === 'link') return `${o.type} ${o.name}`
  if (o.kind === 'addr') return `address ${o.cidr} on ${o.link}`
  return keyOf(o)
}

function specOf(o: LinkObject): LinkSpec {
  const common = {
    name: o.name, mtu: o.mtu, alias: o.alias, up: o.up,
    ...(o.mac ? { mac: o.mac } : {}), ...(o.group !== undefined ? { group: o.group } : {}), ...(o.master !== undefined ? { master: o.master } : {}),
  }
  if (o.type === 'veth' && o.veth) return { ...common, kind: 'veth', peer: { name: o.veth.peer, mac: o.veth.peerMac, mtu: o.mtu } }
  if (o.type === 'vxlan' && o.vxlan) {
    const v = o.vxlan
    return {
      ...common, kind: 'vxlan',
      vxlan: { vni: v.vni, port: v.port, local: v.local, learning: v.learning, proxy: v.proxy, ...(v.dev ? { dev: v.dev } : {}), ...(v.ageing !== undefined ? { ageing: v.ageing } : {}) },
    }
  }
  if (o.type === 'macvlan' && o.macvlan) return { ...common, kind: 'macvlan', parent: o.macvlan.parent, mode: o.macvlan.mode }
  if (o.type === 'vlan' && o.vlan) return { ...common, kind: 'vlan', parent: o.vlan.parent, id: o.vlan.id }
  return { ...common, kind: 'bridge' }
}

function changesOf(want: LinkObject, have: LinkObject): LinkChanges {
  const c: LinkChanges = {}
  if (want.mtu !== have.mtu) c.mtu = want.mtu
  if (want.mac !== undefined && want.mac !== have.mac) c.mac = want.mac
  if ((want.master ?? '') !== (have.master ?? '')) c.master = want.master ?? null
  if (want.alias !== have.alias) c.alias = want.alias
  if (want.group !== undefined && want.group !== have.group) c.group = want.group
  if (want.up !== have.up) c.up = want.up
  return c
}
