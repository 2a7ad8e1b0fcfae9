/**
 * The few kernel settings tsnet needs: forwarding, route_localnet on those of its bridges that
 * published ports need it on (DNAT from 127.0.0.1), accept_ra off on its bridges (containers send
 * no Router Advertisements to the host), and bridge-nf-call-ip(6)tables (frames inside a bridge
 * meet the firewall).
 * A managed plugin's own /proc/sys is read-only, so the root is configurable (the host's
 * /proc/sys mounted elsewhere); the values are per network namespace either way.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { withContext } from '../errors.js'
import { checkIfName } from '../core/names.js'
import { type Runner, runOk } from './exec.js'

/** What setting a key did: changed it, found it already so, or found no such key on this kernel. */
export type SysctlOutcome = 'changed' | 'unchanged' | 'absent'

export interface Sysctls {
  /** The value of `key`; undefined when this kernel has no such key. */
  get(key: string): Promise<string | undefined>
  /** Sets `key` (slash form, e.g. net/ipv4/ip_forward). */
  set(key: string, value: string, log: Logger): Promise<SysctlOutcome>
}

const KEY_RE = /^net\/[A-Za-z0-9_./-]{1,200}$/

function checkKey(key: string): void {
  if (!KEY_RE.test(key) || key.includes('..')) throw new Error(`sysctl key ${key} is not one tsnet sets`)
}

/** Keys of one bridge (IPv4's conf by default); the name is validated because it becomes a path. */
export const bridgeKey = (bridge: string, leaf: string, family: 4 | 6 = 4) => `net/ipv${family}/conf/${checkIfName(bridge, 'bridge name')}/${leaf}`

export class ProcSysctls implements Sysctls {
  constructor(private readonly root = '/proc/sys') {}

  async get(key: string): Promise<string | undefined> {
    checkKey(key)
    try {
      // Synchronous on purpose: a /proc/sys read is answered from kernel memory in microseconds,
      // while four thread-pool round trips per file made a boot's 2,000 reads take most of a second.
      return readFileSync(join(this.root, key), 'utf8').trim()
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw withContext(err, `reading ${join(this.root, key)}`)
    }
  }

  async set(key: string, value: string, log: Logger): Promise<SysctlOutcome> {
    checkKey(key)
    const path = join(this.root, key)
    let current: string
    try {
      current = (await readFile(path, 'utf8')).trim()
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent'
      throw withContext(err, `reading ${path}`)
    }
    if (current === value) return 'unchanged'
    try {
      await writeFile(path, value)
    } catch (err) {
      throw withContext(err, `setting ${key.replace(/\//g, '.')}=${value} (is ${this.root} writable? a managed plugin needs the host's /proc/sys mounted)`)
    }
    log.info({ host: 'sysctl.set', key: key.replace(/\//g, '.'), value, was: current }, 'kernel setting changed')
    return 'changed'
  }
}

/** For tests in a namespace: `sysctl` run through the runner's prefix. */
export class RunnerSysctls implements Sysctls {
  constructor(private readonly runner: Runner) {}

  async get(key: string): Promise<string | undefined> {
    checkKey(key)
    const r = await this.runner.run('sysctl', ['-n', key])
    return r.code === 0 ? r.stdout.trim() : undefined
  }

  async set(key: string, value: string, log: Logger): Promise<SysctlOutcome> {
    checkKey(key)
    // Slash form: interface names may hold dots.
    const r = await this.runner.run('sysctl', ['-n', key])
    if (r.code !== 0) return 'absent'
    if (r.stdout.trim() === value) return 'unchanged'
    await runOk(this.runner, 'sysctl', ['-q', '-w', `${key}=${value}`])
    log.info({ host: 'sysctl.set', key: key.replace(/\//g, '.'), value }, 'kernel setting changed')
    return 'changed'
  }
}
