/**
 * The one path from desired objects to the host. A request stages the objects of the owners it
 * changes, observes the keys that change, applies the diff, persists, and only then commits;
 * a failure anywhere undoes the host change by observing again and diffing back to what was
 * wanted before, so there is one rollback, written once. The boot reconcile, the periodic
 * reconcile and `doctor` run the same diff over everything tsnet owns.
 */
import type { Logger } from 'pino'
import { describeOp, diff, foreignSentence, refuseForeign } from '../core/diff.js'
import { type HostObject, type Op, TSNET_TAG_PREFIX, keyOf, needsOf, providesOf } from '../core/objects.js'
import type { ReconcileReport } from '../core/reconcile-report.js'
import { TsnetError, errorMessage, withContext } from '../errors.js'
import type { Host } from '../host/host.js'
import { DesiredIndex } from './desired-index.js'
import { SharedExclusiveLock } from '../util/shared-exclusive-lock.js'
import { KeySetLock } from './locks.js'

export interface ChangeOptions {
  /** What the request does, as the start of an error message ("creating network 0a01…"). */
  doing: string
  /** Owners whose every object is checked on the host, not only the changed ones (a retried create). */
  verify?: readonly string[]
  /** The store write; runs after the host change, inside the same locks. A failure undoes the host change. */
  persist?: () => Promise<unknown>
  /**
   * The records were changed first (a removal): a failure is not undone, which would bring back
   * what the store no longer holds. The index lets go all the same, so a reconcile removes the rest.
   */
  removal?: boolean
  log: Logger
}

export type { ReconcileReport }

/** Whether two wanted objects ask the host for the same thing (`recreate` and `inSandbox` only say what a reconcile may do). */
const hostView = (o: HostObject) => (o.kind === 'link' ? { ...o, recreate: undefined, inSandbox: undefined } : o)
const sameWanted = (a: HostObject | undefined, b: HostObject | undefined) =>
  a === b || (a !== undefined && b !== undefined && JSON.stringify(hostView(a)) === JSON.stringify(hostView(b)))

export class Engine {
  readonly desired = new DesiredIndex()
  private readonly keyLocks = new KeySetLock()
  private readonly gate = new SharedExclusiveLock()

  constructor(private readonly host: Host) {}

  /** Fills the index without touching the host (boot: the reconcile that follows does that). */
  seed(changes: ReadonlyMap<string, HostObject[] | undefined>): void {
    this.desired.commit(this.desired.stage(changes))
  }

  /** Replaces the objects of some owners (undefined removes an owner) on the host and in the index. */
  async change(changes: ReadonlyMap<string, HostObject[] | undefined>, opts: ChangeOptions): Promise<void> {
    const staged = this.desired.stage(changes)
    const verify = new Set(opts.verify ?? [])
    const keys = new Set<string>()
    for (const [owner, objects] of staged.next) {
      for (const k of objects?.keys() ?? []) if (verify.has(owner)) keys.add(k)
    }
    for (const k of staged.touched) if (!sameWanted(this.desired.get(k), staged.get(k))) keys.add(k)
    await this.gate.run(false, async () => {
      const release = await this.keyLocks.acquire(keys)
      try {
        // Other requests may have committed while this one waited: read the wanted objects now.
        const before = new Map<string, HostObject>()
        const after = new Map<string, HostObject>()
        for (const k of keys) {
          const b = this.desired.get(k)
          const a = staged.get(k)
          if (b) before.set(k, b)
          if (a) after.set(k, a)
        }
        if (keys.size > 0) {
          const observed = await this.host.observe({ keys })
          const plan = diff(keys, after, observed)
          try {
            refuseForeign(plan)
          } catch (err) {
            throw withContext(err, opts.doing)
          }
          for (const m of plan.missing) opts.log.warn({ object: keyOf(m) }, 'a wanted object is gone and is not made again')
          try {
            await this.host.apply(plan.ops, opts.log)
          } catch (err) {
            if (!opts.removal) throw await this.undo(err, keys, before, opts)
            this.desired.commit(staged)
            throw withContext(err, opts.doing)
          }
        }
        if (opts.persist) {
          try {
            await opts.persist()
          } catch (err) {
            throw keys.size > 0 ? await this.undo(err, keys, before, opts) : withContext(err, opts.doing)
          }
        }
        this.desired.commit(staged)
      } finally {
        release()
      }
    })
  }

