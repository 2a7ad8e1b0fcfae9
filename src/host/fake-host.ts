/**
 * A host for unit and contract tests: a store of objects that records what was applied. It does
 * not emulate the kernel beyond one rule the engine relies on (a deleted link takes what sits on
 * it along), and can be told to fail chosen changes.
 */
import type { Logger } from 'pino'
import { FULL_HOST, type HostFacts } from '../core/host-facts.js'
import { type HostObject, type LinkObject, type Op, type Proto, isOwned, keyOf, kindOfKey, linkOf } from '../core/objects.js'
import { conflict, invalid, TsnetError } from '../errors.js'
import type { PortFlow } from '../core/flows.js'
import type { Host, ObserveQuery } from './host.js'
import type { Binding, Reservation } from './port-reservations.js'

/** A link as a test reads it: the object, its addresses, and a veth's other end. */
export type FakeLink = LinkObject & { addresses: string[]; peer?: string }

export class FakeHost implements Host {
  /** Everything on this host, by key. Tests may add objects to play other owners or drift. */
  readonly objects = new Map<string, HostObject>()
  /**
   * Changes that fail on their next attempt: `kind` (any change of that kind), `kind:op`
   * (e.g. `link:create`), or `observe`.
   */
  readonly failNext = new Set<string>()
  /** Host ports other processes hold, as `proto/port`. */
  readonly busyPorts = new Set<string>()
  readonly calls: string[] = []
  routes: string[] = []
  mtuOfDefaultRoute: number | undefined = 1500
  /** Addresses of this host and the link (with its MTU) that has each: the underlay of overlay networks. */
  readonly underlays = new Map<string, { link: string; mtu: number }>()
  hostFacts: HostFacts = FULL_HOST
  /** When set, a binding to an address outside it fails as the kernel's EADDRNOTAVAIL does in the real reserver. */
  localAddresses: Set<string> | undefined
  /** Every reservation asked for, with its bindings. */
  readonly reserved: Array<{ proto: Proto; bindings: Binding[] }> = []
  /** Each forgetPortFlows call's flows, in order (conntrack entries are not modelled). */
  readonly forgottenFlows: PortFlow[][] = []
  private nextEphemeral = 32768

  private maybeFail(what: string, kind?: string): void {
    this.calls.push(what)
    for (const name of [what, kind]) {
      if (name !== undefined && this.failNext.delete(name)) throw new TsnetError('host', `injected failure in ${what}`)
    }
  }

  async observe(query: ObserveQuery): Promise<Map<string, HostObject>> {
    this.maybeFail('observe')
    const out = new Map<string, HostObject>()
    for (const k of query.keys) {
      const o = this.objects.get(k)
      if (o) out.set(k, structuredClone(o))
    }
    if (query.allOwned) {
      for (const [k, o] of this.objects) {
        if (o.kind === 'sysctl') continue
        const on = linkOf(o)
        const owned = on !== undefined ? this.isOwnedLink(on) : isOwned(o)
        if (owned) out.set(k, structuredClone(o))
      }
    }
    return out
  }

  private isOwnedLink(name: string): boolean {
    const l = this.objects.get(`link ${name}`)
    return l !== undefined && isOwned(l)
  }

  async apply(ops: readonly Op[], _log: Logger): Promise<void> {
    for (const op of ops) {
      this.maybeFail(`${op.obj.kind}:${op.op}`, op.obj.kind)
      const key = keyOf(op.obj)
      if (op.op === 'delete') {
        this.objects.delete(key)
        if (op.obj.kind === 'link') this.dropOn(op.obj.name)
        if (op.obj.kind === 'portHold') this.busyPorts.delete(`${op.obj.proto}/${op.obj.port}`)
        continue
      }
      if (op.obj.kind === 'link' && op.obj.master !== undefined && !this.objects.has(`link ${op.obj.master}`)) {
        throw new TsnetError('host', `no link named ${op.obj.master} to attach ${op.obj.name} to`)
      }
      if (op.op === 'create' && op.obj.kind === 'portHold') {
        const busy = `${op.obj.proto}/${op.obj.port}`
        if (this.busyPorts.has(busy)) throw conflict(`host port ${busy} is already in use on this host`)
        this.busyPorts.add(busy)
      }
      this.objects.set(key, structuredClone(op.obj))
    }
  }

  /** A deleted link takes its addresses, neighbours and FDB entries along, as in the kernel. */
  private dropOn(link: string): void {
    for (const [k, o] of this.objects) if (linkOf(o) === link) this.objects.delete(k)
  }

