/**
 * Applies the edge that core/edge-plan.ts renders: tsnet's chains and jumps (one
 * `iptables-restore --noflush` batch per family and operation, with the lock wait option), the
 * ipset entries (one `ipset restore -exist` batch), and the DNAT rules of published ports.
 * tsnet's chains are flushed and refilled whole, so a repeated call converges; Docker's chains
 * get nothing but tsnet's jumps.
 */
import type { Logger } from 'pino'
import type { Family } from '../core/addr.js'
import {
  ALL_SETS, BASE_SETS, BASE_SET_KINDS, CHAIN, DOCKER_USER, FAMILIES, LEGACY_JUMPS, SET_TYPE, type Jump, type SetEntry, entryKey, filterRules, jumps, postroutingRules,
  rawRules, setName,
} from '../core/edge-plan.js'
import { withContext } from '../errors.js'
import { canonicalEntry, checkEntry, checkRule, quotedComment, unquoted } from './firewall-text.js'
import { vtepSetCreates } from './guard-firewall.js'
import { type Runner, runOk } from './exec.js'
import { KeyedLock } from '../util/keyed-lock.js'

const WAIT = ['-w', '10']
/** Room for thousands of networks and large policies (ipset's default is 65536 members). */
const SET_MAXELEM = 1_048_576
const tools = (f: Family) => (f === 4 ? { save: 'iptables', restore: 'iptables-restore' } : { save: 'ip6tables', restore: 'ip6tables-restore' })
export interface ChainState {
  chains: Set<string>
  rules: Map<string, string[]>
}

export class EdgeFirewall {
  /** One batch at a time on tsnet's tables (host/guard-firewall.ts shares it). */
  readonly lock = new KeyedLock()
  /** What tsnet's sets hold, keyed by `set entry`; read once from the kernel, then kept by every change. */
  private mirror: Map<string, SetEntry> | undefined
  /** Whether the chains are as ensureBase left them, as far as this process knows. */
  private baseKnown: boolean | undefined
  /** TSNET-DNAT's rules as this process last read or changed them. */
  private dnat: Array<{ family: Family; rule: string }> | undefined

  constructor(private readonly runner: Runner) {}

  private async tableState(f: Family, table: Jump['table'] | 'mangle'): Promise<ChainState> {
    const out = await runOk(this.runner, tools(f).save, [...WAIT, '-t', table, '-S'])
    const chains = new Set<string>()
    const rules = new Map<string, string[]>()
    for (const line of out.split('\n')) {
      const n = /^-N (\S+)$/.exec(line)
      if (n?.[1]) chains.add(n[1])
      const a = /^-A (\S+) (.*)$/.exec(line)
      if (a?.[1] && a[2] !== undefined) rules.set(a[1], [...(rules.get(a[1]) ?? []), unquoted(a[2])])
    }
    return { chains, rules }
  }

  private restore(f: Family, input: string[]): Promise<string> {
    return runOk(this.runner, tools(f).restore, [...WAIT, '--noflush'], { input: input.join('\n') + '\n' })
  }

  /** Creates tsnet's sets, chains and jumps, or brings them back to spec (jumps first in their chains). */
  ensureBase(log: Logger): Promise<void> {
    return this.lock.run('fw', async () => {
      const creates = FAMILIES.flatMap((f) => BASE_SET_KINDS.map((k) => `create ${setName(k, f)} ${SET_TYPE[k]} family ${f === 4 ? 'inet' : 'inet6'} maxelem ${SET_MAXELEM} comment`))
      try {
        await runOk(this.runner, 'ipset', ['restore', '-exist'], { input: creates.join('\n') + '\n' })
      } catch (err) {
        throw withContext(err, "creating tsnet's ipsets")
      }
      for (const f of FAMILIES) {
        try {
          const filter = await this.tableState(f, 'filter')
          const nat = await this.tableState(f, 'nat')
          const raw = await this.tableState(f, 'raw')
          const rules = filterRules(f)
          const lines = ['*filter',
            `:${CHAIN.forward} - [0:0]`, `:${CHAIN.from} - [0:0]`, `:${CHAIN.to} - [0:0]`,
            ...rules.forward.map((r) => `-A ${CHAIN.forward} ${r}`),
            ...rules.from.map((r) => `-A ${CHAIN.from} ${r}`),
            ...rules.to.map((r) => `-A ${CHAIN.to} ${r}`),
          ]
          if (!filter.chains.has(DOCKER_USER)) lines.push(`-N ${DOCKER_USER}`)
          lines.push(...jumpLines(f, 'filter', filter), 'COMMIT', '*nat', `:${CHAIN.postrouting} - [0:0]`, ...postroutingRules(f).map((r) => `-A ${CHAIN.postrouting} ${r}`))
          if (!nat.chains.has(CHAIN.dnat)) lines.push(`-N ${CHAIN.dnat}`)
          lines.push(...legacyJumpLines('nat', nat), ...jumpLines(f, 'nat', nat), 'COMMIT')
          // The raw table: its rules drop before conntrack and NAT see a packet.
          lines.push('*raw', `:${CHAIN.raw} - [0:0]`, ...rawRules(f).map((r) => `-A ${CHAIN.raw} ${r}`), ...jumpLines(f, 'raw', raw), 'COMMIT')
          await this.restore(f, lines)
          log.info({ host: 'firewall.base', tool: tools(f).save }, "tsnet's chains and jumps written")
        } catch (err) {
          this.baseKnown = undefined
          throw withContext(err, `setting up tsnet's chains (${tools(f).save})`)
        }
      }
      this.baseKnown = true
    })
  }

