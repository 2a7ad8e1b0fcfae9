// GuardFirewall against a fake iptables: the rules it reports (a chain out of order, or whose jump
// is not first, counts as absent, so the reconcile rewrites it), and the batches it writes: each
// table's chain whole, in guard order, with its jump first; a chain removed with its last rule.
import t from 'tap'
import pino from 'pino'
import type { Family } from '../../src/core/addr.js'
import { CHAIN, OVERLAY_TO_HOST_RULE, vtepPassRule, vtepSpoofRule, vxlanGuardRule } from '../../src/core/edge-rules.js'
import type { Runner } from '../../src/host/exec.js'
import { GuardFirewall } from '../../src/host/guard-firewall.js'
import { KeyedLock } from '../../src/util/keyed-lock.js'

const log = pino({ level: 'silent' })
const DROP = vxlanGuardRule(4, 4789, 300, 'tsnet:net:q1w2e3r4t5y6')
const PASS = vtepPassRule(4, 4789)
const SPOOF = vtepSpoofRule(4, 4789)

/** iptables -S of INPUT/PREROUTING and tsnet's chains per table (IPv4 only; IPv6 empty), and what was restored. */
function fakeIptables(filter: { input: string[]; chain?: string[] }, mangle: { pre: string[]; chain?: string[] } = { pre: [] }) {
  const restored: string[] = []
  const listing = (builtin: string, jumps: string[], chain: string, rules?: string[]) => ({
    [builtin]: { code: 0, stdout: jumps.map((r) => `-A ${builtin} ${r}`).join('\n'), stderr: '' },
    [chain]: rules ? { code: 0, stdout: [`-N ${chain}`, ...rules.map((r) => `-A ${chain} ${r}`)].join('\n'), stderr: '' } : { code: 1, stdout: '', stderr: 'No chain' },
  })
  const v4: Record<string, Record<string, { code: number; stdout: string; stderr: string }>> = {
    filter: listing('INPUT', filter.input, CHAIN.input, filter.chain),
    mangle: listing('PREROUTING', mangle.pre, CHAIN.prerouting, mangle.chain),
  }
  const runner: Runner = {
    async run(cmd, args, opts) {
      if (cmd.endsWith('-restore') || cmd === 'ipset') {
        if (cmd !== 'ipset') restored.push(opts?.input ?? '')
        return { code: 0, stdout: '', stderr: '' }
      }
      const table = args.includes('-t') ? args[args.indexOf('-t') + 1] as string : 'filter'
      const chain = args[args.indexOf('-S') + 1] as string
      if (cmd === 'ip6tables') return chain === 'INPUT' || chain === 'PREROUTING' ? { code: 0, stdout: '', stderr: '' } : { code: 1, stdout: '', stderr: 'No chain' }
      return v4[table]?.[chain] ?? { code: 1, stdout: '', stderr: 'No chain' }
    },
  }
  return { runner, restored }
}

const rules = (r: Runner) => new GuardFirewall(r, new KeyedLock()).rules(true)
const quoted = (rule: string) => rule.replace('--comment tsnet:vtep-pass', '--comment "tsnet:vtep-pass"')

t.test('rules: in order with the jump first, reported; out of order or the jump not first, absent', async (t) => {
  const ok = fakeIptables({ input: [`-j ${CHAIN.input}`], chain: [OVERLAY_TO_HOST_RULE, quoted(PASS), DROP] }, { pre: [`-j ${CHAIN.prerouting}`], chain: [SPOOF] })
  t.same(await rules(ok.runner), [
    { family: 4, rule: OVERLAY_TO_HOST_RULE }, { family: 4, rule: PASS }, { family: 4, rule: DROP },
    { family: 4 as Family, rule: SPOOF, table: 'mangle' },
  ], 'both tables, the mangle rule marked as such, quotes read back away')
  const reordered = fakeIptables({ input: [`-j ${CHAIN.input}`], chain: [PASS, OVERLAY_TO_HOST_RULE, DROP] })
  t.same(await rules(reordered.runner), [], 'the pass before the overlay-to-host drop: the chain counts as absent')
  const late = fakeIptables({ input: ['-p tcp -j ACCEPT', `-j ${CHAIN.input}`], chain: [OVERLAY_TO_HOST_RULE, PASS, DROP] })
  t.same(await rules(late.runner), [], 'a jump that is not first guards nothing')
})

t.test('apply: one batch per table, rules sorted, jump first; the last rule takes the chain with it', async (t) => {
  const old = fakeIptables({ input: [`-j ${CHAIN.input}`], chain: [OVERLAY_TO_HOST_RULE, DROP] })
  const fw = new GuardFirewall(old.runner, new KeyedLock())
  await fw.apply([], [{ family: 4, rule: PASS }, { family: 4, rule: SPOOF, table: 'mangle' }], log)
  t.equal(old.restored.length, 2, 'filter and mangle, IPv4 only')
  t.same(old.restored[0]?.trim().split('\n'), [
    '*filter', `-D INPUT -j ${CHAIN.input}`, `:${CHAIN.input} - [0:0]`,
    `-A ${CHAIN.input} ${OVERLAY_TO_HOST_RULE}`, `-A ${CHAIN.input} ${PASS}`, `-A ${CHAIN.input} ${DROP}`,
    `-I INPUT 1 -j ${CHAIN.input}`, 'COMMIT',
  ], "an older version's chain gets the pass between its two rules")
  t.same(old.restored[1]?.trim().split('\n'), ['*mangle', `:${CHAIN.prerouting} - [0:0]`, `-A ${CHAIN.prerouting} ${SPOOF}`, `-I PREROUTING 1 -j ${CHAIN.prerouting}`, 'COMMIT'])

  const last = fakeIptables({ input: [] }, { pre: [`-j ${CHAIN.prerouting}`], chain: [SPOOF] })
  await new GuardFirewall(last.runner, new KeyedLock()).apply([{ family: 4, rule: SPOOF, table: 'mangle' }], [], log)
  t.same(last.restored.map((x) => x.trim().split('\n')), [['*mangle', `-D PREROUTING -j ${CHAIN.prerouting}`, `-F ${CHAIN.prerouting}`, `-X ${CHAIN.prerouting}`, 'COMMIT']])
})
