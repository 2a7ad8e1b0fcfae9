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
  ALL_SETS, CHAIN, DOCKER_USER, FAMILIES, LEGACY_JUMPS, SET_TYPE, SET_KINDS, type Jump, type SetEntry, entryKey, filterRules, jumps, postroutingRules,
  rawRules, setName,
} from '../core/edge-plan.js'
import { checkTag } from '../core/names.js'
import { invalid, withContext } from '../errors.js'
import { type Runner, runOk } from './exec.js'
import { KeyedLock } from '../util/keyed-lock.js'

const WAIT = ['-w', '10']
/** Room for thousands of networks and large policies (ipset's default is 65536 members). */
const SET_MAXELEM = 1_048_576
const tools = (f: Family) => (f === 4 ? { save: 'iptables', restore: 'iptables-restore' } : { save: 'ip6tables', restore: 'ip6tables-restore' })
/** `iptables -S` quotes a comment only when it holds special characters; compare without quotes. */
const unquoted = (rule: string) => rule.replace(/"/g, '')
/** Set members, comments and rule bodies are written into batch input: plain characters only. */
const SAFE_ENTRY = /^[0-9A-Za-z.:/,_-]{1,120}$/
const SAFE_RULE = /^[0-9A-Za-z.:/_\-[\] "]{1,400}$/

function checkEntry(e: SetEntry): void {
  if (!ALL_SETS.includes(e.set)) throw invalid(`ipset ${e.set} is not one of tsnet's`)
  if (!SAFE_ENTRY.test(e.entry)) throw invalid(`ipset entry "${e.entry}" holds characters tsnet never writes`)
  checkTag(e.comment, 'ipset comment')
}
function checkRule(rule: string): void {
  if (!SAFE_RULE.test(rule)) throw invalid(`firewall rule "${rule}" holds characters tsnet never writes`)
}

/** ipset prints a full-length prefix as a bare address; entries are compared in the form tsnet writes. */
function canonicalEntry(set: string, entry: string): string {
  const family = set.endsWith('6') ? 6 : 4
  const full = family === 4 ? '/32' : '/128'
  const parts = entry.split(',')
  const netAt = set.startsWith('tsnet-allow') ? 2 : 0
  const net = parts[netAt]
  if (net !== undefined && !net.includes('/')) parts[netAt] = net + full
  return parts.join(',').replace('ipv6-icmp:', 'icmpv6:')
}

export interface ChainState {
  chains: Set<string>
  rules: Map<string, string[]>
}

export class EdgeFirewall {
  private readonly lock = new KeyedLock()
  /** What tsnet's sets hold, keyed by `set entry`; read once from the kernel, then kept by every change. */
  private mirror: Map<string, SetEntry> | undefined

  constructor(private readonly runner: Runner) {}

  private async tableState(f: Family, table: Jump['table']): Promise<ChainState> {
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
      const creates = FAMILIES.flatMap((f) => SET_KINDS.map((k) => `create ${setName(k, f)} ${SET_TYPE[k]} family ${f === 4 ? 'inet' : 'inet6'} maxelem ${SET_MAXELEM} comment`))
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
          log.debug({ host: 'firewall.base', tool: tools(f).save }, "tsnet's chains and jumps in place")
        } catch (err) {
          throw withContext(err, `setting up tsnet's chains (${tools(f).save})`)
        }
      }
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
          const lines = ['*filter', ...jumpDeletions(f, 'filter', filter)]
          for (const c of [CHAIN.forward, CHAIN.from, CHAIN.to]) if (filter.chains.has(c)) lines.push(`-F ${c}`)
          for (const c of [CHAIN.forward, CHAIN.from, CHAIN.to]) if (filter.chains.has(c)) lines.push(`-X ${c}`)
          const dockerUserLeft = (filter.rules.get(DOCKER_USER) ?? []).filter((r) => r !== unquoted(`-j ${CHAIN.forward}`))
          const referenced = [...filter.rules.values()].flat().some((r) => r.endsWith(`-j ${DOCKER_USER}`))
          if (filter.chains.has(DOCKER_USER) && dockerUserLeft.length === 0 && !referenced) lines.push(`-X ${DOCKER_USER}`)
          lines.push('COMMIT', '*nat', ...jumpDeletions(f, 'nat', nat), ...legacyJumpLines('nat', nat))
          for (const c of [CHAIN.dnat, CHAIN.postrouting]) if (nat.chains.has(c)) lines.push(`-F ${c}`, `-X ${c}`)
          lines.push('COMMIT', '*raw', ...jumpDeletions(f, 'raw', raw))
          if (raw.chains.has(CHAIN.raw)) lines.push(`-F ${CHAIN.raw}`, `-X ${CHAIN.raw}`)
          lines.push('COMMIT')
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
    })
  }

  private async loadMirror(): Promise<Map<string, SetEntry>> {
    if (this.mirror) return this.mirror
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

  /**
   * Makes the entries whose comment `owns` picks exactly `desired`, in one batch. The mirror
   * changes only after the kernel accepted the batch.
   */
  syncEntries(owns: (comment: string) => boolean, desired: SetEntry[], log: Logger, what: string, others: SetEntry[] = []): Promise<void> {
    desired.forEach(checkEntry)
    others.forEach(checkEntry)
    return this.lock.run('fw', async () => {
      const mirror = await this.loadMirror()
      const want = new Map(desired.map((e) => [entryKey(e), e]))
      const heirs = new Map(others.map((e) => [entryKey(e), e]))
      const del: SetEntry[] = []
      const add = [...want.values()].filter((e) => mirror.get(entryKey(e))?.comment !== e.comment)
      for (const e of mirror.values()) {
        if (!owns(e.comment) || want.get(entryKey(e))?.comment === e.comment) continue
        if (want.has(entryKey(e))) continue // re-added above with its new comment
        const heir = heirs.get(entryKey(e))
        if (heir) add.push(heir) // `add -exist` updates the comment: the member changes hands
        else del.push(e)
      }
      if (del.length === 0 && add.length === 0) return
      const lines = [...del.map((e) => `del ${e.set} ${e.entry}`), ...add.map((e) => `add ${e.set} ${e.entry} comment "${e.comment}"`)]
      try {
        await runOk(this.runner, 'ipset', ['restore', '-exist'], { input: lines.join('\n') + '\n' })
      } catch (err) {
        this.mirror = undefined // partly applied: read the kernel again next time
        throw withContext(err, `updating tsnet's ipsets for ${what}`)
      }
      for (const e of del) mirror.delete(entryKey(e))
      for (const e of add) mirror.set(entryKey(e), e)
      log.info({ host: 'ipset.updated', for: what, added: add.length, removed: del.length }, 'ipset entries updated')
    })
  }

  /** Adds DNAT rules (bodies from edge-plan's dnatRule) to TSNET-DNAT, one batch per family. */
  addPortRules(rules: Array<{ family: Family; rule: string }>, log: Logger): Promise<void> {
    rules.forEach((r) => checkRule(r.rule))
    return this.lock.run('fw', async () => {
      for (const f of FAMILIES) {
        const mine = rules.filter((r) => r.family === f)
        if (mine.length === 0) continue
        const existing = new Set((await this.tableState(f, 'nat')).rules.get(CHAIN.dnat) ?? [])
        const lines = mine.filter((r) => !existing.has(unquoted(r.rule))).map((r) => `-A ${CHAIN.dnat} ${r.rule}`)
        if (lines.length === 0) continue
        try {
          await this.restore(f, ['*nat', ...lines, 'COMMIT'])
        } catch (err) {
          throw withContext(err, `adding DNAT rules (${tools(f).save})`)
        }
        log.info({ host: 'firewall.dnat.added', tool: tools(f).save, rules: lines }, 'DNAT rules added')
      }
    })
  }

  /** Deletes the DNAT rules whose comment `doomed` picks, one batch per family. */
  removePortRules(doomed: (tag: string) => boolean, log: Logger, what: string): Promise<void> {
    return this.lock.run('fw', async () => {
      for (const f of FAMILIES) {
        const state = await this.tableState(f, 'nat')
        const lines = (state.rules.get(CHAIN.dnat) ?? []).filter((r) => {
          const tag = /--comment (\S+)/.exec(r)?.[1]
          return tag !== undefined && doomed(tag)
        }).map((r) => `-D ${CHAIN.dnat} ${r.replace(/--comment (\S+)/, '--comment "$1"')}`)
        if (lines.length === 0) continue
        try {
          await this.restore(f, ['*nat', ...lines, 'COMMIT'])
        } catch (err) {
          throw withContext(err, `removing DNAT rules for ${what} (${tools(f).save})`)
        }
        log.info({ host: 'firewall.dnat.removed', tool: tools(f).save, for: what, rules: lines }, 'DNAT rules removed')
      }
    })
  }
}

