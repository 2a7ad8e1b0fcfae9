// Names and texts the kernel or a tool would refuse, or that could smuggle a second command into a
// batch, are refused by tsnet's host layer itself, as 'invalid', before anything reaches the
// kernel: the real host layer in the namespace (lib/remote-host.ts) counts the rtnetlink messages
// it sends and records every command it spawns, which proves that nothing was sent or run, and the
// namespace is unchanged.
import t, { type Test } from 'tap'
import { TsnetError } from '../../src/errors.js'
import { GROUP, endpointTag } from '../../src/core/edge-plan.js'
import { endpointAlias, macFromSeed, networkAlias, networkTag } from '../../src/core/names.js'
import type { HostObject, Op } from '../../src/core/objects.js'
import { addrObject, bridgeObject, vethObject } from './lib/link-objects.js'
import { createNetns, log, nsState, rejection } from './lib/netns.js'
import { hostIn, type RemoteHost } from './lib/remote-host.js'

const BAD = ['bad name', 'a/b', 'x'.repeat(16), '', '.', '..', 'a:b', 'tab\there', 'nl\nlink'] as const
const show = (s: unknown) => JSON.stringify(s)
const NET = 'ab'.repeat(32)
const bridge = (name: string, group: number = GROUP.base) => bridgeObject(name, { alias: networkAlias(NET), mtu: 1500, mac: macFromSeed('x'), group })
const veth = (over: { name?: string; peer?: string; master?: string } = {}) =>
  vethObject(over.name ?? 'tsv-n1', over.peer ?? 'tsc-n1', '02:42:0a:42:00:02', { alias: endpointAlias('n1'.padEnd(64, '0')), mtu: 1500, master: over.master ?? 'tsbr-n1' })
const create = (obj: HostObject): Op[] => [{ op: 'create', obj }]

/** `call` is refused as invalid, and neither an rtnetlink message (not even a read) nor a command went out. */
async function refusedUntouched(t: Test, host: RemoteHost, what: string, call: () => Promise<unknown>): Promise<void> {
  await host.resetCounters()
  const err = await rejection(call())
  const kind = (err as TsnetError | undefined)?.kind
  t.ok(err instanceof TsnetError, `${what}: refused with a TsnetError (${String((err as Error | undefined)?.message)})`)
  t.equal(kind, 'invalid', `${what}: kind invalid (got ${kind ?? 'no error'})`)
  const c = await host.counters()
  t.same({ netlink: c.netlinkReads + c.netlinkChanges, commands: c.commands }, { netlink: 0, commands: [] }, `${what}: nothing was sent to the kernel and no command ran`)
}

t.test('links: bad names are refused before any rtnetlink message', async (t) => {
  const ns = await createNetns(t)
  const host = hostIn(t, ns)
  const before = await nsState(ns)

  for (const name of BAD) {
    const cases: Array<[string, () => Promise<unknown>]> = [
      ['observe link', () => host.observe({ keys: [`link ${name}`] })],
      ['create bridge', () => host.apply(create(bridge(name)), log)],
      ['update bridge', () => host.apply([{ op: 'update', obj: { ...bridge(name), mtu: 1400 }, from: bridge(name) }], log)],
      ['delete bridge', () => host.apply([{ op: 'delete', obj: bridge(name) }], log)],
      ['veth name', () => host.apply(create(veth({ name })), log)],
      ['veth peer', () => host.apply(create(veth({ peer: name })), log)],
      ['veth master', () => host.apply(create(veth({ master: name })), log)],
      ['address on link', () => host.apply(create(addrObject(name, '10.66.0.1/24')), log)],
    ]
    for (const [what, call] of cases) await refusedUntouched(t, host, `${what} ${show(name)}`, call)
  }
  for (const group of [-1, 2 ** 32, 1.5]) {
    await refusedUntouched(t, host, `device group ${group}`, () => host.apply(create(bridge('tsbr-g1', group)), log))
  }
  for (const mac of ['02:42:0a:42:00', 'zz:42:0a:42:00:02', '02:42:0a:42:00:02\nx']) {
    await refusedUntouched(t, host, `peer MAC ${show(mac)}`, () => host.apply(create({ ...veth(), veth: { peer: 'tsc-n1', peerMac: mac } }), log))
  }
  await refusedUntouched(t, host, 'an alias with a newline', () => host.apply(create({ ...bridge('tsbr-n2'), alias: 'tsnet:net:x\ny' }), log))
  await refusedUntouched(t, host, 'a veth whose two ends share a name', () => host.apply(create(veth({ name: 'tsv-n3', peer: 'tsv-n3' })), log))
  t.same(await nsState(ns), before, 'namespace unchanged')

  // Positive control: the counting sees what a valid change sends.
  await host.resetCounters()
  await host.apply(create(bridge('tsbr-ok')), log)
  t.ok((await host.counters()).netlinkChanges > 0, 'control: a valid bridge is counted going out')
  await host.apply([{ op: 'delete', obj: bridge('tsbr-ok') }], log)

  // The limits themselves are accepted: 15 characters and the allowed punctuation.
  const edge = await host.observe({ keys: [`link ${'x'.repeat(15)}`, 'link a_b-c.d'] })
  t.same([...edge.keys()], [], "a 15-character name and '_', '-', '.' are fine (and absent)")
})

