/** tsnet's chains, set members and DNAT rules as objects, on top of the batched EdgeFirewall. */
import type { Logger } from 'pino'
import { type SetEntry, entryKey } from '../core/edge-plan.js'
import { type DnatObject, type GuardObject, type HostObject, type Op, type SetEntryObject, keyOf } from '../core/objects.js'
import type { KindDriver, ObserveScope } from './driver.js'
import type { EdgeFirewall } from './edge-firewall.js'
import { GuardFirewall } from './guard-firewall.js'
import type { Runner } from './exec.js'

const entryOf = (o: SetEntryObject): SetEntry => ({ set: o.set, entry: o.entry, comment: o.comment })

export class FirewallDriver implements KindDriver {
  readonly kinds = ['chains', 'setEntry', 'dnat', 'guard'] as const
  private readonly guards: GuardFirewall

  constructor(private readonly fw: EdgeFirewall, runner: Runner) {
    this.guards = new GuardFirewall(runner, fw.lock)
  }

  async observe(scope: ObserveScope): Promise<HostObject[]> {
    const wants = (kind: string) => scope.allOwned || scope.keys.some((k) => k.startsWith(kind))
    const out: HostObject[] = []
    if (wants('chains')) {
      const state = await this.fw.chainsState(scope.fresh)
      if (state !== 'absent') out.push({ kind: 'chains', intact: state === 'intact' })
    }
    if (wants('set ')) {
      const keys = new Set(scope.keys)
      for (const e of (await this.fw.entries(scope.fresh)).values()) {
        const o: SetEntryObject = { kind: 'setEntry', ...e }
        if (scope.allOwned || keys.has(`set ${entryKey(e)}`)) out.push(o)
      }
    }
    if (wants('dnat ')) {
      const keys = new Set(scope.keys)
      for (const r of await this.fw.dnatRules(scope.fresh)) {
        const o: DnatObject = { kind: 'dnat', family: r.family, rule: r.rule }
        if (scope.allOwned || keys.has(keyOf(o))) out.push(o)
      }
    }
    if (wants('guard ')) {
      const keys = new Set(scope.keys)
      for (const g of await this.guards.rules(scope.fresh)) {
        const o: GuardObject = { kind: 'guard', family: g.family, rule: g.rule, ...(g.table ? { table: g.table } : {}) }
        if (scope.allOwned || keys.has(keyOf(o))) out.push(o)
      }
    }
    return out
  }

  async apply(ops: readonly Op[], log: Logger): Promise<void> {
    const kind = ops[0]?.obj.kind
    if (kind === 'chains') {
      for (const op of ops) {
        if (op.op === 'delete') await this.fw.removeBase(log)
        else await this.fw.ensureBase(log)
      }
      return
    }
    if (kind === 'setEntry') {
      const del = ops.filter((o) => o.op === 'delete').map((o) => entryOf(o.obj as SetEntryObject))
      const add = ops.filter((o) => o.op !== 'delete').map((o) => entryOf(o.obj as SetEntryObject))
      await this.fw.applyEntries(del, add, log)
      return
    }
    if (kind === 'guard') {
      const rule = (o: Op) => {
        const g = o.obj as GuardObject
        return { family: g.family, rule: g.rule, ...(g.table ? { table: g.table } : {}) }
      }
      await this.guards.apply(ops.filter((o) => o.op === 'delete').map(rule), ops.filter((o) => o.op !== 'delete').map(rule), log)
      return
    }
    if (kind === 'dnat') {
      const rule = (o: Op) => ({ family: (o.obj as DnatObject).family, rule: (o.obj as DnatObject).rule })
      await this.fw.applyDnat(ops.filter((o) => o.op === 'delete').map(rule), ops.filter((o) => o.op !== 'delete').map(rule), log)
    }
  }
}
