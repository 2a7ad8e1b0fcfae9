/** The host operations tsnet needs, behind an interface so the services can run on a fake in unit tests. */
import type { Logger } from 'pino'
import type { SetEntry } from '../core/edge-plan.js'
import type { Family } from '../core/addr.js'
import type { PortFlow } from '../core/flows.js'
import type { Binding, Reservation } from './port-reservations.js'
import type { SysctlOutcome } from './sysctl.js'

export interface BridgeSpec {
  name: string
  /** ifalias marking the bridge as tsnet's, naming its network. */
  alias: string
  mtu: number
  mac: string
  /** Gateway addresses as CIDR. */
  addresses: string[]
  /** Device group: marks the bridge as tsnet's for the firewall, with its option flags. */
  group: number
}

export interface VethSpec {
  hostName: string
  peerName: string
  alias: string
  mtu: number
  /** MAC of the container end. */
  mac: string
  bridge: string
}

export interface LinkInfo {
  name: string
  kind?: string
  alias?: string
  master?: string
  mtu: number
  mac?: string
  up: boolean
}

export interface Host {
  /** Creates the bridge or brings an existing one of ours to spec. Refuses a link tsnet does not own. */
  ensureBridge(spec: BridgeSpec, log: Logger): Promise<void>
  /** Many bridges at once (boot reconcile); returns the errors of those that could not be brought to spec, by name. */
  ensureBridges(specs: BridgeSpec[], log: Logger): Promise<Map<string, unknown>>
  /** Creates the veth pair or checks an existing one of ours. */
  ensureVeth(spec: VethSpec, log: Logger): Promise<void>
  /** Deletes a link if it exists and carries `alias`; a missing link is fine. */
  deleteOwnedLink(name: string, alias: string, log: Logger): Promise<void>
  /** Prefixes the host already routes (except the default route): pools must avoid them. */
  routedPrefixes(): Promise<string[]>
  /** MTU of the interface carrying the default route, if there is one. */
  defaultRouteMtu(): Promise<number | undefined>
  getLink(name: string): Promise<LinkInfo | undefined>
  /** Every link whose ifalias marks it as tsnet's (`tsnet:…`). */
  listOwnedLinks(): Promise<Array<{ name: string; alias: string }>>
  /** tsnet's chains, jumps and ipsets, created or brought back to spec. */
  ensureEdge(log: Logger): Promise<void>
  /** Removes them all (no tsnet network left). */
  removeEdge(log: Logger): Promise<void>
  /**
   * Makes the ipset entries whose comment `owns` picks exactly `desired`. An owned member that is
   * no longer desired but appears in `others` (another owner needs it) is handed over, not deleted.
   */
  syncSetEntries(owns: (comment: string) => boolean, desired: SetEntry[], log: Logger, what: string, others?: SetEntry[]): Promise<void>
  /** Adds DNAT rules of published ports (idempotent). */
  addPortRules(rules: Array<{ family: Family; rule: string }>, log: Logger): Promise<void>
  /** Removes the DNAT rules whose comment `doomed` picks. */
  removePortRules(doomed: (tag: string) => boolean, log: Logger, what: string): Promise<void>
  /** Sets a kernel setting (slash form). */
  setSysctl(key: string, value: string, log: Logger): Promise<SysctlOutcome>
  /** Sets the FORWARD policy of a family to DROP (after tsnet itself turned forwarding on, as Docker does). */
  dropForwardingByDefault(family: Family, log: Logger): Promise<void>
  /** Holds a host port for a published mapping (see port-reservations.ts). */
  reservePort(proto: 'tcp' | 'udp' | 'sctp', bindings: Binding[], candidates: number[] | undefined): Promise<Reservation>
  /**
   * Makes the kernel forget the conntrack entries of flows to these host ports, so that their next
   * packet meets the DNAT rules as they are now. A missing conntrack tool is a warning, not an error.
   */
  forgetPortFlows(flows: readonly PortFlow[], log: Logger): Promise<void>
}
