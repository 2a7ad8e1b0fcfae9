/**
 * TSNET-INPUT: rules about what reaches this host itself (VXLAN of tsnet's overlay networks from
 * hosts that are not peers, anything from an overlay bridge); TSNET-PREROUTING (mangle): checks
 * only PREROUTING allows (a peer's address from the wrong side). Each chain, its jump (first in
 * its built-in chain) and the VTEP sets its rules match on exist only while some rule is wanted,
 * so a host with bridge networks only never sees them. Each change rewrites a chain whole from
 * what it holds now, so a repeated or partly lost change converges.
 */
import type { Logger } from 'pino'
import type { Family } from '../core/addr.js'
import { CHAIN, FAMILIES, SET_TYPE, inGuardOrder, setName } from '../core/edge-rules.js'
import { invalid, withContext } from '../errors.js'
import { type Runner, runOk } from './exec.js'
import { unquoted } from './firewall-text.js'
import type { KeyedLock } from '../util/keyed-lock.js'

const WAIT = ['-w', '10']
const tool = (f: Family) => (f === 4 ? 'iptables' : 'ip6tables')
/** Guard rules are built from numbers and tags (core/edge-rules.ts): nothing else may reach the batch. */
const SAFE_GUARD = /^[0-9A-Za-z.:/_\-!&@>= ]{1,300}$/
const VTEP_SET_MAXELEM = 65536

export type GuardTable = 'filter' | 'mangle'
/** Where each table's guard rules live: tsnet's chain, jumped to first from a built-in one. */
const PLACES: Record<GuardTable, { builtin: string; chain: string }> = {
  filter: { builtin: 'INPUT', chain: CHAIN.input },
  mangle: { builtin: 'PREROUTING', chain: CHAIN.prerouting },
}
const TABLES = Object.keys(PLACES) as GuardTable[]

export interface GuardRule {
  family: Family
  rule: string
  /** filter when absent (TSNET-INPUT). */
  table?: 'mangle'
}
const tableOf = (g: GuardRule): GuardTable => g.table ?? 'filter'
const inOrder = (rules: readonly string[]) => inGuardOrder(rules).every((r, i) => r === rules[i])

interface ChainState {
  /** The chain's rules, or undefined when the chain is absent. */
  rules: string[] | undefined
  /** The jump is there once, first in its built-in chain. */
  jumpFirst: boolean
  jumps: number
}

export class GuardFirewall {
  private known: GuardRule[] | undefined

  /** `lock` is the edge's: one batch at a time on tsnet's tables. */
  constructor(private readonly runner: Runner, private readonly lock: KeyedLock) {}

  private async state(f: Family, table: GuardTable): Promise<ChainState> {
    const { builtin, chain } = PLACES[table]
    const jump = `-A ${builtin} -j ${chain}`
    const inBuiltin = (await runOk(this.runner, tool(f), [...WAIT, '-t', table, '-S', builtin])).split('\n').filter((l) => l.startsWith(`-A ${builtin} `))
    const jumps = inBuiltin.filter((l) => unquoted(l) === jump).length
    const r = await this.runner.run(tool(f), [...WAIT, '-t', table, '-S', chain])
    const rules = r.code === 0
      ? r.stdout.split('\n').filter((l) => l.startsWith(`-A ${chain} `)).map((l) => unquoted(l.slice(`-A ${chain} `.length)))
      : undefined
    return { rules, jumps, jumpFirst: jumps === 1 && unquoted(inBuiltin[0] ?? '') === jump }
  }

  /**
   * The rules in place. A chain whose jump is missing or not first guards nothing, and one whose
   * rules are out of order (the VTEP pass before a drop it must follow) guards less: its rules are
   * reported absent, so the engine wants them again and the rewrite puts the jump back and sorts.
   */
  rules(fresh: boolean): Promise<GuardRule[]> {
    return this.lock.run('fw', async () => {
      if (this.known && !fresh) return [...this.known]
      const out: GuardRule[] = []
      for (const f of FAMILIES) {
        for (const table of TABLES) {
          const s = await this.state(f, table)
          if (s.rules && s.jumpFirst && inOrder(s.rules)) out.push(...s.rules.map((rule): GuardRule => (table === 'filter' ? { family: f, rule } : { family: f, rule, table })))
        }
      }
      this.known = out
      return [...out]
    })
  }

  apply(del: GuardRule[], add: GuardRule[], log: Logger): Promise<void> {
    for (const g of [...del, ...add]) if (!SAFE_GUARD.test(g.rule)) throw invalid(`guard rule "${g.rule}" holds characters tsnet never writes`)
    return this.lock.run('fw', async () => {
      this.known = undefined
      if (add.length > 0) await this.ensureSets(add)
      for (const f of FAMILIES) {
        for (const table of TABLES) {
          const d = del.filter((g) => g.family === f && tableOf(g) === table).map((g) => g.rule)
          const a = add.filter((g) => g.family === f && tableOf(g) === table).map((g) => g.rule)
          if (d.length > 0 || a.length > 0) await this.rewrite(f, table, d, a, log)
        }
      }
    })
  }

  private async rewrite(f: Family, table: GuardTable, d: string[], a: string[], log: Logger): Promise<void> {
    const { builtin, chain } = PLACES[table]
    const jump = `-j ${chain}`
    try {
      const s = await this.state(f, table)
      const next = inGuardOrder([...new Set([...(s.rules ?? []).filter((r) => !d.includes(r)), ...a])])
      const lines = [`*${table}`]
      for (let i = 0; i < s.jumps; i++) lines.push(`-D ${builtin} ${jump}`)
      if (next.length > 0) {
        lines.push(`:${chain} - [0:0]`, ...next.map((r) => `-A ${chain} ${r}`), `-I ${builtin} 1 ${jump}`)
      } else if (s.rules) {
        lines.push(`-F ${chain}`, `-X ${chain}`)
      }
      lines.push('COMMIT')
      await runOk(this.runner, `${tool(f)}-restore`, [...WAIT, '--noflush'], { input: lines.join('\n') + '\n' })
      log.info({ host: 'firewall.guard', tool: tool(f), table, added: a, removed: d, rules: next.length }, next.length > 0 ? `${chain} rewritten` : `${chain} removed: no rule left`)
    } catch (err) {
      throw withContext(err, `changing ${chain} (${tool(f)} -t ${table})`)
    }
  }

  /** The VTEP sets the rules match on (iptables refuses a rule naming a set that does not exist). */
  private async ensureSets(add: GuardRule[]): Promise<void> {
    const families = FAMILIES.filter((f) => add.some((g) => g.family === f && g.rule.includes(setName('vtep', f))))
    if (families.length === 0) return
    const creates = families.map(vtepSetCreate)
    try {
      await runOk(this.runner, 'ipset', ['restore', '-exist'], { input: creates.join('\n') + '\n' })
    } catch (err) {
      throw withContext(err, "creating tsnet's VTEP sets")
    }
  }
}

/** The `ipset restore` line that makes a family's VTEP set (with `-exist`, a no-op when it is there). */
const vtepSetCreate = (f: Family) => `create ${setName('vtep', f)} ${SET_TYPE.vtep} family ${f === 4 ? 'inet' : 'inet6'} maxelem ${VTEP_SET_MAXELEM} comment`

/** Lines for EdgeFirewall's batches: VTEP sets are made with their first member too. */
export function vtepSetCreates(sets: Iterable<string>): string[] {
  const names = new Set(sets)
  return FAMILIES.filter((f) => names.has(setName('vtep', f))).map(vtepSetCreate)
}
