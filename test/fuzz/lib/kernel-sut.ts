/**
 * tsnet in-process over the REAL host layer inside a network namespace this process creates,
 * `tsfz-<pid>`: the services and the app run here (lib/kernel-app.ts, built as `tsnet serve`
 * builds them), the host layer (LinuxHost: rtnetlink, iptables-restore, ipset, /proc/sys, held
 * ports) runs in a child entered into the namespace (test/integration/lib/remote-host.ts), since
 * a netlink socket, /proc/sys/net and a held port belong to the namespace of the process that
 * opens them. Nothing runs in the root namespace. The namespace is deleted in the test's teardown
 * and, should the process die first, on exit and on SIGINT/SIGTERM/SIGHUP.
 *
 * What "unchanged" means for the kernel (the host text compared byte for byte after a refusal):
 *  - links: `ip -j -d link show`, every field, except those the kernel changes on its own
 *    (timers, operstate, carrier flags NO-CARRIER/LOWER_UP/M-DOWN/DORMANT, bridge-port STP state,
 *    topology-change flags);
 *  - addresses: `ip -j addr show`, every address and field, except IPv6 link-local addresses
 *    (scope link), which the kernel adds by itself some time after a link comes up;
 *  - routes: `ip -j route show table all` for both families, except link-local and multicast
 *    routes (fe80::/64, ff00::/8 and the local routes of link-local addresses), without the
 *    "linkdown" flag (carrier, again);
 *  - rules: `iptables-save` and `ip6tables-save`, without comment lines and with counters zeroed;
 *    a table holding only built-in chains with policy ACCEPT and no rule is dropped, because with
 *    iptables-nft the first command that touches a table creates it that way and it filters
 *    nothing (as test/e2e/lib/snapshot.ts does);
 *  - ipsets: `ipset save`, without the hash parameters the kernel picks and changes by itself
 *    (initval, hashsize, bucketsize), members sorted (their order is the hash's);
 *  - held ports: `ss -l -t -u`, the sockets bound in the namespace (only tsnet's host layer binds
 *    any there), as protocol and local address.
 *
 * What the records imply for the edge (docs/network-edge.md, core/edge-plan.ts): while any network
 * exists, tsnet's chains hold exactly edge-plan's rules, its jumps come first in FORWARD,
 * DOCKER-USER, PREROUTING, OUTPUT and POSTROUTING, its eight sets exist holding exactly the
 * networks' members, and TSNET-DNAT holds one rule per published port and family; with no network
 * nothing of tsnet's is left.
 */
import { execFile, execFileSync } from 'node:child_process'
import { rm } from 'node:fs/promises'
import type { Family } from '../../../src/core/addr.js'
import { BASE_SETS, CHAIN, DOCKER_USER, SET_TYPE, type SetKind, filterRules, jumps, postroutingRules, rawRules } from '../../../src/core/edge-plan.js'
import { endpointAlias, macFromSeed, networkAlias } from '../../../src/core/names.js'
import { RemoteHost } from '../../integration/lib/remote-host.js'
import type { Answer, Observation, Sut } from './engine.js'
import { type App, deleteEverything, emptyStoreProblems, freshStateDir, openApp, readTree, sendTo } from './kernel-app.js'
import { cidrValue } from './ip.js'
import type { Rendered } from './ops.js'
import { type StoreView, type Violation, entryProblems, expectedEdge, filesDiff, linesDiff, memoryProblems, parseStore, sameFiles } from './oracle.js'
import { HOST_ROUTES } from './universe.js'

// ---------------------------------------------------------------- the namespace

export const NETNS = `tsfz-${process.pid}`
const NETNS_PATH = `/run/netns/${NETNS}`
let handlers = false

function run(argv: readonly string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(argv[0] as string, argv.slice(1), { encoding: 'utf8', timeout: 30_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0
      resolve({ code, stdout, stderr })
    })
    child.stdin?.on('error', () => undefined)
    child.stdin?.end(input ?? '')
  })
}

async function inNs(script: string): Promise<string> {
  const r = await run(['nsenter', `--net=${NETNS_PATH}`, 'sh', '-c', script])
  if (r.code !== 0) throw new Error(`[${NETNS}] ${script.slice(0, 200)} failed (${r.code}): ${r.stderr.trim()}`)
  return r.stdout
}

