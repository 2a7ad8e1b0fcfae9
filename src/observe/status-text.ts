/** `tsnet status` for people: the daemon, health lines, then networks with their containers, then pools. */
import type { PublishedPort } from '../core/records.js'
import { bindAddressOf } from '../core/ports.js'
import type { DaemonStatus, GcStatus, ReconcilePass } from './daemon-status.js'
import { type EndpointView, type NetworkView, type PeersView, type StatusModel, linkOfNetwork } from './status-view.js'

const short = (id: string) => id.slice(0, 12)

/** "12:01:03Z (4 min ago)": an ISO time, shortened, with how long ago it was. */
export function when(iso: string, now: number): string {
  const t = Date.parse(iso)
  if (!Number.isFinite(t)) return iso
  const s = Math.max(0, Math.round((now - t) / 1000))
  const ago = s < 60 ? `${s} s ago` : s < 3600 ? `${Math.floor(s / 60)} min ago` : s < 86_400 ? `${Math.floor(s / 3600)} h ago` : `${Math.floor(s / 86_400)} d ago`
  return `${iso.replace(/\.\d+Z$/, 'Z')} (${ago})`
}

const list = (items: string[], max = 3) => (items.length <= max ? items.join(', ') : `${items.slice(0, max).join(', ')} and ${items.length - max} more`)

export function portText(p: PublishedPort): string {
  const host = p.family === 6 ? `[${bindAddressOf(p)}]` : bindAddressOf(p)
  const dest = p.family === 6 ? `[${p.containerIp}]` : p.containerIp
  return `${host}:${p.hostPort}->${dest}:${p.containerPort}/${p.proto}`
}

function passText(p: ReconcilePass, now: number): string {
  const did = p.changes.length === 0 ? 'nothing to repair' : `repaired ${p.changes.length}: ${list(p.changes)}`
  const failed = p.failed.length ? `; ${p.failed.length} failed: ${list(p.failed.map((f) => `${f.change} (${f.error})`), 2)}` : ''
  const foreign = p.foreign.length ? `; ${p.foreign.length} held by something else: ${list(p.foreign, 2)}` : ''
  const missing = p.missing.length ? `; ${p.missing.length} gone for good (only Docker can make them again): ${list(p.missing, 2)}` : ''
  return `${when(p.at, now)}, ${p.kind}, ${p.ms} ms: ${did}${failed}${foreign}${missing}`
}

export function reconcileLine(d: DaemonStatus, now: number): string {
  const pace = d.reconcileIntervalSec > 0 ? `every ${d.reconcileIntervalSec} s and when a tsnet link goes` : 'automatic repair off (--reconcile-interval 0)'
  if (!d.reconcile) return `boot reconcile in progress; then ${pace}`
  const repair = d.lastRepair && d.lastRepair !== d.reconcile && d.lastRepair.at !== d.reconcile.at
    ? `; last repair ${when(d.lastRepair.at, now)}: ${list(d.lastRepair.changes)}` : ''
  return `last ${passText(d.reconcile, now)}${repair}; ${pace}`
}

export function gcLine(gc: GcStatus, now: number): string {
  switch (gc.state) {
    case 'off': return `off: ${gc.reason}`
    case 'starting': return `starting (since ${when(gc.since, now)})`
    case 'running': return `running since ${when(gc.since, now)}; last pass ${when(gc.lastPass.at, now)}: ${gc.lastPass.unexplained} record(s) Docker does not explain, ${gc.lastPass.collected} collected`
    case 'waiting': return `waiting for Docker since ${when(gc.since, now)}: ${gc.reason}`
    case 'refused': return `REFUSED since ${when(gc.since, now)}: ${gc.reason}`
  }
}

