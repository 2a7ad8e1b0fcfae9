/** Flags and environment → one frozen, validated Config. A bad setting stops tsnet before it serves anything. */
import { parseArgs } from 'node:util'
import { existsSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { formatIp, parseIp } from './core/addr.js'
import { parseEtcdEndpoints } from './core/etcd-endpoints.js'
import { DOCKER_DEFAULT_POOLS_TEXT, type DefaultPool, parseDefaultPools } from './core/ipam.js'
import { parseMtu } from './core/options.js'
import { DEFAULT_VNI_RANGE, DEFAULT_VXLAN_PORT, formatVniRange, parsePort, parseVniRange, type VniRange } from './modes/overlay-options.js'
import { TsnetError, errorMessage } from './errors.js'

export interface Config {
  socket: string
  stateDir: string
  logLevel: string
  defaultPools: DefaultPool[]
  defaultMtu?: number
  /**
   * The Docker engine's API, for garbage collection against its view and for the names policies
   * use (never on the request path). Absent: tsnet runs without it, and both are off. Access to
   * this socket is full control of the engine, i.e. root on the host: an explicit opt-in.
   */
  dockerHost?: string
  /** Seconds between garbage collection passes; 0 turns collection off. */
  gcIntervalSec: number
  /** Where the kernel settings are written: /proc/sys, or the host's mounted elsewhere (managed plugin). */
  procSys: string
  /** Seconds between reconcile passes that repair drift on the host; 0 turns them off. */
  reconcileIntervalSec: number
  /** Where Prometheus metrics are served (GET /metrics); absent: off. */
  metricsAddress?: { host: string; port: number }
  /** 'global': a swarm's driver (Scope and ConnectivityScope global, overlay networks); default 'local'. */
  scope?: 'local' | 'global'
  /** VNIs the Swarm leader gives tsnet's overlay networks (default 256-4095, below Docker's overlay). */
  vniRange?: VniRange
  /** UDP port of the overlay networks the leader allocates (default 4789, shared with Docker's overlay). */
  vxlanPort?: number
  /** The cluster store (issue 14): etcd members and TLS files. Absent: the embedded store alone. */
  etcd?: EtcdSettings
  /** This host's address on cluster networks (VTEP); absent: the source address toward the first etcd endpoint. */
  advertiseAddress?: string
  /** Seconds a host's registration must stay gone before the elected tsnet frees its addresses. */
  clusterGraceSec?: number
}

export interface EtcdSettings {
  /** Canonical scheme://host:port of each member. */
  endpoints: string[]
  caFile?: string
  certFile?: string
  keyFile?: string
}

export const DEFAULT_SOCKET = '/run/docker/plugins/tsnet.sock'
export const DEFAULT_STATE_DIR = '/var/lib/tsnet'
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/** Each setting: its flag, its environment variable, and how to check it. */
const SETTINGS = {
  socket: { flag: 'socket', env: 'TSNET_SOCKET' },
  stateDir: { flag: 'state-dir', env: 'TSNET_STATE_DIR' },
  logLevel: { flag: 'log-level', env: 'TSNET_LOG_LEVEL' },
  defaultPools: { flag: 'default-pools', env: 'TSNET_DEFAULT_POOLS' },
  defaultMtu: { flag: 'default-mtu', env: 'TSNET_DEFAULT_MTU' },
  dockerHost: { flag: 'docker-host', env: 'DOCKER_HOST' },
  gcInterval: { flag: 'gc-interval', env: 'TSNET_GC_INTERVAL' },
  procSys: { flag: 'proc-sys', env: 'TSNET_PROC_SYS' },
  reconcileInterval: { flag: 'reconcile-interval', env: 'TSNET_RECONCILE_INTERVAL' },
  metricsAddress: { flag: 'metrics-address', env: 'TSNET_METRICS_ADDRESS' },
  scope: { flag: 'scope', env: 'TSNET_SCOPE' },
  vniRange: { flag: 'vni-range', env: 'TSNET_VNI_RANGE' },
  vxlanPort: { flag: 'vxlan-port', env: 'TSNET_VXLAN_PORT' },
  etcdEndpoints: { flag: 'etcd-endpoints', env: 'TSNET_ETCD_ENDPOINTS' },
  etcdCaFile: { flag: 'etcd-cafile', env: 'TSNET_ETCD_CAFILE' },
  etcdCertFile: { flag: 'etcd-certfile', env: 'TSNET_ETCD_CERTFILE' },
  etcdKeyFile: { flag: 'etcd-keyfile', env: 'TSNET_ETCD_KEYFILE' },
  advertiseAddress: { flag: 'advertise-address', env: 'TSNET_ADVERTISE_ADDRESS' },
  clusterGrace: { flag: 'cluster-grace', env: 'TSNET_CLUSTER_GRACE' },
} as const

export const DEFAULT_GC_INTERVAL_SEC = 60
export const DEFAULT_RECONCILE_INTERVAL_SEC = 30
export const DEFAULT_CLUSTER_GRACE_SEC = 300

export const SERVE_USAGE = `usage: tsnet serve [--socket PATH] [--state-dir DIR] [--log-level LEVEL]
                   [--default-pools CIDR:SIZE,...] [--default-mtu N]
                   [--docker-host unix:///PATH] [--gc-interval SECONDS] [--proc-sys DIR]
                   [--reconcile-interval SECONDS] [--metrics-address IP:PORT]
                   [--scope local|global] [--vni-range FIRST-LAST] [--vxlan-port PORT]
                   [--etcd-endpoints URL,...] [--etcd-cafile PEM] [--etcd-certfile PEM]
                   [--etcd-keyfile PEM] [--advertise-address IP] [--cluster-grace SECONDS]
  --socket         unix socket Docker connects to (env TSNET_SOCKET, default ${DEFAULT_SOCKET})
  --state-dir      where the embedded store lives (env TSNET_STATE_DIR, default ${DEFAULT_STATE_DIR})
  --log-level      ${LOG_LEVELS.join('|')} (env TSNET_LOG_LEVEL, default info)
  --default-pools  pools for networks created without --subnet (env TSNET_DEFAULT_POOLS,
                   default Docker's: ${DOCKER_DEFAULT_POOLS_TEXT})
  --default-mtu    MTU of networks without -o com.docker.network.driver.mtu (env TSNET_DEFAULT_MTU,
                   default: the MTU of the default-route interface, else 1500)
  --docker-host    the Docker API, unix:///PATH (env DOCKER_HOST; default empty: none). With it
                   tsnet collects garbage against Docker's view and resolves network names in
                   policies; without it both are off. Whoever holds this socket controls the
                   engine, i.e. is root on the host
  --gc-interval    seconds between garbage collection passes, 0 = off; needs --docker-host
                   (env TSNET_GC_INTERVAL, default ${DEFAULT_GC_INTERVAL_SEC})
  --proc-sys       where kernel settings are written (env TSNET_PROC_SYS, default /proc/sys;
                   a managed plugin gets the host's /proc/sys mounted at /host/proc/sys)
  --reconcile-interval  seconds between passes that compare the host with tsnet's records and
                   repair what something else changed; a deleted tsnet link is also repaired at
                   once. 0 = no automatic repair (the boot reconcile and tsnet doctor --fix still
                   repair) (env TSNET_RECONCILE_INTERVAL, default ${DEFAULT_RECONCILE_INTERVAL_SEC})
  --metrics-address  serve Prometheus metrics at http://IP:PORT/metrics, e.g. 127.0.0.1:9464
                   or [::1]:9464 (env TSNET_METRICS_ADDRESS; default empty: off)
  --scope          local (default) or global (env TSNET_SCOPE): global registers tsnet as a swarm's
                   multi-host driver, whose networks are overlays across the nodes (docs/overlay.md)
  --vni-range      VNIs the swarm leader gives overlay networks (env TSNET_VNI_RANGE, default
                   ${formatVniRange(DEFAULT_VNI_RANGE)}: below 4096, where Docker's overlay VNIs start)
  --vxlan-port     UDP port of new overlay networks (env TSNET_VXLAN_PORT, default ${DEFAULT_VXLAN_PORT},
                   shared with Docker's overlay; read on the leader)
  --etcd-endpoints  etcd members of the cluster store, http(s)://HOST[:PORT] separated by commas
                   (env TSNET_ETCD_ENDPOINTS; default empty: the embedded store alone). tsnet
                   starts and bridge networks work while etcd is unreachable
  --etcd-cafile    CA certificate (PEM) that signed the members' certificates; https endpoints
                   (env TSNET_ETCD_CAFILE)
  --etcd-certfile  client certificate (PEM) for etcd, with --etcd-keyfile (env TSNET_ETCD_CERTFILE)
  --etcd-keyfile   its private key (PEM) (env TSNET_ETCD_KEYFILE)
  --advertise-address  this host's IP on cluster networks (env TSNET_ADVERTISE_ADDRESS; default:
                   the source address this host uses to reach the first etcd endpoint)
  --cluster-grace  seconds a dead host stays registered-gone before one elected tsnet frees its
                   addresses and memberships (env TSNET_CLUSTER_GRACE; default 300, at least 5)`

function settingError(name: keyof typeof SETTINGS, problem: string): TsnetError {
  const s = SETTINGS[name]
  return new TsnetError('invalid', `setting --${s.flag} (env ${s.env}): ${problem}`)
}

export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): Config {
  return loadCommandLine(argv, env).config
}