  /**
   * Turning forwarding on makes the host a router for everyone; like Docker, tsnet then closes
   * FORWARD by default (its own traffic is accepted by its chains).
   */
  async dropForwardingByDefault(f: Family, log: Logger): Promise<void> {
    try {
      await runOk(this.runner, tools(f).save, [...WAIT, '-P', 'FORWARD', 'DROP'])
    } catch (err) {
      throw withContext(err, `setting the FORWARD policy to DROP (${tools(f).save})`)
    }
    log.info({ host: 'firewall.policy', tool: tools(f).save, chain: 'FORWARD', policy: 'DROP' }, 'forwarding turned on: FORWARD now drops by default')
  }

  /** Removes every jump, chain and set of tsnet's (no network left). DOCKER-USER stays unless tsnet left it empty and unused. */
  removeBase(log: Logger): Promise<void> {
    return this.lock.run('fw', async () => {
      for (const f of FAMILIES) {
        try {
          const filter = await this.tableState(f, 'filter')
          const nat = await this.tableState(f, 'nat')
          const raw = await this.tableState(f, 'raw')
          const mangle = await this.tableState(f, 'mangle')
          const lines = ['*filter', ...jumpDeletions(f, 'filter', filter), ...guardDeletions(filter, 'INPUT', CHAIN.input)]
          for (const c of [CHAIN.forward, CHAIN.from, CHAIN.to]) if (filter.chains.has(c)) lines.push(`-F ${c}`)
          for (const c of [CHAIN.forward, CHAIN.from, CHAIN.to]) if (filter.chains.has(c)) lines.push(`-X ${c}`)
          const dockerUserLeft = (filter.rules.get(DOCKER_USER) ?? []).filter((r) => r !== unquoted(`-j ${CHAIN.forward}`))
          const referenced = [...filter.rules.values()].flat().some((r) => r.endsWith(`-j ${DOCKER_USER}`))
          if (filter.chains.has(DOCKER_USER) && dockerUserLeft.length === 0 && !referenced) lines.push(`-X ${DOCKER_USER}`)
          lines.push('COMMIT', '*nat', ...jumpDeletions(f, 'nat', nat), ...legacyJumpLines('nat', nat))
          for (const c of [CHAIN.dnat, CHAIN.postrouting]) if (nat.chains.has(c)) lines.push(`-F ${c}`, `-X ${c}`)
          lines.push('COMMIT', '*raw', ...jumpDeletions(f, 'raw', raw))
          if (raw.chains.has(CHAIN.raw)) lines.push(`-F ${CHAIN.raw}`, `-X ${CHAIN.raw}`)
          lines.push('COMMIT', ...(mangle.chains.has(CHAIN.prerouting) ? ['*mangle', ...guardDeletions(mangle, 'PREROUTING', CHAIN.prerouting), 'COMMIT'] : []))
          if (lines.length > 6) {
            await this.restore(f, lines)
            log.info({ host: 'firewall.removed', tool: tools(f).save }, "tsnet's chains and jumps removed: no tsnet network left")
          }
        } catch (err) {
          throw withContext(err, `removing tsnet's chains (${tools(f).save})`)
        }
      }
      const existing = (await runOk(this.runner, 'ipset', ['list', '-n'])).split('\n').filter((s) => ALL_SETS.includes(s))
      if (existing.length) {
        await runOk(this.runner, 'ipset', ['restore'], { input: existing.map((s) => `destroy ${s}`).join('\n') + '\n' })
        log.info({ host: 'ipset.destroyed', sets: existing }, "tsnet's ipsets removed")
      }
      this.mirror = new Map()
      this.dnat = []
      this.baseKnown = false
    })
  }

