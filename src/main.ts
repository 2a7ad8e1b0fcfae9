/** Composition root: config → store → services → HTTP on the unix socket. */
import { chmod, mkdir, readFile, unlink } from 'node:fs/promises'
import { connect } from 'node:net'
import { dirname } from 'node:path'
import { pino, type Logger } from 'pino'
import type { Config } from './config.js'
import { TsnetError } from './errors.js'
import { systemClock, type Clock } from './engine/clock.js'
import { Engine } from './engine/engine.js'
import { Reconciler } from './engine/reconciler.js'
import { LinuxHost } from './host/linux-host.js'
import { DockerNames } from './services/docker-names.js'
import type { Host } from './host/host.js'
import { buildApp } from './server/app.js'
import { GcService } from './services/gc-service.js'
import { IpamService } from './services/ipam-service.js'
import { NetworkDriver } from './services/network-driver.js'
import { NetworkState } from './services/network-state.js'
import { PolicyService } from './services/policy-service.js'
import { PortPublisher } from './services/port-publisher.js'
import { FileStore } from './store/file-store.js'
import type { Store } from './store/store.js'

export function createLogger(level: string): Logger {
  return pino({ level, base: { svc: 'tsnet' }, timestamp: pino.stdTimeFunctions.isoTime })
}

/** The package version, and the build stamp plugin/build.sh leaves next to dist/ (if any). */
async function buildInfo(): Promise<{ version: string; build?: string }> {
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  const stamp = await readFile(new URL('../BUILD', import.meta.url), 'utf8').catch(() => undefined)
  const build = stamp?.split('\n').find((l) => l.startsWith('build '))?.slice('build '.length).trim()
  return { version: pkg.version, ...(build ? { build } : {}) }
}

/** True when something answers on the socket: then it is not stale and must not be replaced. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path)
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

async function prepareSocket(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 })
  if (await socketAnswers(path)) throw new TsnetError('conflict', `another process is already serving ${path}; stop it first`)
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err
  })
}

export interface Services {
  store: Store
  state: NetworkState
  engine: Engine
  driver: NetworkDriver
  ports: PortPublisher
  policy: PolicyService
  ipam: IpamService
  names: DockerNames
  reconciler: Reconciler
}

export async function openServices(config: Config, host: Host, log: Logger = createLogger('silent'), clock: Clock = systemClock): Promise<Services> {
  const store = await FileStore.open(config.stateDir, log)
  // Docker's names as last seen, so policies that name networks hold from the first request.
  const names = new DockerNames(store, log.child({ component: 'names' }))
  await names.load()
  const facts = await host.facts()
  const state = new NetworkState(store, names, () => facts)
  const engine = new Engine(host)
  const driver = new NetworkDriver(state, engine, host, config.defaultMtu !== undefined ? { defaultMtu: config.defaultMtu } : {}, clock)
  const ports = new PortPublisher(driver, host)
  const policy = new PolicyService(driver)
  const ipam = new IpamService(store, host, { defaultPools: config.defaultPools })
  await state.load()
  await ipam.load()
  names.onChange(() => policy.namesChanged(log))
  const reconciler = new Reconciler(engine, () => state.allChanges(), clock, log.child({ component: 'reconcile' }))
  return { store, state, engine, driver, ports, policy, ipam, names, reconciler }
}

/** Docker's network events trigger refreshes of its names; this periodic one catches missed events. */
const NAMES_REFRESH_MS = 30_000

/** Serves until SIGTERM/SIGINT; resolves once the socket is closed and removed. */
export async function serve(config: Config, logger = createLogger(config.logLevel)): Promise<void> {
  const services = await openServices(config, new LinuxHost({ procSys: config.procSys }), logger)
  await prepareSocket(config.socket)
  // Listen at once (a managed plugin must answer within seconds); requests wait for the boot reconcile.
  const ready = services.reconciler.boot().then(() => undefined, (err: unknown) => logger.error({ err }, 'boot reconcile failed'))
  const app = buildApp({ logger, services, ready })
  // Docker runs as root; nobody else needs to reach the driver. The umask covers the moment
  // between bind and chmod.
  const previousUmask = process.umask(0o117)
  try {
    await app.listen({ path: config.socket })
  } finally {
    process.umask(previousUmask)
  }
  await chmod(config.socket, 0o660)
  // From here on a SIGTERM closes the socket cleanly, whatever is still starting.
  let gc: GcService | undefined
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'stopping')
      gc?.stop()
      services.names.stop()
      services.reconciler.stop()
      app.close().then(() => unlink(config.socket).catch(() => undefined)).then(() => resolve(), () => resolve())
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
  const counts = services.state.snapshot()
  logger.info({ ...(await buildInfo()), socket: config.socket, stateDir: config.stateDir, networks: counts.networks.length, endpoints: counts.endpoints.length }, 'tsnet listening')

  // dockerode is only for the background work: load it after the socket answers.
  const { DockerodeView } = await import('./docker/docker-view.js')
  const view = new DockerodeView(config.dockerHost)
  void ready.then(() => services.names.start(view, NAMES_REFRESH_MS))
  if (config.gcIntervalSec > 0) {
    gc = new GcService(services.store, view, services.driver, services.ipam,
      { intervalMs: config.gcIntervalSec * 1000, minAgeMs: config.gcIntervalSec * 1000 }, logger.child({ component: 'gc' }))
    await gc.load()
    const started = gc
    void ready.then(() => started.start())
  }
  void ready.then(() => services.reconciler.start(config.reconcileIntervalSec * 1000))
  await stopped
  await services.driver.host.releasePorts()
  logger.info('tsnet stopped')
}