/** A command's own flags, besides the settings every command shares with `tsnet serve`. */
export type CommandOptions = Record<string, { type: 'string' | 'boolean'; short?: string }>

export const settingOptions = (): CommandOptions => Object.fromEntries(Object.values(SETTINGS).map((s) => [s.flag, { type: 'string' as const }]))

/**
 * Every command's arguments: the settings `tsnet serve` takes (so `status`, `doctor` and `policy`
 * find the same state directory, socket and Docker API), plus the command's own flags.
 */
export function loadCommandLine(argv: string[], env: NodeJS.ProcessEnv, own: CommandOptions = {}, allowPositionals = false) {
  const { values, positionals } = parseArgs({ args: argv, strict: true, allowPositionals, options: { ...settingOptions(), ...own } })
  return { config: configFrom(values as Record<string, string | undefined>, env), values: values as Record<string, string | boolean | undefined>, positionals }
}

function configFrom(values: Record<string, string | undefined>, env: NodeJS.ProcessEnv): Config {
  const get = (name: keyof typeof SETTINGS): string | undefined => {
    const v = values[SETTINGS[name].flag] ?? env[SETTINGS[name].env]
    return v === '' ? undefined : (v as string | undefined)
  }
  const logLevel = get('logLevel') ?? 'info'
  if (!LOG_LEVELS.includes(logLevel)) throw settingError('logLevel', `"${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`)
  let defaultPools: DefaultPool[]
  try {
    defaultPools = parseDefaultPools(get('defaultPools') ?? DOCKER_DEFAULT_POOLS_TEXT)
  } catch (err) {
    throw settingError('defaultPools', errorMessage(err))
  }
  let defaultMtu: number | undefined
  const mtuText = get('defaultMtu')
  if (mtuText !== undefined) {
    try {
      defaultMtu = parseMtu(mtuText, 'value')
    } catch (err) {
      throw settingError('defaultMtu', errorMessage(err))
    }
  }
  const dockerHost = get('dockerHost')
  if (dockerHost !== undefined && !/^unix:\/\/\/.+/.test(dockerHost)) {
    throw settingError('dockerHost', `"${dockerHost}" is not of the form unix:///path/to/docker.sock (leave it empty to run without the Docker API)`)
  }
  const gcText = get('gcInterval') ?? String(DEFAULT_GC_INTERVAL_SEC)
  if (!/^\d{1,6}$/.test(gcText)) throw settingError('gcInterval', `"${gcText}" is not a whole number of seconds`)
  const graceText = get('clusterGrace') ?? String(DEFAULT_CLUSTER_GRACE_SEC)
  if (!/^\d{1,6}$/.test(graceText) || Number(graceText) < 5) throw settingError('clusterGrace', `"${graceText.slice(0, 20)}" is not a whole number of seconds, at least 5`)
  const reconcileText = get('reconcileInterval') ?? String(DEFAULT_RECONCILE_INTERVAL_SEC)
  if (!/^\d{1,6}$/.test(reconcileText)) throw settingError('reconcileInterval', `"${reconcileText}" is not a whole number of seconds`)
  const procSys = resolve(get('procSys') ?? '/proc/sys')
  if (!existsSync(join(procSys, 'net'))) throw settingError('procSys', `${procSys} has no net/ directory: it is not a /proc/sys`)
  const metricsText = get('metricsAddress')
  const metricsAddress = metricsText === undefined ? undefined : parseListenAddress(metricsText)
  if (metricsAddress === undefined && metricsText !== undefined) {
    throw settingError('metricsAddress', `"${metricsText.slice(0, 80)}" is not IP:PORT (e.g. 127.0.0.1:9464 or [::1]:9464; leave it empty for no metrics)`)
  }
  const scope = get('scope') ?? 'local'
  if (scope !== 'local' && scope !== 'global') throw settingError('scope', `"${scope}" is not local or global`)
  let vniRange: VniRange
  let vxlanPort: number
  try {
    vniRange = parseVniRange(get('vniRange') ?? formatVniRange(DEFAULT_VNI_RANGE))
  } catch (err) {
    throw settingError('vniRange', errorMessage(err))
  }
  try {
    vxlanPort = parsePort(get('vxlanPort') ?? String(DEFAULT_VXLAN_PORT), 'value')
  } catch (err) {
    throw settingError('vxlanPort', errorMessage(err))
  }
  const etcd = etcdSettings(get)
  const advertiseText = get('advertiseAddress')
  const advertise = advertiseText === undefined ? undefined : parseIp(advertiseText)
  if (advertiseText !== undefined && !advertise) throw settingError('advertiseAddress', `"${advertiseText.slice(0, 80)}" is not an IPv4 or IPv6 address`)
  if (advertise && !etcd) throw settingError('advertiseAddress', 'it is the address on cluster networks, which need --etcd-endpoints')
  const socket = resolve(get('socket') ?? DEFAULT_SOCKET)
  if (Buffer.byteLength(socket) > 107) throw settingError('socket', `the path is ${Buffer.byteLength(socket)} bytes; unix sockets allow at most 107`)
  return Object.freeze({
    socket,
    stateDir: resolve(get('stateDir') ?? DEFAULT_STATE_DIR),
    logLevel,
    defaultPools,
    ...(defaultMtu !== undefined ? { defaultMtu } : {}),
    ...(dockerHost !== undefined ? { dockerHost } : {}),
    gcIntervalSec: Number(gcText),
    procSys,
    reconcileIntervalSec: Number(reconcileText),
    clusterGraceSec: Number(graceText),
    ...(metricsAddress !== undefined ? { metricsAddress } : {}),
    scope,
    vniRange,
    vxlanPort,
    ...(etcd ? { etcd: Object.freeze(etcd) } : {}),
    ...(advertise ? { advertiseAddress: formatIp(advertise) } : {}),
  })
}