  /**
   * Whether tsnet's chains, jumps and sets are in place as ensureBase leaves them. Without
   * `fresh`, what this process last made them (a firewall reload is found by the periodic
   * reconcile, which reads the kernel).
   */
  async chainsState(fresh: boolean): Promise<'intact' | 'partial' | 'absent'> {
    if (!fresh && this.baseKnown !== undefined) return this.baseKnown ? 'intact' : 'absent'
    return this.lock.run('fw', async () => {
      const sets = new Set((await runOk(this.runner, 'ipset', ['list', '-n'])).split('\n'))
      let intact = BASE_SETS.every((x) => sets.has(x))
      let any = BASE_SETS.some((x) => sets.has(x))
      for (const f of FAMILIES) {
        const filter = await this.tableState(f, 'filter')
        const nat = await this.tableState(f, 'nat')
        const raw = await this.tableState(f, 'raw')
        const rules = filterRules(f)
        const same = (state: ChainState, chain: string, want: string[]) => JSON.stringify(state.rules.get(chain) ?? []) === JSON.stringify(want.map(unquoted))
        intact &&= same(filter, CHAIN.forward, rules.forward) && same(filter, CHAIN.from, rules.from) && same(filter, CHAIN.to, rules.to)
          && same(nat, CHAIN.postrouting, postroutingRules(f)) && nat.chains.has(CHAIN.dnat) && same(raw, CHAIN.raw, rawRules(f))
          && jumpLines(f, 'filter', filter).length === 0 && jumpLines(f, 'nat', nat).length === 0 && jumpLines(f, 'raw', raw).length === 0
          && legacyJumpLines('nat', nat).length === 0
        any ||= [CHAIN.forward, CHAIN.from, CHAIN.to].some((c) => filter.chains.has(c)) || [CHAIN.dnat, CHAIN.postrouting].some((c) => nat.chains.has(c))
          || raw.chains.has(CHAIN.raw)
      }
      this.baseKnown = intact ? true : any ? undefined : false
      return intact ? 'intact' : any ? 'partial' : 'absent'
    })
  }

  private async loadMirror(fresh = false): Promise<Map<string, SetEntry>> {
    if (this.mirror && !fresh) return this.mirror
    const mirror = new Map<string, SetEntry>()
    const r = await this.runner.run('ipset', ['save'])
    if (r.code === 0) {
      for (const line of r.stdout.split('\n')) {
        const m = /^add (\S+) (\S+)(?: comment "([^"]*)")?/.exec(line)
        if (!m?.[1] || !m[2] || !ALL_SETS.includes(m[1])) continue
        const e = { set: m[1], entry: canonicalEntry(m[1], m[2]), comment: m[3] ?? '' }
        mirror.set(entryKey(e), e)
      }
    }
    this.mirror = mirror
    return mirror
  }

  /** The members of tsnet's sets, by `set entry`. */
  entries(fresh: boolean): Promise<Map<string, SetEntry>> {
    return this.lock.run('fw', () => this.loadMirror(fresh))
  }

  /** Deletes and adds (or re-comments) set members in one batch; the copy changes only once the kernel took it. */
  applyEntries(del: SetEntry[], add: SetEntry[], log: Logger): Promise<void> {
    del.forEach(checkEntry)
    add.forEach(checkEntry)
    return this.lock.run('fw', async () => {
      if (del.length === 0 && add.length === 0) return
      const mirror = await this.loadMirror()
      const lines = [...vtepSetCreates(add.map((e) => e.set)), ...del.map((e) => `del ${e.set} ${e.entry}`), ...add.map((e) => `add ${e.set} ${e.entry} comment "${e.comment}"`)]
      try {
        await runOk(this.runner, 'ipset', ['restore', '-exist'], { input: lines.join('\n') + '\n' })
      } catch (err) {
        this.mirror = undefined // partly applied: read the kernel again next time
        throw withContext(err, "updating tsnet's ipsets")
      }
      for (const e of del) mirror.delete(entryKey(e))
      for (const e of add) mirror.set(entryKey(e), e)
      log.info({ host: 'ipset.updated', added: add.map(entryKey), removed: del.map(entryKey) }, 'ipset entries updated')
    })
  }

  /** The rules in TSNET-DNAT, per family (read from the kernel when `fresh` or not known yet). */
  dnatRules(fresh: boolean): Promise<Array<{ family: Family; rule: string }>> {
    return this.lock.run('fw', async () => {
      if (this.dnat && !fresh) return [...this.dnat]
      const out: Array<{ family: Family; rule: string }> = []
      for (const f of FAMILIES) {
        for (const r of (await this.tableState(f, 'nat')).rules.get(CHAIN.dnat) ?? []) out.push({ family: f, rule: quotedComment(r) })
      }
      this.dnat = out
      return [...out]
    })
  }

  /** Deletes and adds DNAT rules (bodies from edge-plan's dnatRule), one batch per family. */
  applyDnat(del: Array<{ family: Family; rule: string }>, add: Array<{ family: Family; rule: string }>, log: Logger): Promise<void> {
    add.forEach((r) => checkRule(r.rule))
    del.forEach((r) => checkRule(r.rule))
    return this.lock.run('fw', async () => {
      for (const f of FAMILIES) {
        const lines = [
          ...del.filter((r) => r.family === f).map((r) => `-D ${CHAIN.dnat} ${r.rule}`),
          ...add.filter((r) => r.family === f).map((r) => `-A ${CHAIN.dnat} ${r.rule}`),
        ]
        if (lines.length === 0) continue
        try {
          await this.restore(f, ['*nat', ...lines, 'COMMIT'])
        } catch (err) {
          this.dnat = undefined
          throw withContext(err, `changing DNAT rules (${tools(f).save})`)
        }
        if (this.dnat) {
          const gone = new Set(del.filter((r) => r.family === f).map((r) => r.rule))
          this.dnat = [...this.dnat.filter((r) => r.family !== f || !gone.has(r.rule)), ...add.filter((r) => r.family === f)]
        }
        log.info({ host: 'firewall.dnat', tool: tools(f).save, rules: lines }, 'DNAT rules changed')
      }
    })
  }
}

