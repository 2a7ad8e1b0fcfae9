// What TSNET-INPUT costs a peer's VXLAN as overlay networks add up: the round trip between two
// containers across two hosts (network namespaces, a VXLAN device each, a macvlan child per
// container: tsnet's data path) with no TSNET-INPUT, with the chains as tsnet writes them (the VTEP
// pass, then one drop rule per network; and TSNET-PREROUTING's reverse-path check of a VTEP's
// address), and with the per-network drops alone (tsnet before the pass), at several network counts. Rules come from src/core/edge-rules.ts, so the bench measures
// what tsnet writes. A report, not a test: it prints and writes bench/results/guard-cost-<date>.md.
//   npm run bench:guard        (as root; BENCH_NETWORKS=1,10,50,100 BENCH_ROUNDS=6 to change)
import { CHAIN, OVERLAY_TO_HOST_RULE, inGuardOrder, setName, vtepPassRule, vtepSpoofRule, vxlanGuardRule } from '../src/core/edge-rules.js'
import { runOk } from '../test/e2e/lib/proc.js'
import { parsePing } from './datapath.js'
import { runBench, writeReport } from './lib/report.js'
import { fmt, median, rotated } from './lib/stats.js'

const STEPS = (process.env.BENCH_NETWORKS ?? '1,10,50,100').split(',').map(Number)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6)
const PINGS = Number(process.env.BENCH_PINGS ?? 1000)
const PORT = 4789
const VNI = 300
const NS = { ha: 'tsg-ha', hb: 'tsg-hb', ca: 'tsg-ca', cb: 'tsg-cb' } as const
const UNDERLAY = { a: '10.77.0.1', b: '10.77.0.2' }
const INNER = { a: '10.78.0.1', b: '10.78.0.2' }
type Layout = 'none' | 'tsnet' | 'per-network only'
const LAYOUTS: readonly Layout[] = ['none', 'tsnet', 'per-network only']

const ip = (ns: string, args: string[]) => runOk('ip', ['-n', ns, ...args])
const inNs = (ns: string, cmd: string, args: string[], input?: string) => runOk('nsenter', [`--net=/run/netns/${ns}`, cmd, ...args], input === undefined ? {} : { input })

async function build(): Promise<void> {
  for (const ns of Object.values(NS)) await runOk('ip', ['netns', 'add', ns])
  await ip(NS.ha, ['link', 'add', 'u0', 'type', 'veth', 'peer', 'name', 'u0', 'netns', NS.hb])
  for (const [ns, addr, peer, ctr, inner] of [[NS.ha, UNDERLAY.a, UNDERLAY.b, NS.ca, INNER.a], [NS.hb, UNDERLAY.b, UNDERLAY.a, NS.cb, INNER.b]] as const) {
    await ip(ns, ['addr', 'add', `${addr}/24`, 'dev', 'u0'])
    await ip(ns, ['link', 'set', 'u0', 'up'])
    await ip(ns, ['link', 'add', 'vx0', 'type', 'vxlan', 'id', String(VNI), 'local', addr, 'dstport', String(PORT), 'dev', 'u0'])
    await ip(ns, ['link', 'set', 'vx0', 'up'])
    await runOk('bridge', ['-n', ns, 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'vx0', 'dst', peer])
    await ip(ns, ['link', 'add', 'c0', 'link', 'vx0', 'type', 'macvlan', 'mode', 'bridge'])
    await ip(ns, ['link', 'set', 'c0', 'netns', ctr])
    await ip(ctr, ['addr', 'add', `${inner}/24`, 'dev', 'c0'])
    await ip(ctr, ['link', 'set', 'c0', 'up'])
    await ip(ctr, ['link', 'set', 'lo', 'up'])
    await inNs(ns, 'ipset', ['create', setName('vtep', 4), 'hash:ip', 'comment'])
    await inNs(ns, 'ipset', ['add', setName('vtep', 4), peer])
  }
}

