/** The real host: iproute2 for links and routes, iptables and ipset for the edge, /proc/sys, sockets for port reservations. */
import type { Logger } from 'pino'
import type { Family } from '../core/addr.js'
import type { SetEntry } from '../core/edge-plan.js'
import type { PortFlow } from '../core/flows.js'
import { ConntrackFlows } from './conntrack.js'
import { EdgeFirewall } from './edge-firewall.js'
import { createRunner, type Runner } from './exec.js'
import type { BridgeSpec, Host, LinkInfo, VethSpec } from './host.js'
import { Links } from './links.js'
import { type Binding, type PortReserver, SocketPortReserver } from './port-reservations.js'
import { ProcSysctls, RunnerSysctls, type Sysctls } from './sysctl.js'

export interface LinuxHostParts {
  runner?: Runner
  sysctls?: Sysctls
  ports?: PortReserver
}

export class LinuxHost implements Host {
  private readonly links: Links
  private readonly firewall: EdgeFirewall
  private readonly sysctls: Sysctls
  private readonly ports: PortReserver
  private readonly flows: ConntrackFlows

  constructor(parts: LinuxHostParts = {}) {
    const runner = parts.runner ?? createRunner()
    this.links = new Links(runner)
    this.firewall = new EdgeFirewall(runner)
    this.sysctls = parts.sysctls ?? new ProcSysctls()
    this.ports = parts.ports ?? new SocketPortReserver()
    this.flows = new ConntrackFlows(runner)
  }

  ensureBridge(spec: BridgeSpec, log: Logger) { return this.links.ensureBridge(spec, log) }
  ensureBridges(specs: BridgeSpec[], log: Logger) { return this.links.ensureBridges(specs, log) }
  ensureVeth(spec: VethSpec, log: Logger) { return this.links.ensureVeth(spec, log) }
  deleteOwnedLink(name: string, alias: string, log: Logger) { return this.links.deleteOwned(name, alias, log) }
  routedPrefixes() { return this.links.routedPrefixes() }
  defaultRouteMtu() { return this.links.defaultRouteMtu() }
  getLink(name: string): Promise<LinkInfo | undefined> { return this.links.get(name) }
  listOwnedLinks() { return this.links.listOwned('tsnet:') }
  ensureEdge(log: Logger) { return this.firewall.ensureBase(log) }
  removeEdge(log: Logger) { return this.firewall.removeBase(log) }
  syncSetEntries(owns: (c: string) => boolean, desired: SetEntry[], log: Logger, what: string, others?: SetEntry[]) { return this.firewall.syncEntries(owns, desired, log, what, others) }
  addPortRules(rules: Array<{ family: Family; rule: string }>, log: Logger) { return this.firewall.addPortRules(rules, log) }
  removePortRules(doomed: (tag: string) => boolean, log: Logger, what: string) { return this.firewall.removePortRules(doomed, log, what) }
  setSysctl(key: string, value: string, log: Logger) { return this.sysctls.set(key, value, log) }
  dropForwardingByDefault(family: Family, log: Logger) { return this.firewall.dropForwardingByDefault(family, log) }
  reservePort(proto: 'tcp' | 'udp' | 'sctp', bindings: Binding[], candidates: number[] | undefined) { return this.ports.reserve(proto, bindings, candidates) }
  forgetPortFlows(flows: readonly PortFlow[], log: Logger) { return this.flows.forget(flows, log) }
}

/** A LinuxHost whose commands and settings go through `runner` (e.g. nsenter into a test namespace). */
export function linuxHostVia(runner: Runner, ports?: PortReserver): LinuxHost {
  return new LinuxHost({ runner, sysctls: new RunnerSysctls(runner), ...(ports ? { ports } : {}) })
}