/** Jump lines that put each jump of `table` first in its chain, once. */
function jumpLines(f: Family, table: Jump['table'], state: ChainState): string[] {
  const out: string[] = []
  for (const j of jumps(f).filter((x) => x.table === table)) {
    const rules = state.rules.get(j.chain) ?? []
    const want = unquoted(j.rule)
    if (rules[0] === want && rules.filter((r) => r === want).length === 1) continue
    for (const r of rules) if (r === want) out.push(`-D ${j.chain} ${j.rule}`)
    out.push(`-I ${j.chain} 1 ${j.rule}`)
  }
  return out
}

/** Deletions of every copy of tsnet's jumps in `table`. */
function jumpDeletions(f: Family, table: Jump['table'], state: ChainState): string[] {
  return jumps(f).filter((j) => j.table === table).flatMap((j) => (state.rules.get(j.chain) ?? []).filter((r) => r === unquoted(j.rule)).map(() => `-D ${j.chain} ${j.rule}`))
}

/** Deletions of the jumps an earlier tsnet made in `table` (see LEGACY_JUMPS). */
function legacyJumpLines(table: Jump['table'], state: ChainState): string[] {
  return LEGACY_JUMPS.filter((j) => j.table === table).flatMap((j) => (state.rules.get(j.chain) ?? []).filter((r) => r === unquoted(j.rule)).map(() => `-D ${j.chain} ${j.rule}`))
}
