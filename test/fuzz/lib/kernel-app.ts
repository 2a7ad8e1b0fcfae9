/**
 * tsnet in the fuzz process, built exactly as `tsnet serve` builds it (main.ts openServices, the
 * boot reconcile as the `ready` requests wait for, buildApp), over a FileStore in a temporary
 * directory and a host: for the real-kernel fuzz, the real host layer running in the fuzz
 * namespace (test/integration/lib/remote-host.ts). The logger is a real pino logger at level info
 * (tsnet's default) writing to a sink, so that the logging of hostile bodies runs too. The
 * services' methods are wrapped to tell whether a request reached them.
 *
 * (The store and API helpers here are the in-process suite's too; kept apart so that the
 * real-kernel suite does not depend on the fake host's SUT.)
 */
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { parseDefaultPools } from '../../../src/core/ipam.js'
import { checkStoredRecord } from '../../../src/core/record-check.js'
import type { Host } from '../../../src/host/host.js'
import { openServices, type Services } from '../../../src/main.js'
import { buildApp } from '../../../src/server/app.js'
import { IpamService } from '../../../src/services/ipam-service.js'
import { FileStore } from '../../../src/store/file-store.js'
import type { Answer } from './engine.js'
import { type Rendered, DOCKER_HEADERS } from './ops.js'
import type { StoreView, Violation } from './oracle.js'
import { DEFAULT_POOLS_TEXT, GLOBAL_POOLS_TEXT, ULA48 } from './universe.js'

/** Service methods the routes call; a call to any of them means the request reached the services. */
const SERVICE_METHODS = {
  driver: ['capabilities', 'createNetwork', 'deleteNetwork', 'allocateNetwork', 'createEndpoint', 'endpointOperInfo', 'deleteEndpoint', 'join', 'leave'],
  ports: ['program', 'revoke'],
  ipam: ['defaultAddressSpaces', 'requestPool', 'releasePool', 'requestAddress', 'releaseAddress'],
} as const

export function sinkLogger(): Logger {
  return pino({ level: 'info' }, new Writable({ write: (_c, _e, cb) => cb() }))
}

/** Every file under `dir`: relative path → content, keys sorted. */
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
function scratchRoot(): string {
  if (process.env.FUZZ_TMPDIR) return process.env.FUZZ_TMPDIR
  try {
    accessSync('/dev/shm', constants.W_OK)
    return '/dev/shm'
  } catch {
    return tmpdir()
  }
}

/** A fresh state directory whose IPv6 ULA /48 is fixed, so that runs replay exactly. */
export async function freshStateDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(scratchRoot(), prefix))
  const store = await FileStore.open(dir, undefined, { check: checkStoredRecord })
  await store.put('meta', 'ipam', { ula48: ULA48 })
  await store.close()
  return dir
}

export interface App {
  services: Services
  app: ReturnType<typeof buildApp>
  flags: { handler: boolean; service: boolean }
}

/** The services and the app over `dir` and `host`, as main.ts's openServices + serve build them. */
export async function openApp(dir: string, host: Host): Promise<App> {
  const logger = sinkLogger()
  const config = {
    socket: join(dir, 'tsnet.sock'), stateDir: dir, logLevel: 'info', defaultPools: parseDefaultPools(DEFAULT_POOLS_TEXT),
    gcIntervalSec: 0, procSys: '/proc/sys', reconcileIntervalSec: 0,
  }
  const services = await openServices(config, host, logger)
  // The universe's global pools are few, so that they run out too (serve takes Docker's 10.0.0.0/8).
  services.ipam = new IpamService(services.store, host, { defaultPools: config.defaultPools, globalPools: parseDefaultPools(GLOBAL_POOLS_TEXT) })
  await services.ipam.load()
  const flags = { handler: false, service: false }
  for (const [part, names] of Object.entries(SERVICE_METHODS)) {
    const svc = services[part as keyof typeof SERVICE_METHODS] as unknown as Record<string, unknown>
    for (const name of names) {
      const f = svc[name]
      if (typeof f !== 'function') throw new Error(`services.${part}.${name} is not a method: the list above is out of date`)
      svc[name] = (...args: unknown[]) => {
        flags.service = true
        return (f as (...a: unknown[]) => unknown).apply(svc, args)
      }
    }
  }
  // As main.ts: requests wait for the boot reconcile; the tests look at the host only after it.
  const ready = services.reconciler.boot().then(() => undefined)
  const app = buildApp({ logger, services, ready })
  // Runs after parsing and schema validation, right before the route handler.
  app.addHook('preHandler', async () => {
    flags.handler = true
  })
  await app.ready()
  await ready
  return { services, app, flags }
}

/** Sends one request, then waits for the driver's queued work: DeleteEndpoint and Leave answer before their last host or store work. */
export async function sendTo(a: Pick<App, 'app' | 'services'>, r: Rendered): Promise<Answer> {
  const res = await a.app.inject({ method: r.verb as 'POST', url: r.url, payload: r.payload, headers: r.headers })
  await a.services.driver.lock.idle()
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