  async facts(): Promise<HostFacts> {
    return this.hostFacts
  }

  async routedPrefixes(): Promise<string[]> {
    this.maybeFail('routedPrefixes')
    return [...this.routes]
  }

  async defaultRouteMtu(): Promise<number | undefined> {
    return this.mtuOfDefaultRoute
  }

  async underlayOf(address: string): Promise<{ link: string; mtu: number } | undefined> {
    return this.underlays.get(address)
  }

  async reservePort(proto: Proto, bindings: Binding[], candidates: number[] | undefined): Promise<Reservation> {
    this.maybeFail('reservePort')
    this.reserved.push({ proto, bindings: bindings.map((b) => ({ ...b })) })
    const foreign = bindings.find((b) => this.localAddresses && b.address !== '0.0.0.0' && b.address !== '::' && !this.localAddresses.has(b.address))
    if (foreign) throw invalid(`host IP ${foreign.address} is not an address of this host`)
    const tries = candidates ?? [this.nextEphemeral++]
    const port = tries.find((p) => !this.busyPorts.has(`${proto}/${p}`))
    if (port === undefined) throw conflict(`host port ${proto}/${tries[0]} is already in use on this host`)
    this.busyPorts.add(`${proto}/${port}`)
    const obj: HostObject = { kind: 'portHold', proto, port, bindings: bindings.map((b) => ({ family: b.family, address: b.address })) }
    this.objects.set(keyOf(obj), obj)
    return {
      port,
      release: async () => {
        this.objects.delete(keyOf(obj))
        this.busyPorts.delete(`${proto}/${port}`)
      },
    }
  }

  async forgetPortFlows(flows: readonly PortFlow[], _log: Logger): Promise<void> {
    this.maybeFail('forgetPortFlows')
    this.forgottenFlows.push([...flows])
  }

  async releasePorts(): Promise<void> {
    for (const [k, o] of this.objects) {
      if (o.kind !== 'portHold') continue
      this.objects.delete(k)
      this.busyPorts.delete(`${o.proto}/${o.port}`)
    }
  }

  // Views for tests that read the host as the kernel would show it.

  /** Links by name, with their addresses; a veth's container end appears beside it (as it does until Docker moves it). */
  get links(): Map<string, FakeLink> {
    const out = new Map<string, FakeLink>()
    for (const l of this.ofKind('link')) {
      const addresses = this.ofKind('addr').filter((a) => a.link === l.name).map((a) => a.cidr)
      out.set(l.name, { ...l, addresses, ...(l.veth ? { peer: l.veth.peer } : {}) })
      if (l.veth) out.set(l.veth.peer, { kind: 'link', name: l.veth.peer, type: 'veth', alias: '', mtu: l.mtu, mac: l.veth.peerMac, up: false, recreate: false, addresses: [], peer: l.name })
    }
    return out
  }

  /** ipset members by `set entry`. */
  get sets(): Map<string, { set: string; entry: string; comment: string }> {
    return new Map(this.ofKind('setEntry').map((e) => [`${e.set} ${e.entry}`, { set: e.set, entry: e.entry, comment: e.comment }]))
  }

  /** DNAT rules as `family rule`. */
  get portRules(): Set<string> {
    return new Set(this.ofKind('dnat').map((r) => `${r.family} ${r.rule}`))
  }

  /** Held host ports as `proto/port` (tsnet's and, through busyPorts, other processes'). */
  get heldPorts(): Set<string> {
    return this.busyPorts
  }

  /** Device group of each link that has one. */
  get groups(): Map<string, number> {
    return new Map(this.ofKind('link').flatMap((l) => (l.group !== undefined ? [[l.name, l.group] as const] : [])))
  }

  /** tsnet's chains are in place. */
  get edge(): boolean {
    return this.objects.has('chains')
  }

  /** Kernel settings by slash path. */
  get sysctls(): Map<string, string> {
    return new Map(this.ofKind('sysctl').map((o) => [o.path, o.value]))
  }

  /** The objects of one kind, by key. */
  ofKind<K extends HostObject['kind']>(kind: K): Array<Extract<HostObject, { kind: K }>> {
    return [...this.objects.entries()].filter(([k]) => kindOfKey(k) === kind).map(([, o]) => o as Extract<HostObject, { kind: K }>)
  }

  /** A comparable picture of everything the fake holds (sysctls aside: tsnet never takes them back). */
  state(): string {
    return JSON.stringify([...this.objects.entries()].filter(([, o]) => o.kind !== 'sysctl').sort(([a], [b]) => a.localeCompare(b)))
  }
}
