/** An in-memory Host for unit and contract tests: records links and rules, can be told to fail. */
import type { Logger } from 'pino'
import type { Family } from '../core/addr.js'
import { type SetEntry, entryKey } from '../core/edge-plan.js'
import type { PortFlow } from '../core/flows.js'
import { conflict, invalid, TsnetError } from '../errors.js'
import type { BridgeSpec, Host, LinkInfo, VethSpec } from './host.js'
import type { Binding, Reservation } from './port-reservations.js'
import type { SysctlOutcome } from './sysctl.js'

export interface FakeLink extends LinkInfo {
  addresses: string[]
  peer?: string
}

export class FakeHost implements Host {
  readonly links = new Map<string, FakeLink>()
  /** ipset entries by `set entry`. */
  readonly sets = new Map<string, SetEntry>()
  /** DNAT rules as `family rule`. */
  readonly portRules = new Set<string>()
  edge = false
  readonly sysctls = new Map<string, string>()
  /** Held host ports as `proto/port`; tests add entries to play other processes. */
  readonly heldPorts = new Set<string>()
  /** Device group of each bridge. */
  readonly groups = new Map<string, number>()
  routes: string[] = []
  mtuOfDefaultRoute: number | undefined = 1500
  /** Names of operations that throw on their next call, e.g. 'ensureVeth'. */
  readonly failNext = new Set<keyof Host>()
  readonly calls: string[] = []

  private maybeFail(op: keyof Host): void {
    this.calls.push(op)
    if (this.failNext.delete(op)) throw new TsnetError('host', `injected failure in ${op}`)
  }

  async ensureBridge(spec: BridgeSpec, _log: Logger): Promise<void> {
    this.maybeFail('ensureBridge')
    const existing = this.links.get(spec.name)
    if (existing && existing.alias !== spec.alias) throw conflict(`a link named ${spec.name} already exists and is not tsnet's`)
    const addresses = [...new Set([...(existing?.addresses ?? []), ...spec.addresses])]
    this.links.set(spec.name, { name: spec.name, kind: 'bridge', alias: spec.alias, mtu: spec.mtu, mac: spec.mac, up: true, addresses })
    this.groups.set(spec.name, spec.group)
  }

  async ensureBridges(specs: BridgeSpec[], log: Logger): Promise<Map<string, unknown>> {
    const failed = new Map<string, unknown>()
    for (const spec of specs) await this.ensureBridge(spec, log).catch((err: unknown) => failed.set(spec.name, err))
    return failed
  }

  async ensureVeth(spec: VethSpec, _log: Logger): Promise<void> {
    this.maybeFail('ensureVeth')
    const existing = this.links.get(spec.hostName)
    if (existing && existing.alias !== spec.alias) throw conflict(`a link named ${spec.hostName} already exists and is not tsnet's`)
    if (!this.links.has(spec.bridge)) throw new TsnetError('host', `bridge ${spec.bridge} does not exist`)
    if (!existing && this.links.has(spec.peerName)) throw new TsnetError('host', `link ${spec.peerName} exists (RTNETLINK answers: File exists)`)
    this.links.set(spec.hostName, { name: spec.hostName, kind: 'veth', alias: spec.alias, mtu: spec.mtu, master: spec.bridge, up: true, addresses: [], peer: spec.peerName })
    this.links.set(spec.peerName, { name: spec.peerName, kind: 'veth', mtu: spec.mtu, mac: spec.mac, up: false, addresses: [], peer: spec.hostName })
  }

  async deleteOwnedLink(name: string, alias: string, _log: Logger): Promise<void> {
    this.maybeFail('deleteOwnedLink')
    const link = this.links.get(name)
    if (!link || link.alias !== alias) return
    this.links.delete(name)
    this.groups.delete(name)
    if (link.peer) this.links.delete(link.peer)
  }

  async routedPrefixes(): Promise<string[]> {
    this.maybeFail('routedPrefixes')
    return [...this.routes]
  }

  async defaultRouteMtu(): Promise<number | undefined> {
    return this.mtuOfDefaultRoute
  }

  async getLink(name: string): Promise<LinkInfo | undefined> {
    return this.links.get(name)
  }

  async listOwnedLinks(): Promise<Array<{ name: string; alias: string }>> {
    this.maybeFail('listOwnedLinks')
    return [...this.links.values()].flatMap((l) => (l.alias?.startsWith('tsnet:') ? [{ name: l.name, alias: l.alias }] : []))
  }

