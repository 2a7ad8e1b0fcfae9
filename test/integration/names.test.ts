// Names the kernel would refuse are refused by tsnet itself, as 'invalid', before any command runs:
// a recording runner proves no command was started and the namespace is unchanged.
import t from 'tap'
import { TsnetError } from '../../src/errors.js'
import { GROUP, endpointTag } from '../../src/core/edge-plan.js'
import { macFromSeed, networkAlias, endpointAlias, networkTag } from '../../src/core/names.js'
import { createNetns, hostIn, log, nsState, rejection } from './lib/netns.js'

const BAD = ['bad name', 'a/b', 'x'.repeat(16), '', '.', '..', 'a:b', 'tab\there', 'nl\nlink'] as const
const show = (s: string) => JSON.stringify(s)

t.test('getLink, ensureBridge and deleteOwnedLink refuse bad names before running anything', async (t) => {
  const ns = await createNetns(t)
  const { host, runner } = hostIn(ns)
  const before = await nsState(ns)

  for (const name of BAD) {
    const ops: Array<[string, () => Promise<unknown>]> = [
      ['getLink', () => host.getLink(name)],
      ['ensureBridge', () => host.ensureBridge({ name, alias: networkAlias('ab'.repeat(32)), mtu: 1500, mac: macFromSeed('x'), addresses: ['10.66.0.1/24'], group: GROUP.base }, log)],
      ['deleteOwnedLink', () => host.deleteOwnedLink(name, networkAlias('ab'.repeat(32)), log)],
    ]
    for (const [op, call] of ops) {
      runner.calls.length = 0
      const err = await rejection(call())
      t.ok(err instanceof TsnetError, `${op}(${show(name)}) rejects with a TsnetError`)
      t.equal((err as TsnetError | undefined)?.kind, 'invalid', `${op}(${show(name)}): kind invalid`)
      t.same(runner.calls, [], `${op}(${show(name)}): no command ran`)
    }
  }
  t.same(await nsState(ns), before, 'namespace unchanged')

  // the limits themselves are accepted: 15 characters and the allowed punctuation
  t.equal(await host.getLink('x'.repeat(15)), undefined, 'a 15-character name is fine (and absent)')
  t.equal(await host.getLink('a_b-c.d'), undefined, "'_', '-' and '.' are fine")
})

