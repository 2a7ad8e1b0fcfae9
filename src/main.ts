/** Composition root: config → store → services → HTTP on the unix socket. */
import { chmod, mkdir, readFile, stat, unlink } from 'node:fs/promises'
import { connect } from 'node:net'
import { dirname } from 'node:path'
import { pino, type Logger } from 'pino'
import type { Config } from './config.js'
import { TsnetError } from './errors.js'
import { systemClock, type Clock } from './engine/clock.js'
import { Engine } from './engine/engine.js'
import { Reconciler } from './engine/reconciler.js'
import { LinuxHost } from './host/linux-host.js'
import { preflight } from './host/preflight.js'
import { DockerNames } from './services/docker-names.js'
import { DockerContact, watchedView } from './services/docker-contact.js'
import { DaemonInfo } from './services/daemon-info.js'
import type { Host } from './host/host.js'
import { buildApp } from './server/app.js'
import { GcService } from './services/gc-service.js'
import { IpamService } from './services/ipam-service.js'
import { NetworkDriver } from './services/network-driver.js'
import { NetworkState } from './services/network-state.js'
import { PolicyService } from './services/policy-service.js'
import { PortPublisher } from './services/port-publisher.js'
import { Metrics } from './services/metrics.js'
import type { EndpointRecord, NetworkRecord } from './core/records.js'
import { meteredHost } from './services/metered-host.js'
import { serveMetrics } from './server/metrics-server.js'
import { checkStoredRecord } from './core/record-check.js'
import { upgradeRecord } from './core/record-upgrade.js'
import { FileStore } from './store/file-store.js'
import { StateLock, ownPidNamespace } from './store/state-lock.js'
import { SwarmService } from './services/swarm-service.js'
import { VniService } from './services/vni-service.js'
import { OverlayFollower } from './services/overlay-follower.js'
import { ClusterService } from './services/cluster-service.js'
import { UdpAnnouncer, type Announcer } from './host/vxlan-announcer.js'
import { DEFAULT_VNI_RANGE, DEFAULT_VXLAN_PORT } from './modes/overlay-options.js'
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
  daemon: DaemonInfo
  /** Counters and gauges, when metrics are on (--metrics-address, or asked for by a test). */
  metrics?: Metrics
  swarm: SwarmService
  vnis: VniService
  /** Cluster networks, when --etcd-endpoints is set (serve opens it; other users of the services do not). */
  cluster?: ClusterService
}

/** Announcements go nowhere unless serve() gives the real sender: tests never send to addresses they did not make. */
const SILENT: Announcer = { send: async () => undefined }

export interface OpenOptions {
  /**
   * Only read the store: nothing is written, moved or removed (a write is refused with an error).
   * `tsnet doctor` builds the services this way, beside or instead of the daemon, for a dry-run
   * reconcile. IPAM is not loaded (its first start writes this host's IPv6 prefix): such services
   * answer no request.
   */
  readOnly?: boolean
  /** Count metrics even without --metrics-address (tests read services.metrics). */
  metrics?: boolean
  /** Where overlay announcements (VXLAN-wrapped gratuitous ARP) go; serve() gives the real sender. */
  announcer?: Announcer
}

