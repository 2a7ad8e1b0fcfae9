/** The host operations tsnet needs, behind an interface so the services can run on a fake in unit tests. */
import type { Logger } from 'pino'

export interface BridgeSpec {
  name: string
  /** ifalias marking the bridge as tsnet's, naming its network. */
  alias: string
  mtu: number
  mac: string
  /** Gateway addresses as CIDR. */
  addresses: string[]
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
  /** Creates the veth pair or checks an existing one of ours. */
  ensureVeth(spec: VethSpec, log: Logger): Promise<void>
  /** Deletes a link if it exists and carries `alias`; a missing link is fine. */
  deleteOwnedLink(name: string, alias: string, log: Logger): Promise<void>
  /** Lets traffic between ports of one bridge through a FORWARD chain whose policy may be DROP. */
  allowIntraBridge(bridge: string, tag: string, log: Logger): Promise<void>
  revokeIntraBridge(bridge: string, tag: string, log: Logger): Promise<void>
  /** Prefixes the host already routes (except the default route): pools must avoid them. */
  routedPrefixes(): Promise<string[]>
  /** MTU of the interface carrying the default route, if there is one. */
  defaultRouteMtu(): Promise<number | undefined>
  getLink(name: string): Promise<LinkInfo | undefined>
  /** Every link whose ifalias marks it as tsnet's (`tsnet:…`). */
  listOwnedLinks(): Promise<Array<{ name: string; alias: string }>>
  /** Removes intra-bridge rules whose bridge/tag pair is not in `keep` (and the chain when none is left). */
  pruneIntraBridge(keep: Array<{ bridge: string; tag: string }>, log: Logger): Promise<void>
}
