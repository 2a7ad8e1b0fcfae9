/**
 * `tsnet doctor`'s findings: each a sentence about what is wrong and the command that fixes it.
 * The kernel's drift comes from the engine's own reconcile in dry run (the daemon's, or one built
 * read-only in the command); this module only says its changes in words. Pure.
 */
import type { ReconcileReport } from '../core/reconcile-report.js'
import type { Directory } from './directory.js'
import { VXLAN_PREFIX } from '../modes/overlay.js'

/**
 * Who can fix it: the reconcile (`tsnet doctor --fix`, or the daemon by itself), garbage
 * collection against Docker's view (`tsnet doctor --fix` asks for a pass now), or the operator.
 */
export type Remedy = 'reconcile' | 'collect' | 'manual'

export interface Finding {
  area: 'kernel' | 'firewall' | 'docker' | 'store' | 'host'
  /** One sentence: what is wrong, naming the network or container. */
  problem: string
  /** The command that fixes it (with a word on what it does). */
  fix: string
  remedy: Remedy
}

/** What a dry-run reconcile reports that doctor turns into findings (the engine's report, or /Tsnet.Reconcile's answer). */
export type ReconcileDrift = Pick<ReconcileReport, 'changes' | 'missing' | 'foreign'>

export const FIX_RECONCILE = "tsnet doctor --fix (the daemon's reconcile puts back what tsnet owns, and nothing else)"

const about = (owner: string | undefined) => (owner ? ` (${owner})` : '')

const SYSCTL_WORDS: Record<string, string> = {
  'net/ipv4/ip_forward': 'IP forwarding is off (net.ipv4.ip_forward): containers cannot reach beyond the host, nor published ports them',
  'net/ipv6/conf/all/forwarding': 'IPv6 forwarding is off (net.ipv6.conf.all.forwarding): IPv6 containers cannot reach beyond the host',
  'net/bridge/bridge-nf-call-iptables': "bridged IPv4 traffic bypasses iptables (net.bridge.bridge-nf-call-iptables is not 1): enable_icc=false and tsnet's anti-spoofing rules do not hold inside a bridge",
  'net/bridge/bridge-nf-call-ip6tables': "bridged IPv6 traffic bypasses ip6tables (net.bridge.bridge-nf-call-ip6tables is not 1): enable_icc=false and anti-spoofing do not hold for IPv6",
}

/** An endpoint's link: its veth's host end, or (an endpoint without one) its macvlan link. */
const endpointLinkWords = (link: string, owner: string, e: { hostIf?: string }) =>
  (e.hostIf === link ? `${link}, the host end of ${owner}'s veth,` : `${link}, the macvlan link of ${owner},`)