function dockerLine(m: StatusModel, now: number): string {
  const names = m.names.source === 'docker' ? "names read from Docker's API now"
    : m.names.source === 'cache' ? `names as the daemon last saw them${m.names.error ? ` (Docker's API: ${m.names.error})` : ''}`
      : `no names${m.names.error ? ` (Docker's API: ${m.names.error})` : ' (give --docker-host to read them from Docker)'}`
  if (!m.daemon.running) return names
  const d = m.daemon.status.docker
  switch (d.state) {
    case 'off': return `off in the daemon: no --docker-host, so garbage collection and policies that name networks are off; ${names}`
    case 'answering': return `answering at ${d.dockerHost}${d.lastAnswer ? ` (last answer ${when(d.lastAnswer, now)})` : ''}; ${names}`
    case 'silent': return `NOT ANSWERING at ${d.dockerHost} since ${when(d.since, now)}${d.reason ? `: ${d.reason}` : ''}; ${names}`
  }
}

function networkLine(n: NetworkView): string[] {
  const label = n.name ? `${n.name} (${short(n.id)})` : short(n.id)
  const record = n
  const subnets = [...record.ipv4Subnets, ...record.ipv6Subnets].map((s) => `${s.pool}${s.gateway ? ` gw ${s.gateway.split('/')[0]}` : ''}`).join(', ')
  const flags = [record.internal ? 'internal' : '', record.enableIcc ? '' : 'icc off', record.enableIpMasquerade ? '' : 'no masquerade'].filter(Boolean).join(', ')
  const link = n.mode === 'overlay' || n.mode === 'cluster'
    ? `${n.mode === 'cluster' ? `${n.spec.cluster} ` : ''}vni ${n.spec.vni} vxlan ${n.spec.vxlan} udp/${n.spec.port} ${n.spec.bridge ? `bridge ${n.spec.bridge}` : 'endpoints macvlan'}` : linkOfNetwork(n)
  const lines = [`  ${label}  ${n.mode}${link ? ` ${link}` : ''}  mtu ${record.mtu}  ${subnets || 'no subnet'}${flags ? `  ${flags}` : ''}`]
  const options = Object.entries(record.genericOptions ?? {}).filter(([k]) => k !== 'tsnet.allow').map(([k, v]) => `${k}=${v}`)
  if (options.length) lines.push(`    options: ${options.join(' ')}`)
  if (record.policy) lines.push(`    allow: ${record.policy}`)
  return lines
}

function endpointLine(e: EndpointView): string {
  const r = e
  const label = e.container ?? `endpoint ${short(e.id)}`
  const ports = (r.published ?? []).map(portText).join(' ')
  return `    ${label}  ${[r.address, r.addressV6].filter(Boolean).join(' ') || 'no address'}  ${r.mac}${r.hostIf ? `  ${r.hostIf}` : ''}${r.joined ? '  joined' : ''}${ports ? `  ports ${ports}` : ''}`
}

const HOW: Record<string, string> = { discovery: 'DiscoverNew from Docker', docker: "Docker's network peer list" }

/** The hosts of the swarm: this node, then each peer with how tsnet knows it and its last contact. */
export function peersLines(p: PeersView, now: number): string[] {
  const whose = p.from === 'daemon' ? 'the daemon now' : "as of the daemon's last run (meta/swarm-peers); it confirms them with Docker when it starts"
  const out = [`swarm peers: ${p.peers.length} (${whose})`, `  this node  ${p.self ?? 'not told yet (Docker sends DiscoverNew once the node is in a swarm)'}`]
  if (p.peers.length === 0) out.push('  no other host known: overlay networks reach no other host')
  for (const x of p.peers) out.push(`  ${x.address}  ${HOW[x.source] ?? x.source}  last contact ${x.lastContact ? when(x.lastContact, now) : 'never recorded'}`)
  return out
}

export function statusText(m: StatusModel, now: number): string {
  const out: string[] = []
  if (m.daemon.running) {
    const d = m.daemon.status
    out.push(`daemon: running, pid ${d.pid}, version ${d.version}, since ${when(d.startedAt, now)}, socket ${m.daemon.socket}`)
  } else {
    out.push(`daemon: ${m.daemon.reason}; what follows is what the store holds`)
  }
  out.push('health:')
  const unknown = 'unknown: only the running daemon knows'
  out.push(`  reconcile  ${m.daemon.running ? reconcileLine(m.daemon.status, now) : `${unknown}; it reconciles the host with the store when it starts`}`)
  const pinned = m.store.pinnedEngine ? `; the store is pinned to Docker engine ${m.store.pinnedEngine}` : ''
  out.push(`  gc         ${m.daemon.running ? gcLine(m.daemon.status.gc, now) : unknown}${pinned}`)
  out.push(`  docker     ${dockerLine(m, now)}`)
  const c = m.daemon.running ? m.daemon.status.cluster : undefined
  if (c) out.push(`  cluster    host ${c.hostId}, ${c.registered ? 'registered in etcd' : 'NOT registered in etcd (unreachable?): new containers on cluster networks fail'}${c.leader ? ', the elected reclaimer' : ''}, ${c.remoteEndpoints} remote endpoint(s) known${c.remotesFrom === 'saved copy' ? ' (from the copy saved on disk: etcd not listed yet)' : ''}`)
  out.push(`  store      embedded at ${m.store.path}, reachable: ${m.store.networks} network(s), ${m.store.endpoints} endpoint(s), ${m.store.pools} pool(s), ${m.store.leases} lease(s)`)
  out.push(`networks: ${m.networks.length}`)
  for (const n of m.networks) {
    out.push(...networkLine(n))
    for (const e of m.endpoints.filter((x) => x.networkId === n.id)) out.push(endpointLine(e))
  }
  const orphans = m.endpoints.filter((e) => !m.networks.some((n) => n.id === e.networkId))
  for (const e of orphans) out.push(`  (endpoint of unknown network ${short(e.networkId)})`, endpointLine(e))
  if (m.peers) out.push(...peersLines(m.peers, now))
  out.push(`pools: ${m.pools.length}`)
  for (const p of m.pools) {
    const used = m.leases.filter((l) => l.poolId === p.id).map((l) => l.address)
    out.push(`  ${p.id}  ${used.length} leased${used.length ? `: ${used.join(' ')}` : ''}`)
  }
  return out.join('\n')
}