export async function openServices(config: Config, bareHost: Host, log: Logger = createLogger('silent'), clock: Clock = systemClock, opts: OpenOptions = {}): Promise<Services> {
  // Closures: the gauges read the services below at scrape time.
  const metrics: Metrics | undefined = config.metricsAddress !== undefined || opts.metrics ? new Metrics({
    networks: (): NetworkRecord[] => state.snapshot().networks, endpoints: (): EndpointRecord[] => state.snapshot().endpoints,
    pools: () => ipam.poolsWithLeases(), nameOf: (id) => names.nameOf(id), overlayPeers: () => swarm?.view().peers.length ?? 0,
  }) : undefined
  const host: Host = metrics ? meteredHost(bareHost, metrics) : bareHost
  // A store of an earlier schema is migrated here, crash-safely, through the same pure transform
  // NetworkState applies again on load (a no-op on a migrated store, kept as a defence). A
  // read-only open (doctor) reads it through that transform instead.
  const store = await FileStore.open(config.stateDir, log, { check: checkStoredRecord, upgrade: upgradeRecord, ...(opts.readOnly ? { readOnly: true } : {}) })
  // Docker's names as last seen, so policies that name networks hold from the first request.
  const names = new DockerNames(store, log.child({ component: 'names' }))
  // Without the Docker API, names are off: an old copy could map a name to a reused subnet.
  // A read-only dry run (doctor beside a stopped daemon) takes the copy the daemon would boot with.
  if (config.dockerHost !== undefined || opts.readOnly) await names.load()
  const facts = await host.facts()
  const state = new NetworkState(store, names, () => facts)
  const engine = new Engine(host)
  const scope = config.scope ?? 'local'
  let swarm: SwarmService | undefined
  const driver = new NetworkDriver(state, engine, host, {
    ...(config.defaultMtu !== undefined ? { defaultMtu: config.defaultMtu } : {}), scope, underlay: async () => swarm?.underlay(),
  }, clock)
  swarm = new SwarmService(driver, store, host, opts.announcer ?? SILENT, scope, () => clock.iso())
  const vnis = new VniService(store, host, { scope, range: config.vniRange ?? DEFAULT_VNI_RANGE, port: config.vxlanPort ?? DEFAULT_VXLAN_PORT })
  const ports = new PortPublisher(driver, host)
  const policy = new PolicyService(driver)
  const ipam = new IpamService(store, host, { defaultPools: config.defaultPools }, clock)
  await state.load()
  if (!opts.readOnly) await ipam.load()
  await swarm.load()
  await vnis.load()
  names.onChange(() => policy.namesChanged(log.child({ component: 'names' })))
  const reconciler = new Reconciler(engine, () => state.allChanges(), clock, log.child({ component: 'reconcile' }))
  if (metrics) reconciler.onPass = (kind, report) => metrics.reconciled(kind, report)
  const gcOff = config.dockerHost === undefined ? 'no Docker API (--docker-host is empty)' : config.gcIntervalSec === 0 ? '--gc-interval is 0' : undefined
  const daemon = new DaemonInfo({
    version: (await buildInfo()).version, startedAt: clock.iso(), socket: config.socket, stateDir: config.stateDir,
    reconcileIntervalSec: config.reconcileIntervalSec, ...(gcOff !== undefined ? { gcOff } : {}),
  }, reconciler)
  daemon.overlay = () => swarm.status()
  if (metrics) swarm.onChange = (added, gone) => metrics.peersChanged(added, gone)
  return { store, state, engine, driver, ports, policy, ipam, names, reconciler, daemon, ...(metrics ? { metrics } : {}), swarm, vnis }
}

/** What followDocker started that a SIGTERM stops. */
const stoppers: Array<() => void> = []

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
  // Every answer and failure of Docker's API is counted: a long silence is said once in the log.
  const contact = new DockerContact(dockerHost, systemClock, logger.child({ component: 'docker' }))
  services.daemon.contact = contact
  const view = watchedView(new DockerodeView(dockerHost), contact)
  void ready.then(() => services.names.start(view, NAMES_REFRESH_MS))
  if (services.driver.capabilities().Scope === 'global') {
    const { DockerodeSwarmView } = await import('./docker/swarm-view.js')
    const follower = new OverlayFollower(new DockerodeSwarmView(dockerHost), services.state, services.swarm, logger.child({ component: 'overlay' }))
    void ready.then(() => follower.start())
    stoppers.push(() => follower.stop())
  }
  if (gcIntervalSec === 0) return undefined
  const gc = new GcService(services.store, view, services.driver, services.ipam,
    { intervalMs: gcIntervalSec * 1000, minAgeMs: gcIntervalSec * 1000 }, logger.child({ component: 'gc' }))
  await gc.load()
  const metrics = services.metrics
  if (metrics) gc.onPass = (o) => metrics.gcPassed(o)
  services.daemon.gc = gc
  void ready.then(() => gc.start())
  return gc
}

