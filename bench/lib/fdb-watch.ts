/**
 * The kernel's FDB and neighbour entries of a VXLAN device in a namespace, as fdb-watch-child.mjs
 * hears them (netlink events, no polling), and waits on them: "these endpoints are all programmed"
 * or "all gone", answered with the monotonic time of the kernel event that completed it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { track } from '../../test/e2e/lib/cleanup.js'

const CHILD = fileURLToPath(new URL('./fdb-watch-child.mjs', import.meta.url))

export interface Located {
  ip: string
  mac: string
  vtep: string
}

interface Waiter {
  /** table keys (`f <mac>`, `n <ip>`) still not as wanted */
  remaining: Set<string>
  /** what each key must be: its value, or undefined for absent */
  want: Map<string, string | undefined>
  resolve: (ns: bigint) => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout
}

export class KernelTable {
  /** `f <mac>` → dst, `n <ip>` → mac */
  private table = new Map<string, string>()
  /** When each key last changed (kept after it went): a wait that is already satisfied answers with these. */
  private readonly stamps = new Map<string, bigint>()
  private syncing: Map<string, string> | undefined
  private readonly waiters = new Set<Waiter>()
  private readonly byKey = new Map<string, Set<Waiter>>()
  private child: ChildProcess | undefined
  private untrack: (() => void) | undefined
  /** Times the child had to dump the table again (netlink overflow). */
  resyncs = -1
  events = 0
  lastEventNs = 0n

  /** Starts watching `device` in the namespace at `netnsPath`; resolves once the first dump is in. */
  async start(netnsPath: string, device: string): Promise<void> {
    const child = spawn('nsenter', [`--net=${netnsPath}`, '--', process.execPath, CHILD, device], { stdio: ['pipe', 'pipe', 'inherit'] })
    this.child = child
    if (child.pid) this.untrack = track({ kind: 'pid', pid: child.pid, what: 'fdb watch' })
    let ready: () => void = () => undefined
    let failed: (err: Error) => void = () => undefined
    const readyP = new Promise<void>((res, rej) => { ready = res; failed = rej })
    child.on('exit', (code) => {
      this.untrack?.()
      failed(new Error(`fdb-watch-child exited with ${code}`))
      for (const w of this.waiters) w.reject(new Error(`the kernel watch ended (exit ${code})`))
    })
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      if (line === 'R') return ready()
      this.line(line)
    })
    await readyP
  }

  async stop(): Promise<void> {
    const c = this.child
    if (!c || c.exitCode !== null) return
    const exited = new Promise((r) => c.once('exit', r))
    c.stdin?.end()
    const timer = setTimeout(() => c.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }

  get fdbCount(): number {
    let n = 0
    for (const k of this.table.keys()) if (k.startsWith('f ')) n++
    return n
  }

  get neighCount(): number {
    return this.table.size - this.fdbCount
  }

  /** Resolves with the time of the event after which every endpoint's FDB and neighbour entry is as given. */
  programmed(endpoints: readonly Located[], timeoutMs: number): Promise<bigint> {
    const want = new Map<string, string | undefined>()
    for (const e of endpoints) {
      want.set(`f ${e.mac}`, e.vtep)
      want.set(`n ${e.ip}`, e.mac)
    }
    return this.wait(want, timeoutMs, 'programmed')
  }

  /** Resolves with the time of the event after which none of these endpoints has an entry left. */
  gone(endpoints: readonly Located[], timeoutMs: number): Promise<bigint> {
    const want = new Map<string, string | undefined>()
    for (const e of endpoints) {
      want.set(`f ${e.mac}`, undefined)
      want.set(`n ${e.ip}`, undefined)
    }
    return this.wait(want, timeoutMs, 'gone')
  }

  private wait(want: Map<string, string | undefined>, timeoutMs: number, what: string): Promise<bigint> {
    return new Promise((resolve, reject) => {
      const remaining = new Set([...want].filter(([k, v]) => this.table.get(k) !== v).map(([k]) => k))
      if (remaining.size === 0) {
        let last = 0n
        for (const k of want.keys()) last = (this.stamps.get(k) ?? 0n) > last ? (this.stamps.get(k) as bigint) : last
        return resolve(last)
      }
      const w: Waiter = {
        remaining, want, resolve, reject,
        timer: setTimeout(() => {
          this.drop(w)
          reject(new Error(`${remaining.size / 2} of ${want.size / 2} endpoints' entries not ${what} within ${timeoutMs} ms (table: ${this.fdbCount} fdb, ${this.neighCount} neigh)`))
        }, timeoutMs),
      }
      this.waiters.add(w)
      for (const k of remaining) {
        let set = this.byKey.get(k)
        if (!set) this.byKey.set(k, (set = new Set()))
        set.add(w)
      }
    })
  }

  private drop(w: Waiter): void {
    clearTimeout(w.timer)
    this.waiters.delete(w)
    for (const k of w.want.keys()) {
      const set = this.byKey.get(k)
      set?.delete(w)
      if (set?.size === 0) this.byKey.delete(k)
    }
  }

  private line(line: string): void {
    const parts = line.split(' ')
    const kind = parts[0]
    if (kind === 'S') {
      this.syncing = new Map()
      this.resyncs++
      return
    }
    if (kind === 'Z') {
      this.table = this.syncing ?? new Map()
      this.syncing = undefined
      const at = BigInt(parts[1] as string)
      for (const w of [...this.waiters]) {
        for (const [k, v] of w.want) (this.table.get(k) === v ? w.remaining.delete(k) : w.remaining.add(k))
        this.settle(w, at)
      }
      return
    }
    if (kind !== '+' && kind !== '-') return
    const [, type, a, b, t] = parts as [string, string, string, string, string]
    const key = `${type} ${a}`
    const at = BigInt(t)
    this.stamps.set(key, at)
    if (this.syncing) {
      this.syncing.set(key, b)
      return
    }
    this.events++
    this.lastEventNs = at
    if (kind === '+') this.table.set(key, b)
    else this.table.delete(key) // one entry per MAC and per address on the device (tsnet replaces)
    for (const w of this.byKey.get(key) ?? []) {
      if (this.table.get(key) === w.want.get(key)) w.remaining.delete(key)
      else w.remaining.add(key)
      this.settle(w, at)
    }
  }

  private settle(w: Waiter, at: bigint): void {
    if (w.remaining.size > 0) return
    this.drop(w)
    w.resolve(at)
  }
}
