/**
 * One `tsnet serve` per state directory. Two on one store (say the legacy daemon and the managed
 * plugin during a migration, in different mount and PID namespaces but on the same directory
 * through a bind mount) would undo each other: the one that deletes its last network removes
 * every TSNET chain and set under the other's networks.
 *
 * The guard is a kernel lock, an open file description lock (fcntl F_OFD_SETLK, through the
 * prebuilt fs-native-extensions addon) on <state dir>/tsnet.lock. Like flock(2) it belongs to the
 * open file, not to a path or a pid: it holds across mount and PID namespaces on one inode, is
 * never inherited by the commands tsnet runs (the descriptor is close-on-exec), and the kernel
 * drops it when the process dies, kill -9 included, so there is nothing stale to clean up. Taking
 * it never waits. The holder writes who it is into the file, so a refused instance can name it.
 */
import { closeSync, constants, ftruncateSync, mkdirSync, openSync, readFileSync, readlinkSync, writeSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { TsnetError, errorMessage } from '../errors.js'

/** Refused because of the environment, not a fault: EX_CONFIG, which the systemd unit does not restart. */
export const EXIT_STATE_DIR_IN_USE = 78
export const LOCK_FILE = 'tsnet.lock'

/** What the holder says about itself; all of it as the holder sees it. */
export interface LockHolder {
  pid: number
  /** e.g. pid:[4026531836]; pids mean something only within one PID namespace. */
  pidNamespace?: string
  startedAt: string
  socket: string
  mode: 'legacy' | 'managed'
  version?: string
}

interface OfdLocks {
  tryLock(fd: number, offset?: number, length?: number, opts?: { shared?: boolean }): boolean
}

function ofdLocks(): OfdLocks {
  try {
    return createRequire(import.meta.url)('fs-native-extensions') as OfdLocks
  } catch (err) {
    throw new TsnetError('host', `cannot load the file lock addon (fs-native-extensions) that keeps a second tsnet off this state directory: ${errorMessage(err)}`,
      { cause: err, context: { exitCode: EXIT_STATE_DIR_IN_USE } })
  }
}

export function ownPidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid')
  } catch {
    return undefined
  }
}

export class StateLock {
  private constructor(private fd: number | undefined, readonly path: string) {}

  /**
   * Takes the lock on `stateDir` (created if missing) or throws a TsnetError (exit code 78) naming
   * the instance that holds it. Call before the store is opened or the host is touched.
   */
  static acquire(stateDir: string, holder: LockHolder): StateLock {
    const locks = ofdLocks()
    const path = join(stateDir, LOCK_FILE)
    let fd: number
    try {
      mkdirSync(stateDir, { recursive: true, mode: 0o700 })
      fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600)
    } catch (err) {
      throw new TsnetError('host', `cannot open the lock file ${path}: ${errorMessage(err)}`, { cause: err, context: { exitCode: EXIT_STATE_DIR_IN_USE } })
    }
    let held: boolean
    try {
      held = locks.tryLock(fd)
    } catch (err) {
      closeSync(fd)
      throw new TsnetError('host', `cannot lock ${path}: ${errorMessage(err)}`, { cause: err, context: { exitCode: EXIT_STATE_DIR_IN_USE } })
    }
    if (!held) {
      closeSync(fd) // an OFD lock is not dropped by closing another descriptor of the file
      throw stateDirInUse(stateDir, readHolder(path))
    }
    try {
      ftruncateSync(fd, 0)
      writeSync(fd, `${JSON.stringify(holder)}\n`, 0)
    } catch {
      // The lock is what counts; without the note a refused instance just cannot name us.
    }
    return new StateLock(fd, path)
  }

  /** Lets the directory go (a process exit does the same). */
  release(): void {
    if (this.fd === undefined) return
    closeSync(this.fd)
    this.fd = undefined
  }
}

/** What the holder wrote, if it is readable; between its lock and its write the file may be empty. */
export function readHolder(path: string): Partial<LockHolder> | undefined {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as unknown
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Partial<LockHolder>) : undefined
  } catch {
    return undefined
  }
}

export function stateDirInUse(stateDir: string, holder: Partial<LockHolder> | undefined, ours = ownPidNamespace()): TsnetError {
  return new TsnetError('conflict',
    `the state directory ${stateDir} is in use by another tsnet serve (${describeHolder(holder, ours)}); ` +
    'two instances on one store would remove each other\'s networks and firewall rules, so this one does not start: ' +
    'stop the other first, or give this one its own --state-dir',
    { context: { exitCode: EXIT_STATE_DIR_IN_USE, ...(holder ? { holder } : {}) } })
}

function describeHolder(h: Partial<LockHolder> | undefined, ours: string | undefined): string {
  if (!h || typeof h.pid !== 'number') return 'it has not said who it is yet'
  const elsewhere = typeof h.pidNamespace === 'string' && ours !== undefined && h.pidNamespace !== ours
  const parts = [
    `pid ${h.pid}${elsewhere ? ` in another PID namespace, ${h.pidNamespace}` : ''}`,
    typeof h.mode === 'string' ? (h.mode === 'managed' ? 'the managed plugin' : 'a legacy (systemd or hand-started) daemon') : undefined,
    typeof h.startedAt === 'string' ? `started ${h.startedAt}` : undefined,
    typeof h.socket === 'string' ? `serving ${h.socket}` : undefined,
    typeof h.version === 'string' ? `version ${h.version}` : undefined,
  ]
  return parts.filter((p) => p !== undefined).join(', ')
}