export function deleteNetnsSync(): void {
  try {
    execFileSync('ip', ['netns', 'del', NETNS], { stdio: 'ignore' })
  } catch {
    // not there
  }
}

function installHandlers(): void {
  if (handlers) return
  handlers = true
  process.on('exit', deleteNetnsSync)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      deleteNetnsSync()
      process.kill(process.pid, sig)
    })
  }
}

/**
 * The namespace's baseline: lo up; "eth0" (a dummy, or an ifb where the kernel has no dummy
 * driver) with 192.168.1.10/24 and the default route; a bridge "docker0" with 172.17.0.1/16 that
 * tsnet does not own; FORWARD policy DROP with a foreign chain in iptables. ip6tables stays empty.
 * Forwarding is already on in both families, as on a host where Docker runs: tsnet then leaves
 * the FORWARD policies alone (it closes FORWARD only when it turns forwarding on itself, which is
 * a lasting change outside any record; the unit and integration tests cover that).
 */
const BASELINE = `
set -e
sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
ip link set lo up
ip link add name eth0 mtu 1450 type dummy 2>/dev/null || ip link add name eth0 mtu 1450 type ifb
ip link set eth0 up
ip addr add 192.168.1.10/24 dev eth0
ip route add default via 192.168.1.1 dev eth0 onlink
ip link add name docker0 type bridge
ip addr add 172.17.0.1/16 dev docker0
ip link set docker0 up
iptables -w 10 -P FORWARD DROP
iptables -w 10 -N DOCKER-USER
iptables -w 10 -A DOCKER-USER -j RETURN
iptables -w 10 -A FORWARD -j DOCKER-USER
`

/** A fresh namespace (the previous one, if any, is deleted) with the baseline. */
export async function freshNetns(): Promise<void> {
  installHandlers()
  deleteNetnsSync()
  const r = await run(['ip', 'netns', 'add', NETNS])
  if (r.code !== 0) throw new Error(`ip netns add ${NETNS}: ${r.stderr}`)
  await inNs(BASELINE)
}

// ---------------------------------------------------------------- snapshots

const SEP = '@@tsfz@@'
const SNAPSHOT = [
  'ip -j -d link show', 'ip -j addr show', 'ip -j -4 route show table all', 'ip -j -6 route show table all', 'iptables-save', 'ip6tables-save', 'ipset save',
  'ss -H -l -n -t -u',
].join(`; echo ${SEP}; `)

const VOLATILE_KEYS = new Set(['operstate', 'topology_change', 'topology_change_detected', 'topology_change_ack', 'config_pending', 'state'])
const VOLATILE_FLAGS = new Set(['NO-CARRIER', 'LOWER_UP', 'M-DOWN', 'DORMANT'])

function stripVolatile(v: unknown, key = ''): unknown {
  if (Array.isArray(v)) return key === 'flags' ? v.filter((f) => !VOLATILE_FLAGS.has(String(f)) && f !== 'linkdown') : v.map((x) => stripVolatile(x))
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) {
      if (VOLATILE_KEYS.has(k) || /timer$/.test(k)) continue
      out[k] = stripVolatile(x, k)
    }
    return out
  }
  return v
}

/** iptables-save without '#' lines, counters zeroed, and tables that hold nothing dropped. */
export function normalizeIptablesSave(text: string): string[] {
  const lines = text.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/g, '[0:0]'))
  const out: string[] = []
  let table: string[] = []
  for (const l of lines) {
    if (l.startsWith('*')) table = [l]
    else if (table.length) {
      table.push(l)
      if (l === 'COMMIT') {
        if (!table.slice(1, -1).every((b) => /^:\S+ ACCEPT \[0:0\]$/.test(b))) out.push(...table)
        table = []
      }
    } else out.push(l)
  }
  out.push(...table)
  return out
}

/** `ipset save` without what the kernel chooses itself, members sorted per set. */
export function normalizeIpsetSave(text: string): string[] {
  const creates: string[] = []
  const adds: string[] = []
  for (const l of text.split('\n')) {
    if (l.startsWith('create ')) creates.push(l.replace(/ (initval 0x[0-9a-f]+|hashsize \d+|bucketsize \d+)/g, ''))
    else if (l.startsWith('add ')) adds.push(l)
  }
  return [...creates.sort(), ...adds.sort()]
}

