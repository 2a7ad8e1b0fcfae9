/** Flags and environment → one frozen, validated Config. A bad setting stops tsnet before it serves anything. */
import { parseArgs } from 'node:util'
import { resolve } from 'node:path'
import { DOCKER_DEFAULT_POOLS_TEXT, type DefaultPool, parseDefaultPools } from './core/ipam.js'
import { parseMtu } from './core/network-plan.js'
import { TsnetError, errorMessage } from './errors.js'

export interface Config {
  socket: string
  stateDir: string
  logLevel: string
  defaultPools: DefaultPool[]
  defaultMtu?: number
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
} as const

export const SERVE_USAGE = `usage: tsnet serve [--socket PATH] [--state-dir DIR] [--log-level LEVEL]
                   [--default-pools CIDR:SIZE,...] [--default-mtu N]
  --socket         unix socket Docker connects to (env TSNET_SOCKET, default ${DEFAULT_SOCKET})
  --state-dir      where the embedded store lives (env TSNET_STATE_DIR, default ${DEFAULT_STATE_DIR})
  --log-level      ${LOG_LEVELS.join('|')} (env TSNET_LOG_LEVEL, default info)
  --default-pools  pools for networks created without --subnet (env TSNET_DEFAULT_POOLS,
                   default Docker's: ${DOCKER_DEFAULT_POOLS_TEXT})
  --default-mtu    MTU of networks without -o com.docker.network.driver.mtu (env TSNET_DEFAULT_MTU,
                   default: the MTU of the default-route interface, else 1500)`

function settingError(name: keyof typeof SETTINGS, problem: string): TsnetError {
  const s = SETTINGS[name]
  return new TsnetError('invalid', `setting --${s.flag} (env ${s.env}): ${problem}`)
}

export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): Config {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: Object.fromEntries(Object.values(SETTINGS).map((s) => [s.flag, { type: 'string' as const }])),
  })
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
      defaultMtu = parseMtu(mtuText, 'the MTU')
    } catch (err) {
      throw settingError('defaultMtu', errorMessage(err))
    }
  }
  const socket = resolve(get('socket') ?? DEFAULT_SOCKET)
  if (Buffer.byteLength(socket) > 107) throw settingError('socket', `the path is ${Buffer.byteLength(socket)} bytes; unix sockets allow at most 107`)
  return Object.freeze({
    socket,
    stateDir: resolve(get('stateDir') ?? DEFAULT_STATE_DIR),
    logLevel,
    defaultPools,
    ...(defaultMtu !== undefined ? { defaultMtu } : {}),
  })
}