/** One reconcile change ("create link tsbr-0a12…") as a sentence about what is wrong now. */
export function changeProblem(change: string, dir: Directory): { area: Finding['area']; problem: string } {
  const m = /^(create|update|delete) (\S+)(?: (.*))?$/.exec(change)
  if (!m) return { area: 'kernel', problem: `the host differs from what tsnet wants: ${change}` }
  const [, op, kind, rest = ''] = m as unknown as [string, 'create' | 'update' | 'delete', string, string?]
  const [first = '', second = ''] = rest.split(' ')
  switch (kind) {
    case 'link': {
      const owner = dir.ownerOfLink(first)
      const e = dir.endpointOfLink(first)
      const what = owner === undefined ? `link ${first}` : e ? endpointLinkWords(first, owner, e) : `the ${first.startsWith(VXLAN_PREFIX) ? 'VXLAN device' : 'bridge'} ${first} of ${owner}`
      if (op === 'create') return { area: 'kernel', problem: `${what} is missing (deleted behind tsnet's back?)` }
      if (op === 'update') return { area: 'kernel', problem: `${what} is not as tsnet set it (its MTU, bridge, state, MAC or tag changed)` }
      return { area: 'kernel', problem: `link ${first} carries tsnet's tag, but no network or endpoint of tsnet's wants it (a leftover)` }
    }
    case 'addr':
      if (op === 'delete') return { area: 'kernel', problem: `${first} carries the address ${second}, which no tsnet record wants${about(dir.ownerOfLink(first))}` }
      return { area: 'kernel', problem: `the address ${second} is missing from ${first}${about(dir.ownerOfLink(first))}` }
    case 'sysctl': {
      const words = SYSCTL_WORDS[first]
      const bridge = /^net\/ipv[46]\/conf\/([^/]+)\//.exec(first)?.[1]
      return { area: 'kernel', problem: words ?? `kernel setting ${first.replace(/\//g, '.')} is not what tsnet sets${about(bridge ? dir.ownerOfLink(bridge) : undefined)}` }
    }
    case 'chains':
      if (op === 'delete') return { area: 'firewall', problem: "tsnet's firewall chains (TSNET-*) are there, but no tsnet network needs them" }
      return { area: 'firewall', problem: `tsnet's firewall chains (TSNET-*), the jumps to them or its ipsets are ${op === 'create' ? 'missing' : 'not as tsnet made them'} (a firewall reload, an iptables -F, or another tool?): its networks' isolation and published ports do not hold` }
    case 'set':
      if (op === 'create') return { area: 'firewall', problem: `the ipset ${first} lacks the member ${second}${about(dir.ownerOfMember(second))}: that network's traffic meets the wrong rules` }
      if (op === 'update') return { area: 'firewall', problem: `the member ${second} of ipset ${first} is tagged for another owner${about(dir.ownerOfMember(second))}` }
      return { area: 'firewall', problem: `the ipset ${first} holds ${second}, which no tsnet network wants (a leftover)` }
    case 'dnat': {
      const family = first === '6' ? 'IPv6' : 'IPv4'
      const body = rest.slice(first.length + 1)
      const port = /-p (\w+) .*--dport (\d+)/.exec(body)
      const tag = /tsnet:ep:([0-9a-f]{1,64})/.exec(body)?.[1]
      const who = tag ? dir.endpointByTag(tag) : undefined
      const what = port ? `published port ${port[1]}/${port[2]}` : 'a published port'
      if (op === 'delete') return { area: 'firewall', problem: `TSNET-DNAT holds an ${family} rule for ${what} that no endpoint wants: ${body}` }
      return { area: 'firewall', problem: `the ${family} DNAT rule of ${what}${about(who)} is missing: the port does not lead to its container` }
    }
    case 'port': {
      const who = dir.publishersOf(first)
      if (op === 'delete') return { area: 'kernel', problem: `tsnet holds host port ${first}, which nothing publishes any more` }
      return { area: 'kernel', problem: `host port ${first}${who.length ? ` (${who.join(', ')})` : ''} is not held by tsnet: another process could take it` }
    }
    case 'neigh':
    case 'fdb': {
      const what = kind === 'neigh' ? `neighbour entry ${second} on ${first}` : `FDB entry ${rest.split(' ').slice(1).join(' ')} on ${first}`
      if (op === 'delete') return { area: 'kernel', problem: `the ${what} is not wanted by any tsnet record (a leftover)` }
      return { area: 'kernel', problem: `the ${what} is ${op === 'create' ? 'missing' : 'not as tsnet set it'}${about(dir.ownerOfLink(first))}` }
    }
    default:
      return { area: 'kernel', problem: `the host differs from what tsnet wants: ${change}` }
  }
}

/** Every change, gone link and foreign object of a dry-run reconcile as findings. */
export function reconcileFindings(drift: ReconcileDrift, dir: Directory): Finding[] {
  const out: Finding[] = drift.changes.map((c) => ({ ...changeProblem(c, dir), fix: FIX_RECONCILE, remedy: 'reconcile' as const }))
  for (const key of drift.missing) {
    const link = key.replace(/^link /, '')
    const e = dir.endpointOfLink(link)
    const container = e ? dir.containerOf(e.id) : undefined
    out.push({
      area: 'kernel',
      problem: `${link}${about(dir.ownerOfLink(link))} is gone with its container's end of the veth: only Docker can make it again`,
      fix: container ? `docker restart ${container}` : 'restart the container (docker restart NAME; docker ps shows which one uses this network)',
      remedy: 'manual',
    })
  }
  for (const sentence of drift.foreign) {
    const name = /a link named (\S+)/.exec(sentence)?.[1]
    out.push({
      area: 'kernel',
      problem: `${sentence}: tsnet cannot make its own object there`,
      fix: name ? `tsnet never touches it: if nothing needs it, remove it yourself (ip link show ${name}; ip link delete ${name}), then tsnet doctor --fix` : 'tsnet never touches it: remove it yourself if nothing needs it, then tsnet doctor --fix',
      remedy: 'manual',
    })
  }
  return out
}
