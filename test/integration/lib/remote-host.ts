/**
 * tsnet's real host layer in a test's network namespace, as a `Host` the test process can hand to
 * the engine or to openServices. The LinuxHost itself runs in a child entered into the namespace
 * (host-child.mjs: rtnetlink sockets, /proc/sys/net and held ports all belong to the namespace of
 * the process that opens them); this side forwards each call as one JSON line and gives back what
 * the real host returned or threw, TsnetErrors with their kind, and replays the child's pino
 * records into the logger the caller passed. `counters()` tells what the child sent to the kernel
 * (rtnetlink messages) and which commands it spawned, so a test can prove that nothing ran.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import type { PortFlow } from '../../../src/core/flows.js'
import type { HostFacts } from '../../../src/core/host-facts.js'
import type { HostObject, Op, Proto } from '../../../src/core/objects.js'
import { TsnetError, type ErrorKind } from '../../../src/errors.js'
import type { Host, ObserveQuery } from '../../../src/host/host.js'
import type { Binding, Reservation } from '../../../src/host/port-reservations.js'

const CHILD = fileURLToPath(new URL('./host-child.mjs', import.meta.url))
/** Generous: an apply may run iptables-restore on a busy machine; only a hang should hit it. */
const CALL_TIMEOUT_MS = 120_000

interface WireError {
  name?: string
  kind?: string
  message: string
  context?: Record<string, unknown> | null
}

interface Reply {
  id: number
  ok?: unknown
  err?: WireError
  logs?: Array<Record<string, unknown>>
}

export interface HostCounters {
  /** rtnetlink requests that read (RTM_GET*) since the last reset. */
  netlinkReads: number
  /** rtnetlink requests that change something (RTM_NEW*, RTM_DEL*, RTM_SET*) since the last reset. */
  netlinkChanges: number
  /** Commands spawned since the last reset, as argv. */
  commands: string[][]
}

const LEVELS: Record<number, 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' }

const live = new Set<ChildProcessWithoutNullStreams>()
let exitHook = false

function rebuild(e: WireError): Error {
  if (e.name === 'TsnetError' && e.kind) return new TsnetError(e.kind as ErrorKind, e.message, { context: e.context ?? {} })
  return Object.assign(new Error(e.message), { name: e.name ?? 'Error' })
}

function replay(log: Logger | undefined, records: Reply['logs']): void {
  if (!log) return
  for (const { level, msg, ...fields } of records ?? []) {
    const at = LEVELS[Number(level)] ?? 'info'
    log[at](fields, String(msg ?? ''))
  }
}

export class RemoteHost implements Host {
  private readonly waiting = new Map<number, (r: Reply) => void>()
  private readonly watchers = new Set<(why: string) => void>()
  private nextId = 0
  private exited = false
  private stderr = ''
  private readonly gone: Promise<void>

  private constructor(readonly netns: string, private readonly child: ChildProcessWithoutNullStreams) {
    live.add(child)
    child.stderr.on('data', (b: Buffer) => { this.stderr += b.toString() })
    this.gone = new Promise((resolve) => child.once('exit', () => {
      this.exited = true
      live.delete(child)
      for (const w of this.waiting.values()) w({ id: -1, err: { message: `the host child in ${netns} exited: ${this.stderr.trim()}` } })
      this.waiting.clear()
      resolve()
    }))
    createInterface({ input: child.stdout }).on('line', (line) => {
      const msg = JSON.parse(line) as Reply & { event?: string }
      if (msg.event !== undefined) {
        for (const w of this.watchers) w(msg.event)
        return
      }
      const w = this.waiting.get(msg.id)
      this.waiting.delete(msg.id)
      w?.(msg)
    })
  }

  /** The real host layer in /run/netns/`netns`. Close it (or let the test's teardown do it). */
  static start(netns: string): RemoteHost {
    if (!exitHook) {
      exitHook = true
      process.on('exit', () => {
        for (const c of live) c.kill('SIGKILL')
      })
    }
    const child = spawn('nsenter', [`--net=/run/netns/${netns}`, process.execPath, CHILD, '--serve'], { stdio: 'pipe' })
    return new RemoteHost(netns, child)
  }

  private call<T>(op: string, args: unknown[] = [], log?: Logger): Promise<T> {
    return new Promise((resolve, reject) => {
      if (this.exited) return reject(new Error(`the host child in ${this.netns} has exited: ${this.stderr.trim()}`))
      const id = ++this.nextId
      const timer = setTimeout(() => {
        this.waiting.delete(id)
        reject(new Error(`the host child in ${this.netns} did not answer ${op} within ${CALL_TIMEOUT_MS} ms`))
      }, CALL_TIMEOUT_MS)
      this.waiting.set(id, (r) => {
        clearTimeout(timer)
        replay(log, r.logs)
        if (r.err) reject(rebuild(r.err))
        else resolve(r.ok as T)
      })
      this.child.stdin.write(JSON.stringify({ id, op, args }) + '\n')
    })
  }

  async observe(query: ObserveQuery): Promise<Map<string, HostObject>> {
    const q = { keys: [...query.keys], ...(query.allOwned ? { allOwned: true } : {}), ...(query.fresh ? { fresh: true } : {}) }
    return new Map(await this.call<Array<[string, HostObject]>>('observe', [q]))
  }

  apply(ops: readonly Op[], log: Logger): Promise<void> {
    return this.call('apply', [ops], log)
  }

  async facts(): Promise<HostFacts> {
    const f = await this.call<{ brNetfilter: boolean; ipv6: boolean; linkKinds: string[] }>('facts')
    return { ...f, linkKinds: new Set(f.linkKinds) }
  }

  routedPrefixes(): Promise<string[]> {
    return this.call('routedPrefixes')
  }

  async defaultRouteMtu(): Promise<number | undefined> {
    return (await this.call<number | null>('defaultRouteMtu')) ?? undefined
  }

  async reservePort(proto: Proto, bindings: Binding[], candidates: number[] | undefined): Promise<Reservation> {
    const r = await this.call<{ id: number; port: number }>('reservePort', [proto, bindings, candidates ?? null])
    return { port: r.port, release: () => this.call('release', [r.id]) }
  }

  releasePorts(): Promise<void> {
    return this.call('releasePorts')
  }

  forgetPortFlows(flows: readonly PortFlow[], log: Logger): Promise<void> {
    return this.call('forgetPortFlows', [flows], log)
  }

  async watchOwnedLinks(onDrift: (why: string) => void, log: Logger): Promise<() => void> {
    this.watchers.add(onDrift)
    await this.call('watch', [], log)
    return () => {
      this.watchers.delete(onDrift)
      if (this.watchers.size === 0 && !this.exited) void this.call('unwatch').catch(() => undefined)
    }
  }

  /** What the child sent to the kernel and spawned since the last reset. */
  counters(): Promise<HostCounters> {
    return this.call('counters')
  }

  resetCounters(): Promise<void> {
    return this.call('resetCounters')
  }

  /** Ends the child as a process exit would: every held port goes with it. */
  async close(): Promise<void> {
    if (this.exited) return
    this.child.stdin.end()
    const kill = setTimeout(() => this.child.kill('SIGKILL'), 10_000)
    await this.gone
    clearTimeout(kill)
  }
}

/** The real host layer in `ns`, closed in the test's teardown. */
export function hostIn(t: { teardown(fn: () => unknown): void }, ns: { name: string }): RemoteHost {
  const host = RemoteHost.start(ns.name)
  t.teardown(() => host.close())
  return host
}
