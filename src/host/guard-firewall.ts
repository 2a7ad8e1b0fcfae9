/**
 * TSNET-INPUT: rules about what reaches this host itself (VXLAN of tsnet's overlay networks from
 * hosts that are not peers, anything from an overlay bridge). The chain, its jump (first in
 * INPUT) and the VTEP sets its rules match on exist only while some rule is wanted, so a host
 * with bridge networks only never sees them. Each change rewrites the chain whole from what it
 * holds now, so a repeated or partly lost change converges.
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
const JUMP = `-j ${CHAIN.input}`
/** Guard rules are built from numbers and tags (core/edge-rules.ts): nothing else may reach the batch. */
const SAFE_GUARD = /^[0-9A-Za-z.:/_\-!&@>= ]{1,300}$/
const VTEP_SET_MAXELEM = 65536

export interface GuardRule {
  family: Family
  rule: string
}

interface InputState {
  /** TSNET-INPUT's rules, or undefined when the chain is absent. */
  rules: string[] | undefined
  /** The jump is there once, first in INPUT. */
  jumpFirst: boolean
  jumps: number
}

export class GuardFirewall {
  private known: GuardRule[] | undefined

  /** `lock` is the edge's: one batch at a time on tsnet's tables. */
  constructor(private readonly runner: Runner, private readonly lock: KeyedLock) {}

  private async state(f: Family): Promise<InputState> {
    const input = (await runOk(this.runner, tool(f), [...WAIT, '-S', 'INPUT'])).split('\n').filter((l) => l.startsWith('-A INPUT '))
    const jumps = input.filter((l) => unquoted(l) === `-A INPUT ${JUMP}`).length
    const r = await this.runner.run(tool(f), [...WAIT, '-S', CHAIN.input])
    const rules = r.code === 0
      ? r.stdout.split('\n').filter((l) => l.startsWith(`-A ${CHAIN.input} `)).map((l) => unquoted(l.slice(`-A ${CHAIN.input} `.length)))
      : undefined
    return { rules, jumps, jumpFirst: jumps === 1 && unquoted(input[0] ?? '') === `-A INPUT ${JUMP}` }
  }

  /**
   * The rules in place. A chain whose jump is missing or not first guards nothing: its rules are
   * reported absent, so the engine wants them again and the rewrite puts the jump back.
   */
  rules(fresh: boolean): Promise<GuardRule[]> {
    return this.lock.run('fw', async () => {
      if (this.known && !fresh) return [...this.known]
      const out: GuardRule[] = []
      for (const f of FAMILIES) {
        const s = await this.state(f)
        if (s.rules && s.jumpFirst) out.push(...s.rules.map((rule) => ({ family: f, rule })))
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
        const d = del.filter((g) => g.family === f).map((g) => g.rule)
        const a = add.filter((g) => g.family === f).map((g) => g.rule)
        if (d.length === 0 && a.length === 0) continue
        try {
          const s = await this.state(f)
          const next = inGuardOrder([...new Set([...(s.rules ?? []).filter((r) => !d.includes(r)), ...a])])
          const lines = ['*filter']
          for (let i = 0; i < s.jumps; i++) lines.push(`-D INPUT ${JUMP}`)
          if (next.length > 0) {
            lines.push(`:${CHAIN.input} - [0:0]`, ...next.map((r) => `-A ${CHAIN.input} ${r}`), `-I INPUT 1 ${JUMP}`)
          } else if (s.rules) {
            lines.push(`-F ${CHAIN.input}`, `-X ${CHAIN.input}`)
          }
          lines.push('COMMIT')
          await runOk(this.runner, `${tool(f)}-restore`, [...WAIT, '--noflush'], { input: lines.join('\n') + '\n' })
          log.info({ host: 'firewall.guard', tool: tool(f), added: a, removed: d, rules: next.length }, next.length > 0 ? `${CHAIN.input} rewritten` : `${CHAIN.input} removed: no rule left`)
        } catch (err) {
          throw withContext(err, `changing ${CHAIN.input} (${tool(f)})`)
        }
      }
    })
  }

  /** The VTEP sets the rules match on (iptables refuses a rule naming a set that does not exist). */
  private async ensureSets(add: GuardRule[]): Promise<void> {
    const families = FAMILIES.filter((f) => add.some((g) => g.family === f && g.rule.includes(setName('vtep', f))))
    if (families.length === 0) return
    const creates = families.map((f) => `create ${setName('vtep', f)} ${SET_TYPE.vtep} family ${f === 4 ? 'inet' : 'inet6'} maxelem ${VTEP_SET_MAXELEM} comment`)
    try {
      await runOk(this.runner, 'ipset', ['restore', '-exist'], { input: creates.join('\n') + '\n' })
    } catch (err) {
      throw withContext(err, "creating tsnet's VTEP sets")
    }
  }
}

/** Lines for EdgeFirewall's batches: VTEP sets are made with their first member too. */
export function vtepSetCreates(sets: Iterable<string>): string[] {
  const out: string[] = []
  for (const f of FAMILIES) {
    const name = setName('vtep', f)
    if ([...sets].includes(name)) out.push(`create ${name} ${SET_TYPE.vtep} family ${f === 4 ? 'inet' : 'inet6'} maxelem ${VTEP_SET_MAXELEM} comment`)
  }
  return out
}