/** TSNET-INPUT on both hosts for `networks` overlay networks (this one's VNI first), in one layout. */
async function writeChain(layout: Layout, networks: number): Promise<void> {
  const drops = Array.from({ length: networks }, (_, i) => vxlanGuardRule(4, PORT, VNI + i, `tsnet:net:bench${i}`))
  const rules = layout === 'none' ? [] : inGuardOrder([OVERLAY_TO_HOST_RULE, ...(layout === 'tsnet' ? [vtepPassRule(4, PORT)] : []), ...drops])
  const lines = ['*filter', ':INPUT ACCEPT [0:0]', `:${CHAIN.input} - [0:0]`, ...rules.map((r) => `-A ${CHAIN.input} ${r}`), ...(rules.length ? [`-A INPUT -j ${CHAIN.input}`] : []), 'COMMIT']
  // tsnet also checks, in mangle PREROUTING, that a VTEP's address comes from its side.
  const spoof = layout === 'tsnet' ? [`-A ${CHAIN.prerouting} ${vtepSpoofRule(4, PORT)}`, `-A PREROUTING -j ${CHAIN.prerouting}`] : []
  lines.push('*mangle', ':PREROUTING ACCEPT [0:0]', `:${CHAIN.prerouting} - [0:0]`, ...spoof, 'COMMIT', '')
  for (const ns of [NS.ha, NS.hb]) await inNs(ns, 'iptables-restore', [], lines.join('\n'))
}

async function main(): Promise<void> {
  const rows: string[] = []
  try {
    await build()
    await inNs(NS.ca, 'busybox', ['ping', '-c', '3', '-W', '1', INNER.b])
    rows.push('| networks | no TSNET-INPUT µs (avg / min) | tsnet: VTEP pass first | per-network drops only (before the pass) | tsnet / none (min) | per-network only / none (min) |', '|---|---|---|---|---|---|')
    for (const n of STEPS) {
      const s: Record<Layout, { avg: number[]; min: number[] }> = { none: { avg: [], min: [] }, tsnet: { avg: [], min: [] }, 'per-network only': { avg: [], min: [] } }
      for (let r = 0; r < ROUNDS; r++) {
        for (const layout of rotated(LAYOUTS, r)) {
          await writeChain(layout, n)
          const p = parsePing((await inNs(NS.ca, 'busybox', ['ping', '-A', '-q', '-c', String(PINGS), INNER.b])).stdout)
          s[layout].avg.push(p.rttAvgUs)
          s[layout].min.push(p.rttMinUs)
        }
      }
      const cell = (l: Layout) => `${fmt(median(s[l].avg), 0)} / ${fmt(median(s[l].min), 0)}`
      const ratio = (l: Layout) => fmt(median(s[l].min.map((x, i) => x / (s.none.min[i] as number))), 2)
      rows.push(`| ${n} | ${cell('none')} | ${cell('tsnet')} | ${cell('per-network only')} | ${ratio('tsnet')} | ${ratio('per-network only')} |`)
      console.log(rows.at(-1))
    }
  } finally {
    for (const ns of Object.values(NS)) await runOk('ip', ['netns', 'del', ns]).catch(() => undefined)
  }
  const date = new Date().toISOString().slice(0, 10)
  const report = [
    `# TSNET-INPUT's cost to a peer's VXLAN, ${date}`, '',
    `Two hosts (namespaces) joined by a veth, VXLAN on UDP ${PORT}, a macvlan child per container; busybox \`ping -A -c ${PINGS}\` between the containers, median of ${ROUNDS} interleaved rounds per row. Each network adds one per-network drop rule; only the first network's VNI carries traffic. "tsnet" includes TSNET-PREROUTING's reverse-path check (mangle).`, '',
    ...rows, '',
  ].join('\n')
  writeReport('guard-cost', report)
}

runBench(main)
