/**
 * `tsnet topology`: the host, its tsnet networks, the containers on them (by name), the ports
 * published to them and the policy arrows between networks, as a graph; then as Graphviz DOT for
 * a layout engine to place. Pure: no coordinates here, Graphviz lays it out.
 */
import { parsePolicy } from '../core/policy.js'
import type { StatusModel } from './status-view.js'

export interface TopologyNetwork {
  id: string
  name: string
  mode: string
  subnets: string[]
  bridge?: string
  internal: boolean
  icc: boolean
}

export interface TopologyContainer {
  /** Docker's name, else the endpoint's short ID. */
  name: string
  attachments: Array<{ network: string; address: string }>
  ports: string[]
}

/** `from` (a network ID, or an address/CIDR outside tsnet) may reach `to` on `ports`. */
export interface PolicyArrow {
  from: string
  to: string
  ports: string
}

export interface Topology {
  host: string
  networks: TopologyNetwork[]
  containers: TopologyContainer[]
  policies: PolicyArrow[]
  /** The other hosts of the swarm (addresses) that this host's overlay networks reach. */
  peers: string[]
}

const short = (id: string) => id.slice(0, 12)
const hostSide = (ip: string) => (ip === '' || ip === '0.0.0.0' || ip === '::' ? '*' : ip.includes(':') ? `[${ip}]` : ip)

export function topologyOf(m: StatusModel, host: string): Topology {
  const networks = m.networks.map((n): TopologyNetwork => ({
    id: n.id, name: n.name ?? short(n.id), mode: n.mode,
    subnets: [...n.ipv4Subnets, ...n.ipv6Subnets].map((s) => s.pool), ...(n.bridge ? { bridge: n.bridge } : {}),
    internal: n.internal, icc: n.enableIcc,
  }))
  const byName = new Map<string, TopologyContainer>()
  for (const e of [...m.endpoints].sort((a, b) => a.id.localeCompare(b.id))) {
    const name = e.container ?? short(e.id)
    const c = byName.get(name) ?? { name, attachments: [], ports: [] }
    c.attachments.push({ network: e.networkId, address: [e.address, e.addressV6].filter(Boolean).join(' ') })
    for (const p of e.published ?? []) c.ports.push(`${hostSide(p.hostIp)}:${p.hostPort}->${p.containerPort}/${p.proto}`)
    byName.set(name, c)
  }
  const idOfName = new Map(networks.map((n) => [n.name, n.id]))
  const policies: PolicyArrow[] = []
  for (const n of m.networks) {
    if (!n.policy) continue
    let rules
    try {
      rules = parsePolicy(n.policy)
    } catch {
      continue // a stored policy was checked when it was set; an unreadable one draws no arrow
    }
    for (const r of rules) {
      const ports = r.ports.map((p) => (p.proto === 'icmp' ? 'icmp' : p.from === p.to ? `${p.proto}/${p.from}` : `${p.proto}/${p.from}-${p.to}`)).join(',')
      for (const s of r.sources) policies.push({ from: s.kind === 'network' ? idOfName.get(s.name) ?? s.name : s.cidr, to: n.id, ports })
    }
  }
  const peers = networks.some((n) => n.mode === 'overlay') ? (m.peers?.peers ?? []).map((p) => p.address) : []
  return { host, networks, containers: [...byName.values()].sort((a, b) => a.name.localeCompare(b.name)), policies, peers }
}

/** A DOT string literal: quotes and backslashes escaped, no raw newlines. */
const q = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`
const nodeId = (kind: string, key: string) => q(`${kind}:${key}`)

/** The topology as a Graphviz digraph: networks and containers in the host's box, the swarm's other hosts beside it, policy arrows dashed. */
export function topologyDot(t: Topology): string {
  const out: string[] = [
    'digraph tsnet {',
    '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, nodesep=0.3, ranksep=0.9];',
    '  node [fontname="Helvetica", fontsize=10, margin="0.2,0.08"];',
    '  edge [fontname="Helvetica", fontsize=9];',
    `  subgraph "cluster_host" {`,
    `    label=${q(`host ${t.host}`)}; style="rounded"; color="#888888";`,
  ]
  // Graphviz draws no empty box: say so instead of an empty picture.
  if (t.networks.length === 0 && t.containers.length === 0) out.push(`    "empty" [label="no tsnet networks", shape=plaintext];`)
  for (const n of t.networks) {
    const flags = [n.internal ? 'internal' : '', n.icc ? '' : 'icc off'].filter(Boolean).join(', ')
    const label = [`network ${n.name}`, `${n.mode}${n.bridge ? ` ${n.bridge}` : ''}`, ...n.subnets, ...(flags ? [flags] : [])].join('\n')
    out.push(`    ${nodeId('net', n.id)} [label=${q(label)}, shape=box, style="rounded,filled", fillcolor="#dbe9f6"];`)
  }
  for (const c of t.containers) {
    out.push(`    ${nodeId('ctr', c.name)} [label=${q(`container ${c.name}`)}, shape=box, style=filled, fillcolor="#f3f3f3"];`)
    for (const a of c.attachments) out.push(`    ${nodeId('ctr', c.name)} -> ${nodeId('net', a.network)} [label=${q(a.address)}, dir=none];`)
    for (const p of c.ports) {
      out.push(`    ${nodeId('port', `${c.name} ${p}`)} [label=${q(`published ${p}`)}, shape=box, style=filled, fillcolor="#fde8c8", margin="0.25,0.06"];`)
      out.push(`    ${nodeId('port', `${c.name} ${p}`)} -> ${nodeId('ctr', c.name)};`)
    }
  }
  out.push('  }')
  // Overlay networks span the swarm: each other host, joined to every overlay network here.
  for (const peer of t.peers) {
    out.push(`  ${nodeId('peer', peer)} [label=${q(`host ${peer}`)}, shape=box3d, style=filled, fillcolor="#e8f4e4"];`)
    for (const n of t.networks.filter((x) => x.mode === 'overlay')) out.push(`  ${nodeId('peer', peer)} -> ${nodeId('net', n.id)} [label="VXLAN", dir=none, style=bold, color="#2e7d32"];`)
  }
  const known = new Set(t.networks.map((n) => n.id))
  for (const p of t.policies) {
    if (!known.has(p.from)) out.push(`  ${nodeId('src', p.from)} [label=${q(p.from)}, shape=plaintext];`)
    out.push(`  ${known.has(p.from) ? nodeId('net', p.from) : nodeId('src', p.from)} -> ${nodeId('net', p.to)} [label=${q(`may reach ${p.ports}`)}, style=dashed, color="#c0392b", fontcolor="#c0392b", constraint=false];`)
  }
  out.push('}')
  return `${out.join('\n')}\n`
}
