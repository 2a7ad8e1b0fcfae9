/**
 * tsnet in-process, built as src/main.ts builds it (FileStore in a temporary directory, the
 * services, buildApp with the restore as `ready`), over a FakeHost that also holds links tsnet
 * does not own. The logger is a real pino logger at level info (tsnet's default) writing to a sink, so that the
 * logging of hostile bodies runs too.
 */
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { parseDefaultPools } from '../../../src/core/ipam.js'
import { FakeHost } from '../../../src/host/fake-host.js'
import type { Host } from '../../../src/host/host.js'
import { buildApp } from '../../../src/server/app.js'
import { IpamService } from '../../../src/services/ipam-service.js'
import { NetworkService } from '../../../src/services/network-service.js'
import { FileStore } from '../../../src/store/file-store.js'
import { checkStoredRecord } from '../../../src/core/record-check.js'
import type { Answer, Observation, Sut } from './engine.js'
import { type Rendered, DOCKER_HEADERS } from './ops.js'
import { type StoreView, type Violation, fakeHostProblems, filesDiff, linesDiff, memoryProblems, parseStore, sameFiles } from './oracle.js'
import { DEFAULT_POOLS_TEXT, GLOBAL_POOLS_TEXT, HOST_ROUTES, ULA48 } from './universe.js'

/** Service methods the routes call; a call to any of them means the request reached the services. */
const SERVICE_METHODS = [
  'capabilities', 'createNetwork', 'deleteNetwork', 'allocateNetwork', 'createEndpoint', 'endpointOperInfo', 'deleteEndpoint', 'join', 'leave',
  'programExternalConnectivity', 'revokeExternalConnectivity', 'defaultAddressSpaces', 'requestPool', 'releasePool', 'requestAddress', 'releaseAddress',
]

export function sinkLogger(): Logger {
  return pino({ level: 'info' }, new Writable({ write: (_c, _e, cb) => cb() }))
}

/**
 * Every file under `dir`: relative path → content, keys sorted. Synchronous on purpose: the app
 * is idle while the test looks, and a few dozen small reads cost far less on the main thread than
 * as thread-pool round trips on a busy machine.
 */
export function readTree(dir: string): Record<string, string> {
  const files: string[] = []
  const walk = (p: string): void => {
    for (const e of readdirSync(p, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(p, e.name))
      else files.push(join(p, e.name))
    }
  }
  walk(dir)
  files.sort()
  const out: Record<string, string> = {}
  for (const f of files) out[relative(dir, f)] = readFileSync(f, 'utf8')
  return out
}

/** Where state directories go: tmpfs when there is one (fsync costs nothing there), else the OS temp dir. */
export function scratchRoot(): string {
  if (process.env.FUZZ_TMPDIR) return process.env.FUZZ_TMPDIR
  try {
    accessSync('/dev/shm', constants.W_OK)
    return '/dev/shm'
  } catch {
    return tmpdir()
  }
}

export interface App {
  network: NetworkService
  ipam: IpamService
  app: ReturnType<typeof buildApp>
  flags: { handler: boolean; service: boolean }
}

/** The services and the app over `dir` and `host`, as main.ts's openServices + serve build them. */
export async function openApp(dir: string, host: Host): Promise<App> {
  const store = await FileStore.open(dir, undefined, { check: checkStoredRecord })
  const network = new NetworkService(store, host, {})
  const ipam = new IpamService(store, host, { defaultPools: parseDefaultPools(DEFAULT_POOLS_TEXT), globalPools: parseDefaultPools(GLOBAL_POOLS_TEXT) })
  await network.load()
  await ipam.load()
  const flags = { handler: false, service: false }
  for (const svc of [network, ipam] as unknown as Array<Record<string, unknown>>) {
    for (const name of SERVICE_METHODS) {
      const f = svc[name]
      if (typeof f !== 'function') continue
      svc[name] = (...args: unknown[]) => {
        flags.service = true
        return (f as (...a: unknown[]) => unknown).apply(svc, args)
      }
    }
  }
  const logger = sinkLogger()
  const ready = network.restoreHost(logger)
  const app = buildApp({ logger, network, ipam, ready })
  // Runs after parsing and schema validation, right before the route handler.
  app.addHook('preHandler', async () => {
    flags.handler = true
  })
  await app.ready()
  // main.ts lets requests wait for the boot restore; the tests look at the host only after it.
  await ready
  return { network, ipam, app, flags }
}

/** A fresh state directory whose IPv6 ULA /48 is fixed, so that runs replay exactly. */
export async function freshStateDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(scratchRoot(), prefix))
  const store = await FileStore.open(dir, undefined, { check: checkStoredRecord })
  await store.put('meta', 'ipam', { ula48: ULA48 })
  return dir
}

export async function sendTo(app: App['app'], r: Rendered): Promise<Answer> {
  const res = await app.inject({ method: r.verb as 'POST', url: r.url, payload: r.payload, headers: r.headers })
  return { status: res.statusCode, body: res.body, ms: 0 }
}