export interface KernelLink {
  ifname: string
  ifalias?: string
  link?: string
  master?: string
  mtu: number
  address?: string
  flags: string[]
  /** Device group: a number as text, or "default". */
  group?: string | number
  linkinfo?: { info_kind?: string }
}

export interface KernelState {
  links: KernelLink[]
  /** ifname → addresses (scope other than link) as "addr/len" */
  addrs: Map<string, string[]>
  iptables: string[]
  ip6tables: string[]
  ipset: string[]
  /** Sockets listening (TCP) or bound (UDP) in the namespace, as `proto address:port`: tsnet's held ports. */
  held: string[]
  text: string
}

const isLinkLocalRoute = (r: { dst?: string; type?: string }) =>
  r.type === 'multicast' || (r.dst ?? '').startsWith('fe80:') || (r.dst ?? '').startsWith('ff00::')

export async function kernelState(): Promise<KernelState> {
  const parts = (await inNs(SNAPSHOT)).split(`${SEP}\n`)
  const [linksJ = '[]', addrsJ = '[]', r4 = '[]', r6 = '[]', ipt = '', ip6t = '', sets = '', sockets = ''] = parts
  const links = (JSON.parse(linksJ || '[]') as KernelLink[]).sort((a, b) => (a.ifname < b.ifname ? -1 : 1))
  const addrRaw = JSON.parse(addrsJ || '[]') as Array<{ ifname: string; addr_info?: Array<{ scope?: string; local: string; prefixlen: number }> }>
  const addrs = new Map<string, string[]>()
  const lines: string[] = []
  for (const l of links) lines.push(`link ${JSON.stringify(stripVolatile(l))}`)
  for (const a of addrRaw.sort((x, y) => (x.ifname < y.ifname ? -1 : 1))) {
    const kept = (a.addr_info ?? []).filter((i) => i.scope !== 'link')
    addrs.set(a.ifname, kept.map((i) => `${i.local}/${i.prefixlen}`))
    for (const i of kept) lines.push(`addr ${a.ifname} ${JSON.stringify(stripVolatile(i))}`)
  }
  for (const [tag, text] of [['route4', r4], ['route6', r6]] as const) {
    for (const r of (JSON.parse(text || '[]') as Array<{ dst?: string; type?: string }>).filter((x) => !isLinkLocalRoute(x))) {
      lines.push(`${tag} ${JSON.stringify(stripVolatile(r))}`)
    }
  }
  const iptables = normalizeIptablesSave(ipt)
  const ip6tables = normalizeIptablesSave(ip6t)
  const ipset = normalizeIpsetSave(sets)
  const held = sockets.split('\n').flatMap((l) => {
    const [proto, , , , local] = l.trim().split(/\s+/)
    return proto && local ? [`${proto} ${local}`] : []
  }).sort()
  lines.push(...iptables.map((l) => `iptables ${l}`), ...ip6tables.map((l) => `ip6tables ${l}`), ...ipset.map((l) => `ipset ${l}`), ...held.map((l) => `held ${l}`))
  return { links, addrs, iptables, ip6tables, ipset, held, text: lines.join('\n') }
}

/**
 * Readable differences between two kernel texts: a link present in both is reported field by
 * field ("~ link br0: mtu 1450 → 1500"); other lines as added/removed.
 */
export function kernelDiff(a: string, b: string): string[] {
  const links = (t: string) => new Map(t.split('\n').filter((l) => l.startsWith('link ')).map((l) => [JSON.parse(l.slice(5)).ifname as string, JSON.parse(l.slice(5)) as Record<string, unknown>]))
  const la = links(a)
  const lb = links(b)
  const out: string[] = []
  const flat = (v: unknown, prefix = '', acc: Record<string, string> = {}) => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) flat(x, prefix ? `${prefix}.${k}` : k, acc)
    else acc[prefix] = JSON.stringify(v)
    return acc
  }
  for (const [name, x] of la) {
    const y = lb.get(name)
    if (!y) continue
    const fx = flat(x)
    const fy = flat(y)
    const keys = [...new Set([...Object.keys(fx), ...Object.keys(fy)])].filter((k) => fx[k] !== fy[k])
    if (keys.length) out.push(`~ link ${name}: ${keys.map((k) => `${k} ${fx[k] ?? '(none)'} → ${fy[k] ?? '(none)'}`).join(', ')}`)
  }
  const rest = (t: string, other: Map<string, unknown>) => t.split('\n').filter((l) => !(l.startsWith('link ') && other.has(JSON.parse(l.slice(5)).ifname as string))).join('\n')
  out.push(...linesDiff(rest(a, lb), rest(b, la)).filter((l) => l !== '(same lines in another order)' || out.length === 0))
  return out
}