  async ensureEdge(_log: Logger): Promise<void> {
    this.maybeFail('ensureEdge')
    this.edge = true
  }

  async removeEdge(_log: Logger): Promise<void> {
    this.maybeFail('removeEdge')
    this.edge = false
    this.sets.clear()
    this.portRules.clear()
  }

  async syncSetEntries(owns: (comment: string) => boolean, desired: SetEntry[], _log: Logger, _what: string, others: SetEntry[] = []): Promise<void> {
    this.maybeFail('syncSetEntries')
    const heirs = new Map(others.map((e) => [entryKey(e), e]))
    for (const [k, e] of [...this.sets]) {
      if (!owns(e.comment)) continue
      const heir = heirs.get(k)
      if (heir) this.sets.set(k, heir)
      else this.sets.delete(k)
    }
    for (const e of desired) this.sets.set(entryKey(e), e)
  }

  async addPortRules(rules: Array<{ family: Family; rule: string }>, _log: Logger): Promise<void> {
    this.maybeFail('addPortRules')
    for (const r of rules) this.portRules.add(`${r.family} ${r.rule}`)
  }

  async removePortRules(doomed: (tag: string) => boolean, _log: Logger, _what: string): Promise<void> {
    this.maybeFail('removePortRules')
    for (const r of [...this.portRules]) {
      const tag = /--comment "?([^"\s]+)/.exec(r)?.[1]
      if (tag !== undefined && doomed(tag)) this.portRules.delete(r)
    }
  }

  /** Keys this fake kernel lacks (e.g. net/bridge/... without br_netfilter). */
  readonly absentSysctls = new Set<string>()
  readonly forwardPolicy: Record<4 | 6, 'ACCEPT' | 'DROP'> = { 4: 'ACCEPT', 6: 'ACCEPT' }

  async setSysctl(key: string, value: string, _log: Logger): Promise<SysctlOutcome> {
    this.maybeFail('setSysctl')
    if (this.absentSysctls.has(key)) return 'absent'
    const was = this.sysctls.get(key)
    this.sysctls.set(key, value)
    return was === value ? 'unchanged' : 'changed'
  }

  async dropForwardingByDefault(family: Family, _log: Logger): Promise<void> {
    this.maybeFail('dropForwardingByDefault')
    this.forwardPolicy[family] = 'DROP'
  }

  private nextEphemeral = 32768
  /** Every reservePort call's protocol and bindings, in order. */
  readonly reserved: Array<{ proto: string; bindings: Binding[] }> = []
  /** When set, a binding to an address outside it fails as the kernel's EADDRNOTAVAIL does in the real reserver. */
  localAddresses: Set<string> | undefined

  async reservePort(proto: 'tcp' | 'udp' | 'sctp', bindings: Binding[], candidates: number[] | undefined): Promise<Reservation> {
    this.maybeFail('reservePort')
    this.reserved.push({ proto, bindings: bindings.map((b) => ({ ...b })) })
    const foreign = bindings.find((b) => this.localAddresses && b.address !== '0.0.0.0' && b.address !== '::' && !this.localAddresses.has(b.address))
    if (foreign) throw invalid(`host IP ${foreign.address} is not an address of this host`)
    const tries = candidates ?? [this.nextEphemeral++]
    const port = tries.find((p) => !this.heldPorts.has(`${proto}/${p}`))
    if (port === undefined) throw conflict(`host port ${proto}/${tries[0]} is already in use on this host`)
    const key = `${proto}/${port}`
    this.heldPorts.add(key)
    return { port, release: async () => { this.heldPorts.delete(key) } }
  }

  /** Each forgetPortFlows call's flows, in order (conntrack entries are not modelled). */
  readonly forgottenFlows: PortFlow[][] = []

  async forgetPortFlows(flows: readonly PortFlow[], _log: Logger): Promise<void> {
    this.maybeFail('forgetPortFlows')
    this.forgottenFlows.push([...flows])
  }

  /** A comparable picture of everything the fake holds. */
  state(): string {
    return JSON.stringify({
      links: [...this.links.entries()].sort(), sets: [...this.sets.keys()].sort(), portRules: [...this.portRules].sort(),
      edge: this.edge, heldPorts: [...this.heldPorts].sort(), groups: [...this.groups.entries()].sort(),
    })
  }
}
