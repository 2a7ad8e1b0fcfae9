/** Composition root: config → store → services → HTTP on the unix socket. */
import { chmod, mkdir, readFile, stat, unlink } from 'node:fs/promises'
import { connect } from 'node:net'
import { dirname } from 'node:path'
import { pino, type Logger } from 'pino'
import type { Config } from './config.js'
import { TsnetError } from './errors.js'
import { LinuxHost } from './host/linux-host.js'
import { ProcSysctls } from './host/sysctl.js'
import { DockerNames } from './services/docker-names.js'
import type { Host } from './host/host.js'
import { buildApp } from './server/app.js'
import { GcService } from './services/gc-service.js'
import { IpamService } from './services/ipam-service.js'
import { NetworkService } from './services/network-service.js'
import { checkStoredRecord } from './core/record-check.js'
import { FileStore } from './store/file-store.js'
import { keepRecords } from './store/migrate.js'
import { StateLock, ownPidNamespace } from './store/state-lock.js'
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
  network: NetworkService
  ipam: IpamService
  names: DockerNames
}

export async function openServices(config: Config, host: Host, log: Logger = createLogger('silent')): Promise<Services> {
  // Schema-1 records keep their shape on this branch; core/record-upgrade.ts's transform goes here.
  const store = await FileStore.open(config.stateDir, log, { check: checkStoredRecord, upgrade: keepRecords })
  // Docker's names as last seen, so policies that name networks hold from the first request.
  const names = new DockerNames(store, log.child({ component: 'names' }))
  // Without the Docker API, names are off: an old copy could map a name to a reused subnet.
  if (config.dockerHost !== undefined) await names.load()
  const network = new NetworkService(store, host, config.defaultMtu !== undefined ? { defaultMtu: config.defaultMtu } : {}, names)
  const ipam = new IpamService(store, host, { defaultPools: config.defaultPools })
  await network.load()
  await ipam.load()
  names.onChange(() => network.namesChanged(log))
  return { store, network, ipam, names }
}

/** Docker's network events trigger refreshes of its names; this periodic one catches missed events. */
const NAMES_REFRESH_MS = 30_000

/** Background work against the Docker API: names for policies, and garbage collection (if its interval is not 0). */
async function followDocker(dockerHost: string, gcIntervalSec: number, services: Services, ready: Promise<unknown>, logger: Logger): Promise<GcService | undefined> {
  // The managed plugin's placeholder (/dev/null) where the socket should be: opted in halfway.
  const path = dockerHost.replace(/^unix:\/\//, '')
  const kind = await stat(path).then((s) => (s.isSocket() ? 'socket' : 'other'), () => 'absent')
  if (kind === 'other') logger.warn({ dockerHost }, `${path} is not a socket: garbage collection and network names wait for Docker there (managed plugin: set docker-socket.source too)`)
  // dockerode is only for the background work: load it after the socket answers.
  const { DockerodeView } = await import('./docker/docker-view.js')
  const view = new DockerodeView(dockerHost)
  void ready.then(() => services.names.start(view, NAMES_REFRESH_MS))
  if (gcIntervalSec === 0) return undefined
  const gc = new GcService(services.store, view, services.network, services.ipam,
    { intervalMs: gcIntervalSec * 1000, minAgeMs: gcIntervalSec * 1000 }, logger.child({ component: 'gc' }))
  await gc.load()
  void ready.then(() => gc.start())
  return gc
}

/** The managed plugin's config.json mounts the host's /proc/sys here (its own is read-only); nothing else does. */
const MANAGED_PROC_SYS = '/host/proc/sys'

/** Serves until SIGTERM/SIGINT; resolves once the socket is closed and removed. */
export async function serve(config: Config, logger = createLogger(config.logLevel)): Promise<void> {
  // First of all: a second instance on this store must change nothing, neither store nor host.
  const pidNamespace = ownPidNamespace()
  const lock = StateLock.acquire(config.stateDir, {
    pid: process.pid,
    ...(pidNamespace ? { pidNamespace } : {}),
    startedAt: new Date().toISOString(),
    socket: config.socket,
    mode: config.procSys === MANAGED_PROC_SYS ? 'managed' : 'legacy',
    version: (await buildInfo()).version,
  })
  try {
    await serveLocked(config, logger)
  } finally {
    lock.release()
  }
}

async function serveLocked(config: Config, logger: Logger): Promise<void> {
  const services = await openServices(config, new LinuxHost({ sysctls: new ProcSysctls(config.procSys) }), logger)
  const { network, ipam } = services
  await prepareSocket(config.socket)
  // Listen at once (a managed plugin must answer within seconds); requests wait for the restore.
  const ready = network.restoreHost(logger)
  const app = buildApp({ logger, network, ipam, ready })
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
      app.close().then(() => unlink(config.socket).catch(() => undefined)).then(() => resolve(), () => resolve())
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
  const counts = network.snapshot()
  logger.info({ ...(await buildInfo()), socket: config.socket, stateDir: config.stateDir, networks: counts.networks.length, endpoints: counts.endpoints.length }, 'tsnet listening')

  if (config.dockerHost === undefined) {
    logger.warn({ dockerApi: 'off', gc: 'off', names: 'off' },
      'no Docker API (--docker-host / DOCKER_HOST empty): garbage collection and policies that name networks are off; every driver call works (docs/managed-plugin.md)')
  } else {
    gc = await followDocker(config.dockerHost, config.gcIntervalSec, services, ready, logger)
  }
  await stopped
  logger.info('tsnet stopped')
}