export async function deleteEverything(app: App['app'], store: StoreView): Promise<Violation[]> {
  const out: Violation[] = []
  const call = async (method: string, body: object) => {
    const res = await app.inject({ method: 'POST', url: `/${method}`, payload: `${JSON.stringify(body)}\n`, headers: DOCKER_HEADERS })
    if (res.statusCode !== 200) out.push({ rule: 'cleanup', detail: `${method} ${JSON.stringify(body)} → ${res.statusCode} ${res.body.slice(0, 300)}` })
  }
  for (const e of store.recs.endpoints.values()) await call('NetworkDriver.DeleteEndpoint', { NetworkID: e.networkId, EndpointID: e.id })
  for (const n of store.recs.networks.values()) await call('NetworkDriver.DeleteNetwork', { NetworkID: n.id })
  for (const p of store.recs.pools.values()) await call('IpamDriver.ReleasePool', { PoolID: p.id })
  return out
}

/** After deleting everything, the store holds no records but its metadata. */
export function emptyStoreProblems(s: StoreView): Violation[] {
  const left = (['networks', 'endpoints', 'pools', 'leases'] as const).flatMap((c) => [...s.texts[c].keys()].map((id) => `${c}/${id}`))
  return left.length ? [{ rule: 'cleanup', detail: `records left after deleting everything: ${left.join(', ')}` }] : []
}

/** FakeHost.state() one link, entry, rule, port or group per line, for readable differences. */
function fakeStateLines(state: string): string {
  const s = JSON.parse(state) as { links: Array<[string, unknown]>; sets: string[]; portRules: string[]; edge: boolean; heldPorts: string[]; groups: Array<[string, number]> }
  return [
    ...s.links.map(([, l]) => `link ${JSON.stringify(l)}`), ...s.sets.map((e) => `ipset ${e}`), ...s.portRules.map((r) => `dnat ${r}`),
    `chains ${s.edge ? 'present' : 'absent'}`, ...s.heldPorts.map((p) => `held ${p}`), ...s.groups.map(([b, g]) => `group ${b} 0x${g.toString(16)}`),
  ].join('\n')
}

export class FakeSut implements Sut {
  readonly hostRoutes = HOST_ROUTES
  private constructor(private readonly dir: string, readonly host: FakeHost, private a: App, private readonly foreign: Map<string, string>, private readonly baseline: string) {}

  static async start(): Promise<FakeSut> {
    const dir = await freshStateDir('tsnet-fuzz-')
    const host = new FakeHost()
    host.routes = [...HOST_ROUTES]
    host.mtuOfDefaultRoute = 1450
    // Links tsnet does not own: it must never change or delete them, nor adopt their names.
    host.links.set('eth0', { name: 'eth0', kind: 'dummy', mtu: 1450, up: true, addresses: ['192.168.1.10/24'] })
    host.links.set('docker0', { name: 'docker0', kind: 'bridge', mtu: 1500, up: true, addresses: ['172.17.0.1/16'] })
    const foreign = new Map([...host.links].map(([k, l]) => [k, JSON.stringify(l)]))
    const baseline = host.state()
    return new FakeSut(dir, host, await openApp(dir, host), foreign, baseline)
  }

  send(r: Rendered): Promise<Answer> {
    this.a.flags.handler = false
    this.a.flags.service = false
    return sendTo(this.a.app, r)
  }

  hostDiff(a: string, b: string): string[] {
    return linesDiff(fakeStateLines(a), fakeStateLines(b))
  }

  reached() {
    return { ...this.a.flags }
  }

  async observe(): Promise<Observation> {
    return { store: parseStore(readTree(this.dir)), host: this.host.state() }
  }

  hostProblems(o: Observation): Violation[] {
    return fakeHostProblems(o.store, this.host, this.foreign)
  }

  memoryProblems(store: StoreView): Violation[] {
    return memoryProblems(store, this.a.network.snapshot(), this.a.ipam.snapshot())
  }

  async restart(before: Observation): Promise<Violation[]> {
    await this.a.app.close()
    // The sockets holding published ports die with the process; the new one holds them again.
    this.host.heldPorts.clear()
    this.a = await openApp(this.dir, this.host)
    const after = await this.observe()
    const out: Violation[] = []
    if (!sameFiles(before.store.files, after.store.files)) out.push({ rule: 'restart', detail: `a restart changed the store:\n        ${filesDiff(before.store.files, after.store.files).join('\n        ')}` })
    if (before.host !== after.host) out.push({ rule: 'restart', detail: `a restart changed the host:\n        ${this.hostDiff(before.host, after.host).join('\n        ')}` })
    out.push(...this.memoryProblems(after.store).map((x) => ({ ...x, rule: 'restart', detail: `after a restart: ${x.detail}` })))
    return out
  }

  async finish(): Promise<Violation[]> {
    const out = await deleteEverything(this.a.app, (await this.observe()).store)
    const after = await this.observe()
    out.push(...emptyStoreProblems(after.store))
    this.host.calls.length = 0
    this.host.failNext.clear()
    if (this.host.state() !== this.baseline) out.push({ rule: 'cleanup', detail: `after deleting everything the host is not back to its baseline:\n        ${this.hostDiff(this.baseline, this.host.state()).join('\n        ')}` })
    return out
  }

  async close(): Promise<void> {
    await this.a.app.close()
    await rm(this.dir, { recursive: true, force: true })
  }
}
