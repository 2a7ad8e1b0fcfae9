/**
 * tsnet in-process over the REAL host layer (LinuxHost: iproute2 + iptables) inside a network
 * namespace this process creates, `tsfz-<pid>`, entered with nsenter for every command. Nothing
 * runs in the root namespace. The namespace is deleted in the test's teardown and, should the
 * process die first, on exit and on SIGINT/SIGTERM/SIGHUP.
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
 *    nothing (as test/e2e/lib/snapshot.ts does).
 */
import { execFile, execFileSync } from 'node:child_process'
import { rm } from 'node:fs/promises'
import { endpointAlias, macFromSeed, networkAlias, networkTag } from '../../../src/core/names.js'
import { createRunner } from '../../../src/host/exec.js'
import { LinuxHost } from '../../../src/host/linux-host.js'
import type { Answer, Observation, Sut } from './engine.js'
import { type App, deleteEverything, emptyStoreProblems, freshStateDir, openApp, readTree, sendTo } from './fake-sut.js'
import { cidrValue } from './ip.js'
import type { Rendered } from './ops.js'
import { type StoreView, type Violation, filesDiff, linesDiff, memoryProblems, parseStore, sameFiles } from './oracle.js'
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
 */
const BASELINE = `
set -e
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
  'ip -j -d link show', 'ip -j addr show', 'ip -j -4 route show table all', 'ip -j -6 route show table all', 'iptables-save', 'ip6tables-save',
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

export interface KernelLink {
  ifname: string
  ifalias?: string
  link?: string
  master?: string
  mtu: number
  address?: string
  flags: string[]
  linkinfo?: { info_kind?: string }
}

export interface KernelState {
  links: KernelLink[]
  /** ifname → addresses (scope other than link) as "addr/len" */
  addrs: Map<string, string[]>
  iptables: string[]
  ip6tables: string[]
  text: string
}

const isLinkLocalRoute = (r: { dst?: string; type?: string }) =>
  r.type === 'multicast' || (r.dst ?? '').startsWith('fe80:') || (r.dst ?? '').startsWith('ff00::')

export async function kernelState(): Promise<KernelState> {
  const parts = (await inNs(SNAPSHOT)).split(`${SEP}\n`)
  const [linksJ = '[]', addrsJ = '[]', r4 = '[]', r6 = '[]', ipt = '', ip6t = ''] = parts
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
  lines.push(...iptables.map((l) => `iptables ${l}`), ...ip6tables.map((l) => `ip6tables ${l}`))
  return { links, addrs, iptables, ip6tables, text: lines.join('\n') }
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
  const rules: string[] = []
  for (const n of s.recs.networks.values()) {
    expected.add(n.bridge)
    rules.push(unquote(`-A TSNET-FORWARD -i ${n.bridge} -o ${n.bridge} -m comment --comment "${networkTag(n.id)}" -j ACCEPT`))
    const l = byName.get(n.bridge)
    if (!l) {
      fail(`network ${n.id}'s bridge ${n.bridge} does not exist`)
      continue
    }
    if (l.linkinfo?.info_kind !== 'bridge' || l.ifalias !== networkAlias(n.id) || !l.flags.includes('UP') || l.address !== macFromSeed(n.id)) {
      fail(`bridge ${n.bridge} of network ${n.id} is not as recorded (kind ${l.linkinfo?.info_kind}, alias ${l.ifalias}, flags ${l.flags.join(',')}, mac ${l.address})`)
    }
    if (l.mtu !== n.mtu) fail(`bridge ${n.bridge} of network ${n.id} has MTU ${l.mtu}, the record says ${n.mtu}`)
    const gws = [...n.ipv4Subnets, ...n.ipv6Subnets].flatMap((sub: { gateway?: string }) => (sub.gateway ? [sub.gateway] : []))
    if (!sameAddressSet(k.addrs.get(n.bridge) ?? [], gws)) fail(`bridge ${n.bridge} has addresses [${(k.addrs.get(n.bridge) ?? []).join(', ')}], the gateways are [${gws.join(', ')}]`)
  }
  for (const e of s.recs.endpoints.values()) {
    expected.add(e.hostIf)
    expected.add(e.containerIf)
    const bridge = s.recs.networks.get(e.networkId)?.bridge
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
  // Rules: everything but tsnet's chain as in the baseline; tsnet's chain exactly the networks' rules.
  for (const [fam, now, base] of [['iptables', k.iptables, baseline.iptables], ['ip6tables', k.ip6tables, baseline.ip6tables]] as const) {
    const foreignNow = now.filter((l) => !l.includes('TSNET'))
    const foreignBase = base.filter((l) => !l.includes('TSNET'))
    const inert = (l: string[]) => l.filter((x) => !/^(\*filter|COMMIT|:(INPUT|FORWARD|OUTPUT) ACCEPT \[0:0\])$/.test(x)).join('\n')
    if (foreignNow.join('\n') !== foreignBase.join('\n') && inert(foreignNow) !== inert(foreignBase)) {
      fail(`${fam}: rules tsnet does not own changed:\n        ${linesDiff(foreignBase.join('\n'), foreignNow.join('\n')).join('\n        ')}`)
    }
    const ours = now.filter((l) => l.includes('TSNET'))
    const want = s.recs.networks.size === 0 ? [] : [':TSNET-FORWARD - [0:0]', '-A FORWARD -j TSNET-FORWARD', ...rules]
    const have = ours.map(unquote)
    if ([...have].sort().join('\n') !== [...want].sort().join('\n')) {
      fail(`${fam}: tsnet's rules are not what the records imply:\n        ${linesDiff(want.join('\n'), have.join('\n')).join('\n        ')}`)
    }
  }
  return out
}

// ---------------------------------------------------------------- the system under test

export class KernelSut implements Sut {
  readonly hostRoutes = HOST_ROUTES
  private constructor(private readonly dir: string, private a: App, private readonly baseline: KernelState) {}

  static async start(): Promise<KernelSut> {
    await freshNetns()
    const baseline = await kernelState()
    const dir = await freshStateDir('tsnet-fuzz-kernel-')
    const host = new LinuxHost(createRunner(['nsenter', `--net=${NETNS_PATH}`]))
    return new KernelSut(dir, await openApp(dir, host), baseline)
  }

  private host() {
    return new LinuxHost(createRunner(['nsenter', `--net=${NETNS_PATH}`]))
  }

  send(r: Rendered): Promise<Answer> {
    this.a.flags.handler = false
    this.a.flags.service = false
    return sendTo(this.a.app, r)
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
    return memoryProblems(store, this.a.network.snapshot(), this.a.ipam.snapshot())
  }

  async restart(before: Observation): Promise<Violation[]> {
    await this.a.app.close()
    this.a = await openApp(this.dir, this.host())
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
    if (k.text !== this.baseline.text) out.push({ rule: 'cleanup', detail: `after deleting everything the namespace is not back to its baseline:\n        ${kernelDiff(this.baseline.text, k.text).join('\n        ')}` })
    return out
  }

  async close(): Promise<void> {
    await this.a.app.close()
    await rm(this.dir, { recursive: true, force: true })
  }
}