t.test('the edge: set members, comments and rule bodies with characters tsnet never writes are refused before any command', async (t) => {
  // Every set member, comment and rule body is written into `ipset restore` or
  // `iptables-restore` input: a character that could end a line, a word or a quote would run a
  // command of its own.
  const ns = await createNetns(t)
  const host = hostIn(t, ns)
  const before = await nsState(ns)
  for (const bad of ['nl\n-A FORWARD -j ACCEPT', 'cr\rx', 'tab\there', 'semi;colon', 'dollar$(x)', "quote'x", 'back`x`']) {
    const cases: Array<[string, HostObject]> = [
      ['set member', { kind: 'setEntry', set: 'tsnet-src4', entry: `10.66.0.0/24,${bad}`, comment: networkTag('n1'.repeat(32)) }],
      ['set comment', { kind: 'setEntry', set: 'tsnet-masq4', entry: '10.66.0.0/24', comment: `tsnet:${bad}` }],
      ['DNAT rule', { kind: 'dnat', family: 4, rule: `-p tcp -m tcp --dport 80 -m comment --comment "${endpointTag('e1'.repeat(32))}" -j DNAT --to-destination 10.66.0.2:80 ${bad}` }],
    ]
    for (const [what, obj] of cases) {
      await refusedUntouched(t, host, `${what} ${show(bad)}`, () => host.apply(create(obj), log))
      await refusedUntouched(t, host, `${what} ${show(bad)} (delete)`, () => host.apply([{ op: 'delete', obj }], log))
    }
  }
  for (const comment of ['bad name', 'x"y']) {
    await refusedUntouched(t, host, `an ipset comment ${show(comment)}`, () => host.apply(create({ kind: 'setEntry', set: 'tsnet-masq4', entry: '10.66.0.0/24', comment }), log))
  }
  await refusedUntouched(t, host, 'a set that is not tsnet\'s', () => host.apply(create({ kind: 'setEntry', set: 'other-set', entry: '10.66.0.0/24', comment: 'tsnet:x' }), log))
  // Positive control: the recording sees the commands a valid change runs.
  await host.resetCounters()
  await host.apply(create({ kind: 'chains', intact: true }), log)
  t.ok((await host.counters()).commands.some((c) => c[0] === 'iptables-restore'), 'control: a valid change is recorded running iptables-restore')
  await host.apply([{ op: 'delete', obj: { kind: 'chains', intact: true } }], log)

  // Whatever happened, nothing may be left behind. iptables may have created an empty built-in
  // table on the way (nft backend), which is not a rule: compare the rest.
  const after = (await nsState(ns)) as Record<string, unknown>
  const { iptables: v4, ip6tables: v6, ...rest } = after
  const { iptables: _b4, ip6tables: _b6, ...restBefore } = before as Record<string, unknown>
  t.same(rest, restBefore, 'links, addresses and routes unchanged')
  for (const dump of [v4, v6]) t.notMatch(String(dump), /^-A /m, 'no firewall rule left')
  t.notMatch(await ns.ok('ipset', ['list', '-n']), /\S/, 'no ipset created')
})

t.test('kernel settings: a link name that would leave /proc/sys/net is refused before anything is read or written', async (t) => {
  const ns = await createNetns(t)
  const host = hostIn(t, ns)
  for (const path of ['net/ipv4/conf/../../../kernel/hostname/x', 'net/ipv4/conf/a b/route_localnet', 'kernel/hostname', 'net/ipv4/conf/lo\n/route_localnet']) {
    const err = await rejection(host.apply(create({ kind: 'sysctl', path, value: '1' }), log))
    t.ok(err instanceof Error, `sysctl ${show(path)} is refused (${String((err as Error | undefined)?.message)})`)
    t.match((err as Error | undefined)?.message ?? '', /is not one tsnet sets/, `sysctl ${show(path)}: as a key tsnet does not set`)
  }
})

t.test('a name with newlines cannot create a second link', async (t) => {
  // Over `ip -batch`, a newline in a name would have split the input into a command of its own;
  // over rtnetlink it is one attribute, and refused before it is sent.
  const ns = await createNetns(t)
  const host = hostIn(t, ns)
  const injected = 'tsc-n9\nlink add name tsit-inj type bridge\nlink add name tsc-n8'
  await refusedUntouched(t, host, 'a peer name with newlines', () => host.apply(create(veth({ name: 'tsv-n9', peer: injected })), log))
  const names = (JSON.parse(await ns.ok('ip', ['-j', 'link', 'show'])) as Array<{ ifname: string }>).map((l) => l.ifname)
  t.same(names, ['lo'], 'no link was made')
})
