/** What the host offers, read once at start (preflight) and passed to the pure planning code. */
export interface HostFacts {
  /** br_netfilter is loaded: frames inside a bridge meet iptables (ICC off needs it). */
  brNetfilter: boolean
  /** The kernel has IPv6 (per-interface IPv6 settings exist). */
  ipv6: boolean
  /** Link kinds the kernel can create (bridge, veth, vxlan, macvlan, vlan, ipvlan, ...). */
  linkKinds: ReadonlySet<string>
}

/** What unit tests and the fake host assume: a kernel with everything. */
export const FULL_HOST: HostFacts = { brNetfilter: true, ipv6: true, linkKinds: new Set(['bridge', 'veth', 'vxlan', 'macvlan', 'vlan', 'ipvlan']) }