// ---------------------------------------------------------------- the kernel against the store

const unquote = (s: string) => s.replace(/"/g, '')

function sameAddressSet(have: string[], want: string[]): boolean {
  const key = (s: string) => {
    const c = cidrValue(s)
    return c ? `${c.family}|${c.value}|${c.bits}` : s
  }
  const a = [...new Set(have.map(key))].sort()
  const b = [...new Set(want.map(key))].sort()
  return a.length === b.length && a.every((x, i) => x === b[i])
}

export function kernelProblems(s: StoreView, k: KernelState, baseline: KernelState): Violation[] {
  const out: Violation[] = []
  const fail = (detail: string) => out.push({ rule: 'host-mismatch', detail })
  const byName = new Map(k.links.map((l) => [l.ifname, l]))
  const expected = new Set<string>()
  // What tsnet does not own stays exactly as it was.
  const baseLines = new Map(baseline.text.split('\n').filter((l) => l.startsWith('link ')).map((l) => [JSON.parse(l.slice(5)).ifname as string, l]))
  const nowLines = new Map(k.text.split('\n').filter((l) => l.startsWith('link ')).map((l) => [JSON.parse(l.slice(5)).ifname as string, l]))
  for (const [name, line] of baseLines) {
    expected.add(name)
    if (nowLines.get(name) !== line) fail(`the foreign link ${name} changed: ${line} → ${nowLines.get(name) ?? '(gone)'}`)
    if (!sameAddressSet(k.addrs.get(name) ?? [], baseline.addrs.get(name) ?? [])) fail(`the addresses of the foreign link ${name} changed: [${baseline.addrs.get(name)?.join(', ')}] → [${k.addrs.get(name)?.join(', ')}]`)
  }
  const edge = expectedEdge(s)
  for (const n of s.recs.networks.values()) {
    const bridge = n.spec.bridge as string
    expected.add(bridge)
    const l = byName.get(bridge)
    if (!l) {
      fail(`network ${n.id}'s bridge ${bridge} does not exist`)
      continue
    }
    if (l.linkinfo?.info_kind !== 'bridge' || l.ifalias !== networkAlias(n.id) || !l.flags.includes('UP') || l.address !== macFromSeed(n.id)) {
      fail(`bridge ${bridge} of network ${n.id} is not as recorded (kind ${l.linkinfo?.info_kind}, alias ${l.ifalias}, flags ${l.flags.join(',')}, mac ${l.address})`)
    }
    if (l.mtu !== n.mtu) fail(`bridge ${bridge} of network ${n.id} has MTU ${l.mtu}, the record says ${n.mtu}`)
    const group = edge.groups.get(bridge)
    if (Number(l.group) !== group) fail(`bridge ${bridge} of network ${n.id} is in device group ${l.group}, the record implies ${group} (0x${group?.toString(16)})`)
    const gws = [...n.ipv4Subnets, ...n.ipv6Subnets].flatMap((sub: { gateway?: string }) => (sub.gateway ? [sub.gateway] : []))
    if (!sameAddressSet(k.addrs.get(bridge) ?? [], gws)) fail(`bridge ${bridge} has addresses [${(k.addrs.get(bridge) ?? []).join(', ')}], the gateways are [${gws.join(', ')}]`)
  }
  for (const e of s.recs.endpoints.values()) {
    expected.add(e.hostIf)
    expected.add(e.containerIf)
    const bridge = s.recs.networks.get(e.networkId)?.spec.bridge
    const h = byName.get(e.hostIf)
    const c = byName.get(e.containerIf)
    if (!h || h.linkinfo?.info_kind !== 'veth' || h.ifalias !== endpointAlias(e.id) || h.master !== bridge || h.mtu !== e.mtu || !h.flags.includes('UP') || h.link !== e.containerIf) {
      fail(`host veth ${e.hostIf} of endpoint ${e.id} is not as recorded: ${h ? `kind ${h.linkinfo?.info_kind}, alias ${h.ifalias}, master ${h.master} (want ${bridge}), mtu ${h.mtu}, peer ${h.link}` : 'missing'}`)
    }
    if (!c || c.linkinfo?.info_kind !== 'veth' || c.address !== e.mac || c.mtu !== e.mtu || c.link !== e.hostIf) {
      fail(`container veth ${e.containerIf} of endpoint ${e.id} is not as recorded: ${c ? `mac ${c.address} (want ${e.mac}), mtu ${c.mtu}, peer ${c.link}` : 'missing'}`)
    }
  }
  for (const l of k.links) {
    if (!expected.has(l.ifname)) fail(`link ${l.ifname} (${l.linkinfo?.info_kind ?? 'plain'}, alias ${l.ifalias ?? 'none'}) exists but no record explains it`)
  }
  // Held ports: nothing listens in the namespace but the host layer's holds, one per published TCP
  // or UDP port (the kernel has no SCTP sockets here: tsnet holds none for SCTP).
  const heldNow = [...new Set(k.held.map((l) => `${l.split(' ')[0]}/${l.slice(l.lastIndexOf(':') + 1)}`))].sort()
  const heldWant = edge.heldPorts.filter((p) => !p.startsWith('sctp/')).sort()
  if (heldNow.join(' ') !== heldWant.join(' ')) fail(`the host ports held in the namespace are [${heldNow.join(', ')}], the records publish [${heldWant.join(', ')}]`)
  // Rules: everything but tsnet's as in the baseline; tsnet's exactly what edge-plan and the records say.
  for (const [tool, now, base] of [['iptables', k.iptables, baseline.iptables], ['ip6tables', k.ip6tables, baseline.ip6tables]] as const) {
    const f: Family = tool === 'iptables' ? 4 : 6
    // tsnet creates DOCKER-USER where Docker has not: then the chain is tsnet's too.
    const dockerUserIsOurs = !base.includes(`:${DOCKER_USER} - [0:0]`)
    const ours = (l: string) => l.includes('TSNET') || (dockerUserIsOurs && l === `:${DOCKER_USER} - [0:0]`)
    const foreignNow = withoutInertTables(now.filter((l) => !ours(l)))
    const foreignBase = withoutInertTables(base.filter((l) => !ours(l)))
    if (foreignNow.join('\n') !== foreignBase.join('\n')) {
      fail(`${tool}: rules tsnet does not own changed:\n        ${linesDiff(foreignBase.join('\n'), foreignNow.join('\n')).join('\n        ')}`)
    }
    const want = edge.base ? expectedRules(f, dockerUserIsOurs, edge.portRules.filter((r) => r.family === f).map((r) => r.rule)) : []
    const have = now.filter(ours).map(unquote)
    if ([...have].sort().join('\n') !== [...want].sort().join('\n')) {
      fail(`${tool}: tsnet's rules are not what the records imply:\n        ${linesDiff([...want].sort().join('\n'), [...have].sort().join('\n')).join('\n        ')}`)
    } else if (edge.base) {
      // Same rules; now their order: chain bodies as edge-plan lists them, jumps first in their chains.
      const tables = byTable(now)
      const plan = filterRules(f)
      const bodies: Array<[string, string, string[]]> = [
        ['filter', CHAIN.forward, plan.forward], ['filter', CHAIN.from, plan.from], ['filter', CHAIN.to, plan.to], ['nat', CHAIN.postrouting, postroutingRules(f)],
        ['raw', CHAIN.raw, rawRules(f)],
      ]
      for (const [table, chain, rules] of bodies) {
        const got = (tables.get(table) ?? []).filter((l) => l.startsWith(`-A ${chain} `)).map(unquote)
        if (got.join('\n') !== rules.map((r) => unquote(`-A ${chain} ${r}`)).join('\n')) fail(`${tool}: ${table}/${chain} holds edge-plan's rules in another order:\n        ${got.join('\n        ')}`)
      }
      for (const j of jumps(f)) {
        const first = (tables.get(j.table) ?? []).find((l) => l.startsWith(`-A ${j.chain} `))
        if (first === undefined || unquote(first) !== unquote(`-A ${j.chain} ${j.rule}`)) fail(`${tool}: ${j.table}/${j.chain} starts with ${first ?? '(nothing)'}, not tsnet's jump`)
      }
    }
  }
  // Sets: the base sets while a network exists (the VTEP sets come with overlay networks, which this
  // fuzz does not make), none otherwise; exactly the members the records imply.
  // (Their size limit is tsnet's choice, not something the records imply.)
  const created = k.ipset.filter((l) => l.startsWith('create tsnet-')).map((l) => l.replace(/ maxelem \d+/, ''))
  const wantSets = edge.base ? BASE_SETS.map((name) => {
    const kind = name.replace(/^tsnet-/, '').replace(/[46]$/, '') as SetKind
    return `create ${name} ${SET_TYPE[kind]} family ${name.endsWith('6') ? 'inet6' : 'inet'} comment`
  }) : []
  if ([...created].sort().join('\n') !== [...wantSets].sort().join('\n')) {
    fail(`tsnet's ipsets are not what the records imply:\n        ${linesDiff([...wantSets].sort().join('\n'), [...created].sort().join('\n')).join('\n        ')}`)
  }
  const members = new Map<string, string>()
  for (const l of k.ipset) {
    const m = /^add (tsnet-\S+) (\S+) comment "([^"]*)"$/.exec(l)
    if (m) members.set(`${m[1]} ${m[2]}`, m[3] as string)
    else if (l.startsWith('add tsnet-')) fail(`ipset member without tsnet's comment: ${l}`)
  }
  const wantMembers = new Map([...edge.entries.values()].map((w) => [kernelForm(w.entry.set, w.entry.entry), w]))
  out.push(...entryProblems(members, wantMembers))
  // Foreign sets as in the baseline.
  const foreignSets = (lines: string[]) => lines.filter((l) => !/^(create|add) tsnet-/.test(l)).join('\n')
  if (foreignSets(k.ipset) !== foreignSets(baseline.ipset)) fail(`ipsets tsnet does not own changed:\n        ${linesDiff(foreignSets(baseline.ipset), foreignSets(k.ipset)).join('\n        ')}`)
  return out
}