/** The etcd settings, checked: endpoints, and TLS files that exist (read when the store opens). */
function etcdSettings(get: (name: keyof typeof SETTINGS) => string | undefined): EtcdSettings | undefined {
  const text = get('etcdEndpoints')
  const files = { caFile: 'etcdCaFile', certFile: 'etcdCertFile', keyFile: 'etcdKeyFile' } as const
  const given = Object.entries(files).flatMap(([field, name]) => {
    const path = get(name)
    if (path === undefined) return []
    if (text === undefined) throw settingError(name, 'a TLS file for etcd needs --etcd-endpoints')
    const full = resolve(path)
    let isFile = false
    try {
      isFile = statSync(full).isFile()
    } catch (err) {
      throw settingError(name, `cannot read ${full}: ${errorMessage(err)}`)
    }
    if (!isFile) throw settingError(name, `${full} is not a file`)
    return [[field, full] as const]
  })
  if (text === undefined) return undefined
  let endpoints: string[]
  try {
    endpoints = parseEtcdEndpoints(text)
  } catch (err) {
    throw settingError('etcdEndpoints', errorMessage(err))
  }
  const tls = Object.fromEntries(given) as Omit<EtcdSettings, 'endpoints'>
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    throw settingError(tls.certFile === undefined ? 'etcdCertFile' : 'etcdKeyFile', 'a client certificate needs both --etcd-certfile and --etcd-keyfile')
  }
  if (given.length > 0 && !endpoints[0]?.startsWith('https:')) throw settingError('etcdEndpoints', 'TLS files are given, so the endpoints must be https:// URLs')
  return { endpoints, ...tls }
}

/** `IP:PORT` or `[IPv6]:PORT` with a literal address (no names: nothing to resolve) and a port 1-65535. */
export function parseListenAddress(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/.exec(text)
  const host = m?.[1] ?? m?.[2]
  const port = Number(m?.[3])
  if (host === undefined || !parseIp(host) || !(port >= 1 && port <= 65535)) return undefined
  return { host, port }
}
