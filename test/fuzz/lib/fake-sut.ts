/**
 * tsnet in-process, built as src/main.ts builds it (openServices over a FileStore in a temporary
 * directory, buildApp with the boot reconcile as `ready`), over a FakeHost that also holds links
 * tsnet does not own. The logger is a real pino logger at level info (tsnet's default) writing to
 * a sink, so that the logging of hostile bodies runs too.
 */
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { parseDefaultPools } from '../../../src/core/ipam.js'
import { type HostObject, type LinkType, keyOf } from '../../../src/core/objects.js'
import type { ReconcileReport } from '../../../src/engine/engine.js'
import { FakeHost } from '../../../src/host/fake-host.js'
import type { Host } from '../../../src/host/host.js'
import { type Services, openServices } from '../../../src/main.js'
import { buildApp } from '../../../src/server/app.js'
import { IpamService } from '../../../src/services/ipam-service.js'
import { FileStore } from '../../../src/store/file-store.js'
import { checkStoredRecord } from '../../../src/core/record-check.js'
import type { Answer, Observation, Sut } from './engine.js'
import type { Rendered } from './ops.js'
import { deleteEverything, emptyStoreProblems, sendTo } from './kernel-app.js'
import { type StoreView, type Violation, fakeHostProblems, filesDiff, linesDiff, memoryProblems, parseStore, sameFiles } from './oracle.js'
import { DEFAULT_POOLS_TEXT, GLOBAL_POOLS_TEXT, HOST_ROUTES, ULA48 } from './universe.js'

/** Service methods the routes call; a call to any of them means the request reached the services. */
const SERVICE_METHODS: Record<'driver' | 'ports' | 'ipam', string[]> = {
  driver: ['capabilities', 'createNetwork', 'deleteNetwork', 'allocateNetwork', 'createEndpoint', 'endpointOperInfo', 'deleteEndpoint', 'join', 'leave'],
  ports: ['program', 'revoke'],
  ipam: ['capabilities', 'defaultAddressSpaces', 'requestPool', 'releasePool', 'requestAddress', 'releaseAddress'],
}

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
  services: Services
  app: ReturnType<typeof buildApp>
  flags: { handler: boolean; service: boolean }
}

/**
 * The services and the app over `dir` and `host`, as main.ts's openServices + serve build them;
 * only the IPAM's global pools are few, so that automatic global pools run out too.
 */
export async function openApp(dir: string, host: Host): Promise<App> {
  const logger = sinkLogger()
  const config = {
    socket: join(dir, 'tsnet.sock'), stateDir: dir, logLevel: 'info', defaultPools: parseDefaultPools(DEFAULT_POOLS_TEXT),
    gcIntervalSec: 0, procSys: '/proc/sys', reconcileIntervalSec: 0,
  }
  const opened = await openServices(config, host, logger)
  const ipam = new IpamService(opened.store, host, { defaultPools: config.defaultPools, globalPools: parseDefaultPools(GLOBAL_POOLS_TEXT) })
  await ipam.load()
  const services: Services = { ...opened, ipam }
  const flags = { handler: false, service: false }
  for (const [part, names] of Object.entries(SERVICE_METHODS) as Array<[keyof typeof SERVICE_METHODS, string[]]>) {
    const svc = services[part] as unknown as Record<string, unknown>
    for (const name of names) {
      const f = svc[name]
      if (typeof f !== 'function') throw new Error(`services.${part}.${name} is not a method: the route table changed`)
      svc[name] = (...args: unknown[]) => {
        flags.service = true
        return (f as (...a: unknown[]) => unknown).apply(svc, args)
      }
    }
  }
  const ready = services.reconciler.boot().then(() => undefined)
  const app = buildApp({ logger, services, ready })
  // Runs after parsing and schema validation, right before the route handler.
  app.addHook('preHandler', async () => {
    flags.handler = true
  })
  await app.ready()
  // main.ts lets requests wait for the boot reconcile; the tests look at the host only after it.
  await ready
  return { services, app, flags }
}

/** A fresh state directory whose IPv6 ULA /48 is fixed, so that runs replay exactly. */
export async function freshStateDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(scratchRoot(), prefix))
  const store = await FileStore.open(dir, undefined, { check: checkStoredRecord })
  await store.put('meta', 'ipam', { ula48: ULA48 })
  await store.close()
  return dir
}

