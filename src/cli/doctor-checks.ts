/**
 * One examination for `tsnet doctor`: read the store (read-only), Docker (when given), the
 * kernel (the reconcile's dry run) and the host, and turn each into findings. What could not be
 * compared is said too, and whether that leaves the verdict open (exit 2).
 */
import type { Config } from '../config.js'
import { needsInspection } from '../core/gc-plan.js'
import { errorMessage } from '../errors.js'
import { buildDirectory } from '../observe/directory.js'
import type { Examination } from '../observe/doctor-text.js'
import { reconcileFindings } from '../observe/findings.js'
import { hostFindings } from '../observe/host-checks.js'
import { dockerFindings, leasesWithoutEndpoints, tsnetView } from '../observe/record-checks.js'
import { containerNames, type DaemonView } from '../observe/status-view.js'
import { readDocker } from './docker-read.js'
import { readHost } from './host-read.js'
import { kernelDrift } from './kernel-drift.js'
import { readStore } from './state-read.js'
import { peerEntries } from '../modes/overlay-peers.js'

export async function examine(config: Config, daemon: DaemonView, now = Date.now()): Promise<Examination> {
  const out: Examination = { findings: [], compared: [], notCompared: [], notes: [] }
  let stored
  try {
    stored = await readStore(config.stateDir)
  } catch (err) {
    out.notCompared.push({ what: `anything: the store at ${config.stateDir} could not be read (${errorMessage(err)})`, open: true })
    return out
  }
  const records = { networks: stored.networks, endpoints: stored.endpoints, pools: stored.pools, leases: stored.leases }

  let names = stored.cachedNames
  const dockerContainers = new Map<string, string>()
  let docker
  if (config.dockerHost !== undefined) {
    docker = await readDocker(config.dockerHost, needsInspection(tsnetView(records)))
    if (docker.names) names = docker.names
    for (const n of docker.snapshot?.networks ?? []) for (const e of n.endpoints ?? []) if (e.container) dockerContainers.set(e.endpointId, e.container.replace(/^\//, ''))
  }
  const containers = new Map([...containerNames({ ...records, containers: dockerContainers })].map(([id, c]) => [id, c.name]))
  const dir = buildDirectory(records.networks, records.endpoints, new Map(names.map((n) => [n.id, n.name])), containers)

  const kernel = await kernelDrift(config, daemon)
  if (kernel.source === 'none') {
    out.notCompared.push({ what: `the kernel with the store: ${kernel.reason}`, open: true })
  } else {
    out.compared.push(kernel.source === 'daemon' ? `the kernel with the store (the daemon's reconcile, dry run, ${kernel.ms} ms)` : `the kernel with the store (a dry-run reconcile here, ${kernel.ms} ms)`)
    if (kernel.source === 'command') out.notes.push(kernel.note)
    out.findings.push(...reconcileFindings(kernel.drift, dir))
  }

  if (config.dockerHost === undefined) {
    out.notCompared.push({ what: 'the store with Docker: no --docker-host (DOCKER_HOST) given, so records Docker no longer knows are not looked for', open: false })
    out.compared.push('leases with endpoints (the store alone)')
    out.findings.push(...leasesWithoutEndpoints(records, dir, now))
  } else if (!docker?.snapshot) {
    out.notCompared.push({ what: `the store with Docker: ${docker?.error ?? 'no answer'}`, open: true })
  } else if (stored.pinnedEngine !== undefined && stored.pinnedEngine !== docker.snapshot.engineId) {
    out.notCompared.push({ what: `the store with Docker: the store belongs to Docker engine ${stored.pinnedEngine}, but ${config.dockerHost} is engine ${docker.snapshot.engineId} (is --docker-host right?)`, open: true })
  } else {
    out.compared.push(`the store with Docker (${config.dockerHost})`)
    out.findings.push(...dockerFindings(records, docker.snapshot, dir, now))
  }

  // The swarm's hosts: the running daemon's book, else the one it stored (overlay networks).
  const live = daemon.running ? daemon.status.overlay : undefined
  const book = live ?? (stored.peerBook ? { self: stored.peerBook.self, peers: peerEntries(stored.peerBook) } : undefined)
  const swarm = book ? { peers: book.peers.length, from: live ? 'daemon' as const : 'store' as const, addresses: book.peers.map((p) => p.address) } : undefined
  const vxlanPorts = new Set(records.networks.flatMap((n) => (n.mode === 'overlay' ? [n.spec.port] : [])))
  try {
    out.findings.push(...hostFindings(records.networks, await readHost(config.procSys, { ...(book?.self !== undefined ? { self: book.self } : {}), ...(swarm ? { swarm } : {}), vxlanPorts }), dir))
    const overlay = records.networks.some((n) => n.mode === 'overlay') ? ", overlay networks' VXLAN ports, underlay MTU and peers" : ''
    out.compared.push(`the host's routes, br_netfilter, forwarding, FORWARD's policy and uplink MTU${overlay}`)
  } catch (err) {
    out.notCompared.push({ what: `the host's routes and settings: ${errorMessage(err)}`, open: true })
  }
  return out
}

/** 0 clean, 1 drift found, 2 could not check. */
export function exitCodeFor(x: Examination): number {
  if (x.findings.length > 0) return 1
  return x.notCompared.some((n) => n.open) ? 2 : 0
}
