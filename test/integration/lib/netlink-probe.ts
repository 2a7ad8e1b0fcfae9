/**
 * Drives tsnet's netlink client inside a test's namespace. A netlink socket belongs to the
 * network namespace of the process that opens it and Node cannot change its own, so the client
 * runs in a child started with `nsenter --net=/run/netns/NS node netlink-child.mjs` (one per
 * namespace, alive for the whole test). The test sends it operations one at a time and looks at
 * the kernel with `ip`/`bridge` in between, so every step is observed where it happened.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import type { Test } from 'tap'
import type { Netns } from './netns.js'

const CHILD = fileURLToPath(new URL('./netlink-child.mjs', import.meta.url))
const CALL_TIMEOUT_MS = 20_000

export interface ProbeError {
  kind: string
  message: string
}

export interface ProbeEvent {
  type: 'add' | 'change' | 'delete' | 'overflow'
  index: number
  name: string
  previousName?: string
  alias?: string
  kind?: string
}

export interface NetlinkProbe {
  /** Runs one client function (its Rtnl is supplied) and returns what it returned. */
  call<T = unknown>(op: string, ...args: unknown[]): Promise<T>
  /** Runs one that must fail, and returns its error. */
  fails(op: string, ...args: unknown[]): Promise<ProbeError>
  /** Events heard since `watch` (all of them, in order). */
  readonly events: ProbeEvent[]
  /** Resolves with the first event (heard before or after the call) that matches, or rejects after `ms`. */
  waitForEvent(match: (e: ProbeEvent) => boolean, ms: number): Promise<ProbeEvent>
}

/** `withoutNetAdmin`: the child runs without CAP_NET_ADMIN (dropped from its bounding set by setpriv), to see EPERM. */
export async function startProbe(t: Test, ns: Netns, opts: { withoutNetAdmin?: boolean } = {}): Promise<NetlinkProbe> {
  const drop = opts.withoutNetAdmin ? ['setpriv', '--bounding-set', '-net_admin', '--inh-caps', '-net_admin'] : []
  const child: ChildProcessWithoutNullStreams = spawn('nsenter', [`--net=/run/netns/${ns.name}`, ...drop, process.execPath, CHILD, '--serve'], { stdio: 'pipe' })
  let stderr = ''
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
  const waiting = new Map<number, (r: { ok?: unknown; err?: ProbeError }) => void>()
  const events: ProbeEvent[] = []
  const eventWaiters = new Set<() => void>()
  let nextId = 0
  let exited = false
  child.on('exit', () => {
    exited = true
    for (const w of waiting.values()) w({ err: { kind: 'probe', message: `netlink child exited: ${stderr.trim()}` } })
    waiting.clear()
  })
  createInterface({ input: child.stdout }).on('line', (line) => {
    const msg = JSON.parse(line) as { id?: number; ok?: unknown; err?: ProbeError; event?: ProbeEvent }
    if (msg.event) {
      events.push(msg.event)
      for (const w of [...eventWaiters]) w()
      return
    }
    const w = waiting.get(msg.id ?? -1)
    waiting.delete(msg.id ?? -1)
    w?.(msg)
  })
  t.teardown(() => new Promise<void>((resolve) => {
    if (exited) return resolve()
    child.once('exit', () => resolve())
    child.stdin.end()
    setTimeout(() => child.kill('SIGKILL'), 5000).unref()
  }))

  const send = (op: string, args: unknown[]) => new Promise<{ ok?: unknown; err?: ProbeError }>((resolve, reject) => {
    if (exited) return reject(new Error(`netlink child has exited: ${stderr.trim()}`))
    const id = ++nextId
    const timer = setTimeout(() => {
      waiting.delete(id)
      reject(new Error(`netlink child did not answer ${op} within ${CALL_TIMEOUT_MS} ms`))
    }, CALL_TIMEOUT_MS)
    waiting.set(id, (r) => {
      clearTimeout(timer)
      resolve(r)
    })
    child.stdin.write(JSON.stringify({ id, op, args }) + '\n')
  })

  return {
    events,
    async call<T>(op: string, ...args: unknown[]) {
      const r = await send(op, args)
      if (r.err) throw Object.assign(new Error(`${op} failed: ${r.err.message}`), { probe: r.err })
      return r.ok as T
    },
    async fails(op, ...args) {
      const r = await send(op, args)
      if (!r.err) throw new Error(`${op}(${JSON.stringify(args)}) succeeded but should have failed`)
      return r.err
    },
    waitForEvent(match, ms) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const e = events.find(match)
          if (!e) return
          eventWaiters.delete(check)
          clearTimeout(timer)
          resolve(e)
        }
        const timer = setTimeout(() => {
          eventWaiters.delete(check)
          reject(new Error(`no matching link event within ${ms} ms; heard ${JSON.stringify(events)}`))
        }, ms)
        eventWaiters.add(check)
        check()
      })
    },
  }
}