/** FakeHost.state() one object per line, for readable differences. */
function fakeStateLines(state: string): string {
  return (JSON.parse(state) as Array<[string, HostObject]>).map(([k, o]) => `${k}  ${JSON.stringify(o)}`).join('\n')
}

/** Objects of other owners on the fake host: tsnet must never change or delete them, nor adopt their names. */
const FOREIGN: HostObject[] = [
  { kind: 'link', name: 'eth0', type: 'dummy' as LinkType, alias: '', mtu: 1450, up: true, recreate: false },
  { kind: 'addr', link: 'eth0', cidr: '192.168.1.10/24' },
  { kind: 'link', name: 'docker0', type: 'bridge', alias: '', mtu: 1500, up: true, recreate: false },
  { kind: 'addr', link: 'docker0', cidr: '172.17.0.1/16' },
]

/** A dry-run reconcile's findings: after any request the host must be exactly what tsnet's index wants. */
function planProblems(plan: ReconcileReport | undefined): Violation[] {
  if (!plan) return [{ rule: 'reconcile-plans', detail: 'the dry-run reconcile failed' }]
  const found = [...plan.changes, ...plan.failed.map((f) => `${f.change} failed: ${f.error}`), ...plan.missing.map((m) => `missing ${m}`), ...plan.foreign.map((f) => `foreign ${f}`)]
  return found.length ? [{ rule: 'reconcile-plans', detail: `a dry-run reconcile right after plans:\n        ${found.slice(0, 20).join('\n        ')}` }] : []
}

export class FakeSut implements Sut {
  readonly hostRoutes = HOST_ROUTES
  private constructor(private readonly dir: string, readonly host: FakeHost, private a: App, private readonly foreign: Map<string, string>, private readonly baseline: string) {}

  static async start(): Promise<FakeSut> {
    const dir = await freshStateDir('tsnet-fuzz-')
    const host = new FakeHost()
    host.routes = [...HOST_ROUTES]
    host.mtuOfDefaultRoute = 1450
    for (const o of FOREIGN) host.objects.set(keyOf(o), structuredClone(o))
    const foreign = new Map(FOREIGN.map((o) => [keyOf(o), JSON.stringify(host.objects.get(keyOf(o)))]))
    const baseline = host.state()
    return new FakeSut(dir, host, await openApp(dir, host), foreign, baseline)
  }

  send(r: Rendered): Promise<Answer> {
    this.a.flags.handler = false
    this.a.flags.service = false
    return sendTo(this.a, r)
  }

  hostDiff(a: string, b: string): string[] {
    return linesDiff(fakeStateLines(a), fakeStateLines(b))
  }

  reached() {
    return { ...this.a.flags }
  }

  async observe(): Promise<Observation> {
    const plan = await this.a.services.reconciler.pass('event', true).catch(() => undefined)
    return { store: parseStore(readTree(this.dir)), host: this.host.state(), hostData: plan }
  }

  hostProblems(o: Observation): Violation[] {
    return [...fakeHostProblems(o.store, this.host, this.foreign), ...planProblems(o.hostData as ReconcileReport | undefined)]
  }

  memoryProblems(store: StoreView): Violation[] {
    return memoryProblems(store, this.a.services.driver.snapshot(), this.a.services.ipam.snapshot())
  }

  async restart(before: Observation): Promise<Violation[]> {
    await this.a.app.close()
    // The sockets holding published ports die with the process; the new one holds them again.
    await this.host.releasePorts()
    this.a = await openApp(this.dir, this.host)
    const after = await this.observe()
    const out: Violation[] = []
    if (!sameFiles(before.store.files, after.store.files)) out.push({ rule: 'restart', detail: `a restart changed the store:\n        ${filesDiff(before.store.files, after.store.files).join('\n        ')}` })
    if (before.host !== after.host) out.push({ rule: 'restart', detail: `a restart changed the host:\n        ${this.hostDiff(before.host, after.host).join('\n        ')}` })
    out.push(...this.memoryProblems(after.store).map((x) => ({ ...x, rule: 'restart', detail: `after a restart: ${x.detail}` })))
    out.push(...planProblems(after.hostData as ReconcileReport | undefined).map((x) => ({ ...x, rule: 'restart', detail: `after a restart: ${x.detail}` })))
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
