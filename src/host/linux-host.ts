/** The real host: iproute2 for links and routes, iptables for the firewall. */
import type { Logger } from 'pino'
import { createRunner, type Runner } from './exec.js'
import { Firewall } from './firewall.js'
import type { BridgeSpec, Host, LinkInfo, VethSpec } from './host.js'
import { Links } from './links.js'

export class LinuxHost implements Host {
  private readonly links: Links
  private readonly firewall: Firewall

  constructor(runner: Runner = createRunner()) {
    this.links = new Links(runner)
    this.firewall = new Firewall(runner)
  }

  ensureBridge(spec: BridgeSpec, log: Logger) { return this.links.ensureBridge(spec, log) }
  ensureVeth(spec: VethSpec, log: Logger) { return this.links.ensureVeth(spec, log) }
  deleteOwnedLink(name: string, alias: string, log: Logger) { return this.links.deleteOwned(name, alias, log) }
  allowIntraBridge(bridge: string, tag: string, log: Logger) { return this.firewall.allowIntraBridge(bridge, tag, log) }
  revokeIntraBridge(bridge: string, tag: string, log: Logger) { return this.firewall.revokeIntraBridge(bridge, tag, log) }
  routedPrefixes() { return this.links.routedPrefixes() }
  defaultRouteMtu() { return this.links.defaultRouteMtu() }
  getLink(name: string): Promise<LinkInfo | undefined> { return this.links.get(name) }
  listOwnedLinks() { return this.links.listOwned('tsnet:') }
  pruneIntraBridge(keep: Array<{ bridge: string; tag: string }>, log: Logger) { return this.firewall.pruneIntraBridge(keep, log) }
}