t.test('the other names that reach commands are checked too', async (t) => {
  // Every name written into `ip -batch` or iptables-restore input is checked first: an unchecked
  // newline would split the batch and run a command of its own.
  const ns = await createNetns(t)
  const { host, runner } = hostIn(ns)
  const good = { hostName: 'tsv-n1', peerName: 'tsc-n1', alias: endpointAlias('n1'.padEnd(64, '0')), mtu: 1500, mac: '02:42:0a:42:00:02', bridge: 'tsbr-n1' }
  const before = await nsState(ns)

  for (const name of ['bad name', 'a/b', 'x'.repeat(16)]) {
    const cases: Array<[string, () => Promise<unknown>]> = [
      ['ensureVeth hostName', () => host.ensureVeth({ ...good, hostName: name }, log)],
      ['ensureVeth peerName', () => host.ensureVeth({ ...good, peerName: name }, log)],
      ['ensureVeth bridge', () => host.ensureVeth({ ...good, bridge: name }, log)],
    ]
    for (const [what, call] of cases) {
      runner.calls.length = 0
      const err = await rejection(call())
      const kind = (err as TsnetError | undefined)?.kind
      const ran = runner.calls.map((c) => c.join(' '))
      t.equal(kind, 'invalid', `${what} ${show(name)}: kind invalid (got ${kind ?? 'no error'})`)
      t.same(ran, [], `${what} ${show(name)}: no command ran`)
    }
  }
  // The edge writes set members, comments and rule bodies into `ipset restore` and
  // `iptables-restore` input: a character that could end a line, a word or a quote is refused.
  for (const bad of ['nl\n-A FORWARD -j ACCEPT', 'cr\rx', 'tab\there', 'semi;colon', 'dollar$(x)', "quote'x", 'back`x`']) {
    const cases: Array<[string, () => Promise<unknown>]> = [
      ['syncSetEntries entry', async () => host.syncSetEntries(() => false, [{ set: 'tsnet-src4', entry: `10.66.0.0/24,${bad}`, comment: networkTag('n1'.repeat(32)) }], log, 'n1')],
      ['syncSetEntries comment', async () => host.syncSetEntries(() => false, [{ set: 'tsnet-masq4', entry: '10.66.0.0/24', comment: `tsnet:${bad}` }], log, 'n1')],
      ['addPortRules', async () => host.addPortRules([{ family: 4, rule: `-p tcp -m tcp --dport 80 -m comment --comment "${endpointTag('e1'.repeat(32))}" -j DNAT --to-destination 10.66.0.2:80 ${bad}` }], log)],
    ]
    for (const [what, call] of cases) {
      runner.calls.length = 0
      const err = await rejection(call())
      const kind = (err as TsnetError | undefined)?.kind
      t.equal(kind, 'invalid', `${what} ${show(bad)}: kind invalid (got ${kind ?? 'no error'})`)
      t.same(runner.calls.map((c) => c.join(' ')), [], `${what} ${show(bad)}: no command ran`)
    }
  }
  for (const comment of ['bad name', 'x"y']) {
    runner.calls.length = 0
    const err = await rejection((async () => host.syncSetEntries(() => false, [{ set: 'tsnet-masq4', entry: '10.66.0.0/24', comment }], log, 'n1'))())
    t.equal((err as TsnetError | undefined)?.kind, 'invalid', `an ipset comment ${show(comment)} is refused`)
    t.same(runner.calls, [], `an ipset comment ${show(comment)}: no command ran`)
  }
  for (const group of [-1, 2 ** 32, 1.5, Number.NaN]) {
    const err = await rejection(host.ensureBridge({ name: 'tsbr-g1', alias: networkAlias('ab'.repeat(32)), mtu: 1500, mac: macFromSeed('x'), addresses: [], group }, log))
    t.equal((err as TsnetError | undefined)?.kind, 'invalid', `device group ${group} is refused`)
    t.notOk(runner.calls.some((c) => c.includes('-batch')), `device group ${group}: no ip -batch ran`)
  }

  // Whatever happened, nothing may be left behind (rollback or refusal). iptables-restore may have
  // created the empty built-in filter table on the way, which is not a rule: compare the rest.
  const after = (await nsState(ns)) as Record<string, unknown>
  const { iptables: v4, ip6tables: v6, ...rest } = after
  const { iptables: _b4, ip6tables: _b6, ...restBefore } = before as Record<string, unknown>
  t.same(rest, restBefore, 'links, addresses and routes unchanged')
  for (const dump of [v4, v6]) t.notMatch(String(dump), /^-A /m, 'no firewall rule left')
  t.notMatch(await ns.ok('ipset', ['list', '-n']), /\S/, 'no ipset created')

  // A newline in a name would split the `ip -batch` input into a second command.
  runner.calls.length = 0
  const injected = 'tsc-n9\nlink add name tsit-inj type bridge\nlink add name tsc-n8'
  const err = await rejection(host.ensureVeth({ ...good, hostName: 'tsv-n9', peerName: injected }, log))
  t.equal((err as TsnetError | undefined)?.kind, 'invalid', 'a peerName with newlines is refused as invalid')
  const injectedLink = JSON.parse(await ns.ok('ip', ['-j', 'link', 'show'])) as Array<{ ifname: string }>
  t.notOk(injectedLink.some((l) => l.ifname === 'tsit-inj'), 'no command smuggled through peerName ran')
  await ns.run('ip', ['link', 'del', 'dev', 'tsit-inj'])
})
