/**
 * What a network's policy puts in the allow set, counted before it is built: a policy that would
 * expand beyond MAX_ALLOW_ENTRIES is refused with a sentence before any array is made.
 */
import type { Family } from './addr.js'
import { formatIp, parseCidr } from './addr.js'
import { networkTag } from './names.js'
import { POLICY_OPTION, type PolicyRule, type PolicySource, formatPolicy, parsePolicy } from './policy.js'
import { type Grant, containerIps, grantsOf, pairsPerContainer } from './policy-grants.js'
import { invalid, quote } from '../errors.js'
import type { EndpointRecord } from './records.js'
import { FAMILIES, setName } from './edge-rules.js'
import { type EdgeNetwork, type NameResolver, familyOf, netMembers } from './edge-plan.js'
import type { SetEntry } from './edge-rules.js'

/** Per network; the allow sets have room for many networks at this size. */
export const MAX_ALLOW_ENTRIES = 65_536

interface AllowPlan {
  grants: Record<Family, Map<string, Grant>>
  /** Containers counted per family. */
  containers: Record<Family, number>
  count: number
}

/** What `rules` grant per family (names resolved, members canonical), and the entries that makes for `containers`. */
function planAllow(rules: PolicyRule[], containers: Record<Family, number>, resolve: NameResolver): AllowPlan {
  // Each CIDR parsed once, whatever the number of rules and families naming it (parsing is the costly part).
  const parsed = new Map<string, string[]>()
  const membersOfCidr = (cidr: string) => {
    let members = parsed.get(cidr)
    if (!members) parsed.set(cidr, (members = netMembers(cidr)))
    return members
  }
  const membersIn = (f: Family) => (s: PolicySource) =>
    (s.kind === 'cidr' ? [s.cidr] : resolve(s.name)).flatMap(membersOfCidr).filter((m) => m.includes(':') === (f === 6))
  const grants = { 4: grantsOf(rules, membersIn(4)), 6: grantsOf(rules, membersIn(6)) }
  const count = FAMILIES.reduce((sum, f) => sum + containers[f] * pairsPerContainer(grants[f]), 0)
  return { grants, containers, count }
}

/** The refusal of a policy that would expand beyond MAX_ALLOW_ENTRIES: it names the network, the policy and the count. */
function refuseOversized(n: EdgeNetwork, rules: PolicyRule[], plan: AllowPlan, hypothetical: boolean): never {
  const parts = FAMILIES.filter((f) => plan.containers[f] > 0)
    .map((f) => `${plan.containers[f]} x ${pairsPerContainer(plan.grants[f])} port/source pairs over IPv${f}`)
  const whom = hypothetical ? 'for its first container' : 'for its containers'
  throw invalid(`the ${POLICY_OPTION} policy of network ${n.id.slice(0, 12)} (${quote(formatPolicy(rules))}) would put ${plan.count} entries in the firewall ${whom} (${parts.join(' + ')}); at most ${MAX_ALLOW_ENTRIES} are allowed per network: name fewer sources or narrower port ranges`)
}

/**
 * How many allow-set entries `rules` yield for `endpoints`, counted from the ranges without
 * spelling them out: per family, container addresses x distinct (port, source) pairs, names
 * counted with the subnets they resolve to.
 */
export function allowEntryCount(n: EdgeNetwork, endpoints: readonly EndpointRecord[], rules: PolicyRule[], resolve: NameResolver): number {
  if (n.internal || rules.length === 0) return 0
  const ips = containerIps(endpoints)
  return planAllow(rules, { 4: ips[4].length, 6: ips[6].length }, resolve).count
}

/**
 * Refuses a network's policy that would put more than MAX_ALLOW_ENTRIES entries in the firewall,
 * before any is built. With no endpoint yet (CreateNetwork, `tsnet policy set` on an empty
 * network) one container per family the network has is counted: a policy that no container
 * could take is refused when it is given, not at the first container start.
 */
export function checkPolicySize(n: EdgeNetwork, endpoints: readonly EndpointRecord[], resolve: NameResolver, rules = n.policy ? parsePolicy(n.policy) : []): void {
  if (n.internal || rules.length === 0) return
  const ips = containerIps(endpoints)
  const hypothetical = ips[4].length + ips[6].length === 0
  const containers = hypothetical
    ? { 4: n.subnets.some((x) => familyOf(x) === 4) ? 1 : 0, 6: n.subnets.some((x) => familyOf(x) === 6) ? 1 : 0 }
    : { 4: ips[4].length, 6: ips[6].length }
  const plan = planAllow(rules, containers, resolve)
  if (plan.count > MAX_ALLOW_ENTRIES) refuseOversized(n, rules, plan, hypothetical)
}

/**
 * What a network's policy puts in the allow set: container address, protocol:port, source; each
 * entry once. Counted first: a policy beyond MAX_ALLOW_ENTRIES is refused before it is expanded.
 */
export function allowEntries(n: EdgeNetwork, endpoints: readonly EndpointRecord[], rules: PolicyRule[], resolve: NameResolver): SetEntry[] {
  if (n.internal || rules.length === 0) return []
  const ips = containerIps(endpoints)
  const plan = planAllow(rules, { 4: ips[4].length, 6: ips[6].length }, resolve)
  if (plan.count > MAX_ALLOW_ENTRIES) refuseOversized(n, rules, plan, false)
  const comment = networkTag(n.id)
  const out: SetEntry[] = []
  const done = new Set<string>()
  // Endpoint by endpoint (as stored), each address's family in turn; an address met before is done.
  for (const e of endpoints) {
    for (const addr of [e.address, e.addressV6]) {
      const c = addr ? parseCidr(addr) : undefined
      const ip = c ? formatIp(c.ip) : undefined
      if (!c || !ip || done.has(ip)) continue
      done.add(ip)
      const f = c.ip.family
      const set = setName('allow', f)
      for (const [src, g] of plan.grants[f]) {
        for (const proto of g.order) {
          if (proto === 'icmp') {
            out.push({ set, entry: `${ip},${f === 4 ? 'icmp:echo-request' : 'icmpv6:echo-request'},${src}`, comment })
            continue
          }
          for (const [from, to] of g.ranges.get(proto) ?? []) {
            for (let port = from; port <= to; port++) out.push({ set, entry: `${ip},${proto}:${port},${src}`, comment })
          }
        }
      }
    }
  }
  return out
}