/** tsnet's lines of one family's iptables-save (unquoted), given its DNAT rule bodies. */
function expectedRules(f: Family, dockerUserIsOurs: boolean, dnat: string[]): string[] {
  const plan = filterRules(f)
  return [
    `:${CHAIN.forward} - [0:0]`, `:${CHAIN.from} - [0:0]`, `:${CHAIN.to} - [0:0]`, `:${CHAIN.dnat} - [0:0]`, `:${CHAIN.postrouting} - [0:0]`, `:${CHAIN.raw} - [0:0]`,
    ...(dockerUserIsOurs ? [`:${DOCKER_USER} - [0:0]`] : []),
    ...jumps(f).map((j) => `-A ${j.chain} ${j.rule}`),
    ...rawRules(f).map((r) => `-A ${CHAIN.raw} ${r}`),
    ...plan.forward.map((r) => `-A ${CHAIN.forward} ${r}`),
    ...plan.from.map((r) => `-A ${CHAIN.from} ${r}`),
    ...plan.to.map((r) => `-A ${CHAIN.to} ${r}`),
    ...postroutingRules(f).map((r) => `-A ${CHAIN.postrouting} ${r}`),
    ...dnat.map((r) => `-A ${CHAIN.dnat} ${r}`),
  ].map(unquote)
}