  /** Brings `keys` back to `before` after a failed change; the error says whether that worked. */
  private async undo(cause: unknown, keys: Set<string>, before: Map<string, HostObject>, opts: ChangeOptions): Promise<TsnetError> {
    let left: string[]
    try {
      const observed = await this.host.observe({ keys, fresh: true })
      const back = diff(keys, before, observed)
      left = (await this.applyEach(back.ops, opts.log)).map((f) => f.change)
    } catch (err) {
      opts.log.error({ err }, 'rollback: could not read the host back')
      left = ['(the host could not be read back)']
    }
    if (left.length > 0) opts.log.error({ left }, 'rollback incomplete')
    const outcome = left.length === 0 ? '(rolled back: the host is as it was)' : `(rollback incomplete: ${left.length} change(s) could not be undone, see the tsnet log)`
    return withContext(cause, `${opts.doing} ${outcome}`)
  }

  /**
   * Applies changes kind by kind, each run as one batch; a failed batch is retried change by
   * change, so one bad object does not hold back the rest. Changes that need what failed are
   * skipped. Returns what failed.
   */
  private async applyEach(ops: readonly Op[], log: Logger): Promise<Array<{ change: string; error: string }>> {
    const failed: Array<{ change: string; error: string }> = []
    const broken = new Set<string>()
    const runs: Op[][] = []
    for (const op of ops) {
      const last = runs[runs.length - 1]
      if (last && last[0]?.obj.kind === op.obj.kind && last[0].op === op.op) last.push(op)
      else runs.push([op])
    }
    for (const run of runs) {
      const ready = run.filter((op) => op.op === 'delete' || !needsOf(op.obj).some((t) => broken.has(t)))
      const readySet = new Set(ready)
      for (const op of run) {
        if (!readySet.has(op)) {
          failed.push({ change: describeOp(op), error: 'skipped: what it needs could not be made' })
          for (const t of providesOf(op.obj)) broken.add(t)
        }
      }
      if (ready.length === 0) continue
      try {
        await this.host.apply(ready, log)
        continue
      } catch (err) {
        if (ready.length === 1) {
          failed.push({ change: describeOp(ready[0] as Op), error: errorMessage(err) })
          for (const t of providesOf((ready[0] as Op).obj)) broken.add(t)
          continue
        }
      }
      for (const op of ready) {
        try {
          await this.host.apply([op], log)
        } catch (err) {
          failed.push({ change: describeOp(op), error: errorMessage(err) })
          for (const t of providesOf(op.obj)) broken.add(t)
        }
      }
    }
    return failed
  }

  /**
   * Brings everything tsnet owns in line with the index: what is missing is made, what differs
   * is fixed, what tsnet owns and nobody wants is removed; nothing tsnet does not own is touched.
   * Runs alone (no request changes the host meanwhile). A dry run only reports.
   */
  reconcile(opts: { dryRun?: boolean; log: Logger }): Promise<ReconcileReport> {
    return this.gate.run(true, async () => {
      const started = Date.now()
      const observed = await this.host.observe({ keys: [...this.desired.keys()], allOwned: true, fresh: true })
      const keys = new Set([...this.desired.keys(), ...observed.keys()])
      const wanted = new Map<string, HostObject>()
      for (const k of keys) {
        const w = this.desired.get(k)
        if (w) wanted.set(k, w)
      }
      // No request runs meanwhile, so a tagged link whose owner is not in the index is a leftover.
      const live = new Set([...this.desired.owners()].map((o) => TSNET_TAG_PREFIX + o))
      const plan = diff(keys, wanted, observed, (have) => !live.has(have.alias))
      const foreignKeys = new Set(plan.foreign.map((f) => keyOf(f.want)))
      const ops = plan.ops.filter((op) => !foreignKeys.has(keyOf(op.obj)))
      const failed = opts.dryRun ? [] : await this.applyEach(ops, opts.log)
      return {
        changes: ops.map(describeOp),
        failed,
        missing: plan.missing.map(keyOf),
        foreign: plan.foreign.map((f) => foreignSentence(f.want, f.have)),
        ms: Date.now() - started,
      }
    })
  }
}
