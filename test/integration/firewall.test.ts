// allowIntraBridge / revokeIntraBridge against real iptables (nf_tables backend) and ip6tables in a
// private namespace: one rule per bridge and family, one jump at the top of FORWARD, and nothing
// left once the last bridge is revoked.
import t from 'tap'
import { networkTag } from '../../src/core/names.js'
import { FORWARD_CHAIN } from '../../src/host/firewall.js'
import { chainRules, createNetns, hostIn, log, savedRules, type Netns } from './lib/netns.js'

const TOOLS = ['iptables', 'ip6tables'] as const
const TAG1 = networkTag('f1'.repeat(32))
const TAG2 = networkTag('f2'.repeat(32))

/** Some rules of "the rest of the host", so the snapshot has a filter table and FORWARD content. */
async function populate(ns: Netns): Promise<void> {
  for (const tool of TOOLS) {
    await ns.ok(tool, ['-w', '10', '-P', 'FORWARD', 'DROP'])
    await ns.ok(tool, ['-w', '10', '-N', 'OTHER-FORWARD'])
    await ns.ok(tool, ['-w', '10', '-A', 'FORWARD', '-j', 'OTHER-FORWARD'])
    await ns.ok(tool, ['-w', '10', '-A', 'FORWARD', '-i', 'eth9', '-o', 'eth9', '-j', 'ACCEPT'])
    await ns.ok(tool, ['-w', '10', '-A', 'OTHER-FORWARD', '-i', 'eth8', '-m', 'comment', '--comment', 'not tsnet', '-j', 'ACCEPT'])
    await ns.ok(tool, ['-w', '10', '-A', 'INPUT', '-i', 'lo', '-j', 'ACCEPT'])
  }
}

const ruleFor = (bridge: string, tag: string) => `-A ${FORWARD_CHAIN} -i ${bridge} -o ${bridge} -m comment --comment "${tag}" -j ACCEPT`

async function forward(ns: Netns, tool: (typeof TOOLS)[number]): Promise<string[]> {
  return (await chainRules(ns, tool, 'FORWARD')) ?? []
}

t.test('allow / revoke on a host that has its own rules', async (t) => {
  const ns = await createNetns(t)
  const { host } = hostIn(ns)
  await populate(ns)
  const snap = { iptables: await savedRules(ns, 'iptables'), ip6tables: await savedRules(ns, 'ip6tables') }
  t.notMatch(snap.iptables, /TSNET/, 'no tsnet rules to begin with')

  await host.allowIntraBridge('tsbr-fw1', TAG1, log)
  await host.allowIntraBridge('tsbr-fw1', TAG1, log)
  for (const tool of TOOLS) {
    t.same(await chainRules(ns, tool, FORWARD_CHAIN), [ruleFor('tsbr-fw1', TAG1)], `${tool}: allow twice → exactly one rule`)
    const fwd = await forward(ns, tool)
    t.equal(fwd[0], `-A FORWARD -j ${FORWARD_CHAIN}`, `${tool}: the jump is the first FORWARD rule`)
    t.equal(fwd.filter((l) => l.includes(FORWARD_CHAIN)).length, 1, `${tool}: exactly one jump`)
    t.same(fwd.slice(1), ['-A FORWARD -j OTHER-FORWARD', '-A FORWARD -i eth9 -o eth9 -j ACCEPT'], `${tool}: other FORWARD rules kept, in order`)
    t.match(await ns.ok(tool, ['-w', '10', '-S', 'FORWARD']), /^-P FORWARD DROP$/m, `${tool}: FORWARD policy untouched`)
  }

  await host.allowIntraBridge('tsbr-fw2', TAG2, log)
  for (const tool of TOOLS) {
    t.same(await chainRules(ns, tool, FORWARD_CHAIN), [ruleFor('tsbr-fw1', TAG1), ruleFor('tsbr-fw2', TAG2)], `${tool}: two bridges → two rules`)
    t.equal((await forward(ns, tool)).filter((l) => l.includes(FORWARD_CHAIN)).length, 1, `${tool}: still one jump`)
  }

  await host.revokeIntraBridge('tsbr-fw1', TAG1, log)
  for (const tool of TOOLS) {
    t.same(await chainRules(ns, tool, FORWARD_CHAIN), [ruleFor('tsbr-fw2', TAG2)], `${tool}: revoking the first leaves only the other`)
    t.equal((await forward(ns, tool))[0], `-A FORWARD -j ${FORWARD_CHAIN}`, `${tool}: jump still there`)
  }

  // revoking something that has no rule (or another tag for the same bridge) changes nothing
  const mid = { iptables: await savedRules(ns, 'iptables'), ip6tables: await savedRules(ns, 'ip6tables') }
  await host.revokeIntraBridge('tsbr-fw1', TAG1, log)
  await host.revokeIntraBridge('tsbr-fw2', TAG1, log)
  t.same({ iptables: await savedRules(ns, 'iptables'), ip6tables: await savedRules(ns, 'ip6tables') }, mid, 'revoking what is not there changes nothing')

  await host.revokeIntraBridge('tsbr-fw2', TAG2, log)
  for (const tool of TOOLS) {
    t.equal(await chainRules(ns, tool, FORWARD_CHAIN), undefined, `${tool}: chain gone after the last revoke`)
    t.notOk((await forward(ns, tool)).some((l) => l.includes(FORWARD_CHAIN)), `${tool}: jump gone`)
  }
  t.equal(await savedRules(ns, 'iptables'), snap.iptables, 'iptables-save identical to the snapshot before the first allow')
  t.equal(await savedRules(ns, 'ip6tables'), snap.ip6tables, 'ip6tables-save identical to the snapshot before the first allow')

  await host.revokeIntraBridge('tsbr-fw2', TAG2, log)
  t.equal(await savedRules(ns, 'iptables'), snap.iptables, 'a further revoke with no chain is a no-op')
})

