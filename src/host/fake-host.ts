/** An in-memory Host for unit and contract tests: records links and rules, can be told to fail. */
import type { Logger } from 'pino'
import { conflict, TsnetError } from '../errors.js'
import type { BridgeSpec, Host, LinkInfo, VethSpec } from './host.js'

export interface FakeLink extends LinkInfo {
  addresses: string[]
  peer?: string
}

export class FakeHost implements Host {
  readonly links = new Map<string, FakeLink>()
  readonly rules = new Set<string>()
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
    if (link.peer) this.links.delete(link.peer)
  }

  async allowIntraBridge(bridge: string, tag: string, _log: Logger): Promise<void> {
    this.maybeFail('allowIntraBridge')
    this.rules.add(`${tag} ${bridge}`)
  }

  async revokeIntraBridge(bridge: string, tag: string, _log: Logger): Promise<void> {
    this.maybeFail('revokeIntraBridge')
    this.rules.delete(`${tag} ${bridge}`)
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

  async pruneIntraBridge(keep: Array<{ bridge: string; tag: string }>, _log: Logger): Promise<void> {
    this.maybeFail('pruneIntraBridge')
    const wanted = new Set(keep.map((k) => `${k.tag} ${k.bridge}`))
    for (const r of [...this.rules]) if (!wanted.has(r)) this.rules.delete(r)
  }

  /** A comparable picture of everything the fake holds. */
  state(): string {
    return JSON.stringify({ links: [...this.links.entries()].sort(), rules: [...this.rules].sort() })
  }
}