/** The managed plugin's config.json mounts the host's /proc/sys here (its own is read-only); nothing else does. */
const MANAGED_PROC_SYS = '/host/proc/sys'

/** Serves until SIGTERM/SIGINT; resolves once the socket is closed and removed. */
export async function serve(config: Config, logger = createLogger(config.logLevel)): Promise<void> {
  // A missing tool would otherwise surface as a failed CreateNetwork much later.
  const checked = await preflight(process.env, config.procSys)
  for (const warning of checked.warnings) logger.warn({ preflight: 'degraded' }, warning)
  // Then: a second instance on this store must change nothing, neither store nor host.
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
  const host = new LinuxHost({ procSys: config.procSys })
  const services = await openServices(config, host, logger, systemClock, { announcer: new UdpAnnouncer() })
  // Before the boot reconcile: it renders cluster networks with the remote endpoints last seen. Never waits for etcd.
  const cluster = await ClusterService.open(config, services.store, services.driver, services.driver.host, logger.child({ component: 'cluster' }))
  if (cluster) {
    services.cluster = cluster
    services.daemon.cluster = () => cluster.status()
  }
  await prepareSocket(config.socket)
  // Listen at once (a managed plugin must answer within seconds); requests wait for the boot reconcile.
  const ready = services.reconciler.boot().then(() => undefined, (err: unknown) => logger.error({ err }, 'boot reconcile failed'))
  const app = buildApp({ logger, services, ready, ...(services.metrics ? { metrics: services.metrics } : {}) })
  // Docker runs as root; nobody else needs to reach the driver. The umask covers the moment
  // between bind and chmod.
  const previousUmask = process.umask(0o117)
  try {
    await app.listen({ path: config.socket })
  } finally {
    process.umask(previousUmask)
  }
  await chmod(config.socket, 0o660)
  const metricsServer = services.metrics && config.metricsAddress ? await serveMetrics(services.metrics, config.metricsAddress, logger) : undefined
  void ready.then(() => cluster?.start()).catch((err: unknown) => logger.error({ err }, 'cluster networks did not start'))
  // From here on a SIGTERM closes the socket cleanly, whatever is still starting.
  let gc: GcService | undefined
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'stopping')
      gc?.stop()
      services.names.stop()
      services.reconciler.stop()
      metricsServer?.close()
      services.swarm.stop()
      for (const stopIt of stoppers) stopIt()
      app.close().then(() => unlink(config.socket).catch(() => undefined)).then(() => resolve(), () => resolve())
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
  const counts = services.state.snapshot()
  logger.info({ ...(await buildInfo()), socket: config.socket, stateDir: config.stateDir, networks: counts.networks.length, endpoints: counts.endpoints.length }, 'tsnet listening')

  if (config.dockerHost === undefined) {
    logger.warn({ dockerApi: 'off', gc: 'off', names: 'off' },
      'no Docker API (--docker-host / DOCKER_HOST empty): garbage collection and policies that name networks are off; every driver call works (docs/managed-plugin.md)')
  } else {
    gc = await followDocker(config.dockerHost, config.gcIntervalSec, services, ready, logger)
  }
  void ready.then(() => services.reconciler.start(config.reconcileIntervalSec * 1000))
  // A tsnet link deleted or renamed behind tsnet's back: reconcile at once, not at the next period.
  // An interval of 0 turns every automatic repair off (drift stays for `tsnet doctor` to show).
  const unwatch = config.reconcileIntervalSec === 0 ? undefined : await host.watchOwnedLinks?.((why) => {
    logger.warn({ why }, 'a tsnet link changed behind tsnet\'s back: reconciling now')
    services.reconciler.trigger()
  }, logger).catch((err: unknown) => {
    logger.warn({ err }, 'link events are not available; the periodic reconcile still runs')
    return undefined
  })
  await stopped
  unwatch?.()
  await cluster?.stop() // the lease is not revoked: a restart within its TTL keeps peers programmed
  await services.driver.host.releasePorts()
  logger.info('tsnet stopped')
}
