/** Starts cluster-sim.ts inside a namespace and talks to it: one JSON command, one JSON answer. */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { track } from '../../test/e2e/lib/cleanup.js'
import { REPO_ROOT } from '../../test/e2e/lib/tsnet.js'
import type { Located } from './fdb-watch.js'

const CHILD = fileURLToPath(new URL('./cluster-sim.ts', import.meta.url))

export interface SimEndpoint extends Located {
  host: string
  endpointId: string
}

export interface EtcdSnapshot {
  at: string
  /** Prometheus text of each member's /metrics */
  texts: string[]
  keys: Record<'total' | 'hosts' | 'endpoints' | 'addresses' | 'members' | 'gone', number>
}

export class SimHosts {
  private readonly child: ChildProcess
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  private nextId = 1
  private readonly ready: Promise<void>
  readonly pid: number | undefined

  constructor(netnsPath: string, etcdEndpoints: readonly string[]) {
    this.child = spawn('nsenter', [`--net=${netnsPath}`, '--', process.execPath, '--import', '@tapjs/typescript/import', CHILD], {
      cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1', SIM_ETCD: etcdEndpoints.join(',') },
    })
    this.pid = this.child.pid
    const untrack = this.child.pid ? track({ kind: 'pid', pid: this.child.pid, what: 'simulated hosts' }) : () => undefined
    let started: () => void = () => undefined
    let failed: (e: Error) => void = () => undefined
    this.ready = new Promise((res, rej) => { started = res; failed = rej })
    this.child.on('exit', (code) => {
      untrack()
      const err = new Error(`the simulated hosts' process exited with ${code}`)
      failed(err)
      for (const p of this.pending.values()) p.reject(err)
      this.pending.clear()
    })
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      let msg: { id: number; ok?: unknown; error?: string }
      try {
        msg = JSON.parse(line) as typeof msg
      } catch {
        return
      }
      if (msg.id === 0) return started()
      const p = this.pending.get(msg.id)
      if (!p) return
      this.pending.delete(msg.id)
      if (msg.error !== undefined) p.reject(new Error(`simulated hosts: ${msg.error}`))
      else p.resolve(msg.ok)
    })
  }

  async call<T>(cmd: string, args: object = {}): Promise<T> {
    await this.ready
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      this.child.stdin?.write(JSON.stringify({ id, cmd, args }) + '\n')
    })
  }

  up = (prefix: string, from: number, count: number) => this.call<{ started: string; done: string; poolConflicts: number; upMs: number[] }>('up', { prefix, from, count })
  endpoints = (prefix: string, per: number) => this.call<{ started: string; written: string; endpoints: SimEndpoint[] }>('endpoints', { prefix, per })
  add = (host: string) => this.call<{ t0: string; acked: string; endpoint: SimEndpoint }>('add', { host })
  remove = (host: string, endpointId: string) => this.call<{ t0: string; acked: string }>('remove', { host, endpointId })
  crash = (host: string) => this.call<{ t0: string; endpoints: SimEndpoint[] }>('crash', { host })
  leave = (which: { prefix: string } | { host: string }) => this.call<{ t0: string; revoked: string; endpoints: SimEndpoint[] }>('leave', which)
  release = (prefix: string) => this.call<{ released: number; poolConflicts: number }>('release', { prefix })
  releaseCrashed = (host: string) => this.call<{ released: number }>('releaseCrashed', { host })
  metrics = () => this.call<EtcdSnapshot>('metrics')
  /** Starts reading, every 500 ms, what peers see of `hostId` in etcd. */
  observe = (hostId: string) => this.call('observe', { hostId })
  /** Stops it: each change seen (registration present, number of endpoint locations), with its time. */
  observeStop = () => this.call<{ seen: Array<{ at: string; registered: boolean; locations: number }> }>('observeStop')
  memory = () => this.call<{ rssMb: number; hosts: number }>('memory')

  /** Closes every simulated host's client (no revoke) and ends the process. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const exited = new Promise((r) => this.child.once('exit', r))
    await this.call('close').catch(() => undefined)
    this.child.stdin?.end()
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }
}