t.test('allow / revoke on a namespace with no filter table at all', async (t) => {
  const ns = await createNetns(t)
  const { host } = hostIn(ns)
  t.equal(await savedRules(ns, 'iptables'), '', 'iptables-save prints nothing in a fresh namespace')

  await host.allowIntraBridge('tsbr-fw3', TAG1, log)
  for (const tool of TOOLS) {
    t.same(await chainRules(ns, tool, FORWARD_CHAIN), [ruleFor('tsbr-fw3', TAG1)], `${tool}: one rule`)
    t.same(await forward(ns, tool), [`-A FORWARD -j ${FORWARD_CHAIN}`], `${tool}: the jump is the only FORWARD rule`)
  }
  await host.revokeIntraBridge('tsbr-fw3', TAG1, log)
  for (const tool of TOOLS) {
    const saved = await savedRules(ns, tool)
    t.notMatch(saved, /TSNET/, `${tool}: no tsnet chain or rule left`)
    // iptables-restore created the filter table with its built-in chains, and they stay (empty,
    // policy ACCEPT): that is not a tsnet rule, but the dump is not byte-identical to the empty one.
    t.same(saved.split('\n').filter((l) => l.startsWith('-')), [], `${tool}: no rules at all`)
    t.notOk(/^:(?!INPUT|FORWARD|OUTPUT)/m.test(saved), `${tool}: only built-in chains`)
    t.notOk(/^:\S+ DROP/m.test(saved), `${tool}: policies ACCEPT`)
  }
})

t.test('concurrent allows of several bridges serialise into one chain and one jump', async (t) => {
  const ns = await createNetns(t)
  const { host } = hostIn(ns)
  const bridges = ['tsbr-c1', 'tsbr-c2', 'tsbr-c3', 'tsbr-c4']
  await Promise.all(bridges.map((b) => host.allowIntraBridge(b, networkTag(b), log)))
  for (const tool of TOOLS) {
    t.same(
      [...((await chainRules(ns, tool, FORWARD_CHAIN)) ?? [])].sort(),
      bridges.map((b) => ruleFor(b, networkTag(b))).sort(),
      `${tool}: one rule per bridge`,
    )
    t.same(await forward(ns, tool), [`-A FORWARD -j ${FORWARD_CHAIN}`], `${tool}: one jump`)
  }
  await Promise.all(bridges.map((b) => host.revokeIntraBridge(b, networkTag(b), log)))
  for (const tool of TOOLS) t.equal(await chainRules(ns, tool, FORWARD_CHAIN), undefined, `${tool}: all gone`)
})

t.test('a tag that iptables prints without quotes', async (t) => {
  // networkTag() always contains ':' so iptables -S quotes it; a tag of plain word characters is
  // printed bare (--comment plain), and must still be recognised as ours.
  const ns = await createNetns(t)
  const { host } = hostIn(ns)
  await host.allowIntraBridge('tsbr-q1', 'plain', log)
  await host.allowIntraBridge('tsbr-q1', 'plain', log)
  t.equal((await chainRules(ns, 'iptables', FORWARD_CHAIN))?.length, 1, 'allow twice → one rule')
  await host.revokeIntraBridge('tsbr-q1', 'plain', log)
  t.equal(await chainRules(ns, 'iptables', FORWARD_CHAIN), undefined, 'revoke → no chain left')
})