/** How `ipset save` prints a member tsnet writes: full-length prefixes as bare addresses, ICMPv6 by its protocol name. */
function kernelForm(set: string, entry: string): string {
  const parts = entry.split(',')
  const at = set.startsWith('tsnet-allow') ? 2 : 0
  const full = set.endsWith('6') ? '/128' : '/32'
  if (parts[at]?.endsWith(full)) parts[at] = (parts[at] as string).slice(0, -full.length)
  return `${set} ${parts.join(',').replace(/^([^,]+,)icmpv6:/, '$1ipv6-icmp:')}`
}

/** Lines of iptables-save per table (`*filter` → its lines). */
function byTable(lines: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>()
  let table = ''
  for (const l of lines) {
    if (l.startsWith('*')) out.set((table = l.slice(1)), [])
    else if (l !== 'COMMIT') out.get(table)?.push(l)
  }
  return out
}

/** Drops tables that hold nothing but built-in chains with policy ACCEPT (as normalizeIptablesSave does). */
function withoutInertTables(lines: string[]): string[] {
  return normalizeIptablesSave(lines.join('\n'))
}

// ---------------------------------------------------------------- the system under test

export class KernelSut implements Sut {
  readonly hostRoutes = HOST_ROUTES
  private constructor(private readonly dir: string, private host: RemoteHost, private a: App, private readonly baseline: KernelState) {}