/** A chain of overlay guards (TSNET-INPUT, TSNET-PREROUTING) and its jumps, when removing everything. */
function guardDeletions(state: ChainState, builtin: string, chain: string): string[] {
  if (!state.chains.has(chain)) return []
  const jumpsIn = (state.rules.get(builtin) ?? []).filter((r) => r === `-j ${chain}`).map(() => `-D ${builtin} -j ${chain}`)
  return [...jumpsIn, `-F ${chain}`, `-X ${chain}`]
}

/** Jump lines that put each jump of `table` first in its chain, once. */
function jumpLines(f: Family, table: Jump['table'], state: ChainState): string[] {
  const out: string[] = []
  for (const j of jumps(f).filter((x) => x.table === table)) {
    const rules = state.rules.get(j.chain) ?? []
    const want = unquoted(j.rule)
    if ((rules[0] === want || behindDockerUser(j, rules, state)) && rules.filter((r) => r === want).length === 1) continue
    for (const r of rules) if (r === want) out.push(`-D ${j.chain} ${j.rule}`)
    out.push(`-I ${j.chain} 1 ${j.rule}`)
  }
  return out
}

/**
 * Docker puts its jump to DOCKER-USER first in FORWARD whenever it creates a network, whatever
 * the driver. While DOCKER-USER starts with tsnet's jump, TSNET-FORWARD still decides first, so
 * that order is as good; moving tsnet's jump back would only start a tug of war with Docker.
 */
function behindDockerUser(j: Jump, rules: readonly string[], state: ChainState): boolean {
  return j.chain === 'FORWARD' && rules[0] === `-j ${DOCKER_USER}` && state.rules.get(DOCKER_USER)?.[0] === unquoted(`-j ${CHAIN.forward}`)
}

/** Deletions of every copy of tsnet's jumps in `table`. */
function jumpDeletions(f: Family, table: Jump['table'], state: ChainState): string[] {
  return jumps(f).filter((j) => j.table === table).flatMap((j) => (state.rules.get(j.chain) ?? []).filter((r) => r === unquoted(j.rule)).map(() => `-D ${j.chain} ${j.rule}`))
}

/** Deletions of the jumps an earlier tsnet made in `table` (see LEGACY_JUMPS). */
function legacyJumpLines(table: Jump['table'], state: ChainState): string[] {
  return LEGACY_JUMPS.filter((j) => j.table === table).flatMap((j) => (state.rules.get(j.chain) ?? []).filter((r) => r === unquoted(j.rule)).map(() => `-D ${j.chain} ${j.rule}`))
}