  static async start(): Promise<KernelSut> {
    await freshNetns()
    const baseline = await kernelState()
    const dir = await freshStateDir('tsnet-fuzz-kernel-')
    const host = RemoteHost.start(NETNS)
    return new KernelSut(dir, host, await openApp(dir, host), baseline)
  }

  send(r: Rendered): Promise<Answer> {
    this.a.flags.handler = false
    this.a.flags.service = false
    return sendTo(this.a, r)
  }

  reached() {
    return { ...this.a.flags }
  }

  async observe(): Promise<Observation> {
    const k = await kernelState()
    return { store: parseStore(readTree(this.dir)), host: k.text, hostData: k }
  }

  hostDiff(a: string, b: string): string[] {
    return kernelDiff(a, b)
  }

  hostProblems(o: Observation): Violation[] {
    return kernelProblems(o.store, o.hostData as KernelState, this.baseline)
  }

  memoryProblems(store: StoreView): Violation[] {
    return memoryProblems(store, this.a.services.driver.snapshot(), this.a.services.ipam.snapshot())
  }

  /** Ends tsnet as a process exit would: the app, then the host layer's process (its held ports go with it). */
  private async stop(): Promise<void> {
    await this.a.app.close()
    this.a.services.reconciler.stop()
    await this.host.close()
  }

  async restart(before: Observation): Promise<Violation[]> {
    await this.stop()
    this.host = RemoteHost.start(NETNS)
    this.a = await openApp(this.dir, this.host)
    const after = await this.observe()
    const out: Violation[] = []
    if (!sameFiles(before.store.files, after.store.files)) out.push({ rule: 'restart', detail: `a restart changed the store:\n        ${filesDiff(before.store.files, after.store.files).join('\n        ')}` })
    if (before.host !== after.host) out.push({ rule: 'restart', detail: `a restart changed the kernel:\n        ${kernelDiff(before.host, after.host).join('\n        ')}` })
    out.push(...this.memoryProblems(after.store).map((x) => ({ ...x, rule: 'restart', detail: `after a restart: ${x.detail}` })))
    return out
  }

  async finish(): Promise<Violation[]> {
    const out = await deleteEverything(this.a.app, (await this.observe()).store)
    const after = await this.observe()
    out.push(...emptyStoreProblems(after.store))
    const k = after.hostData as KernelState
    const owned = k.links.filter((l) => l.ifalias?.startsWith('tsnet:') || /^ts(br-|v|c)/.test(l.ifname))
    if (owned.length) out.push({ rule: 'cleanup', detail: `tsnet links left after deleting everything: ${owned.map((l) => `${l.ifname} (${l.ifalias ?? 'no alias'})`).join(', ')}` })
    const rules = [...k.iptables, ...k.ip6tables].filter((l) => l.includes('TSNET'))
    if (rules.length) out.push({ rule: 'cleanup', detail: `TSNET rules left after deleting everything: ${rules.join(' | ')}` })
    const sets = k.ipset.filter((l) => l.startsWith('create tsnet-'))
    if (sets.length) out.push({ rule: 'cleanup', detail: `tsnet ipsets left after deleting everything: ${sets.join(' | ')}` })
    if (k.text !== this.baseline.text) out.push({ rule: 'cleanup', detail: `after deleting everything the namespace is not back to its baseline:\n        ${kernelDiff(this.baseline.text, k.text).join('\n        ')}` })
    return out
  }

  async close(): Promise<void> {
    await this.stop()
    await rm(this.dir, { recursive: true, force: true })
  }
}
