// host/edge-firewall.ts against real iptables (nf_tables backend), ip6tables and ipset in a private
// namespace: tsnet's chains and jumps (first in FORWARD, DOCKER-USER, PREROUTING, OUTPUT and
// POSTROUTING, raw PREROUTING, also after something else put itself first), whether they are
// intact as the host shows them, ipset members carrying their owner's comment, DNAT rules tagged by
// endpoint and read back exactly as written (so a diff of what is wanted against what is there
// finds nothing to do), the PREROUTING jump of earlier versions removed, and nothing of tsnet's
// left after removeBase, while rules, chains and sets that are not tsnet's stay exactly as they
// were. The firewall spawns its tools, so it runs here with `nsenter` in front of each.
import t, { type Test } from 'tap'
import type { Family } from '../../src/core/addr.js'
import { diff } from '../../src/core/diff.js'
import {
  BASE_SETS, CHAIN, DOCKER_USER, LEGACY_JUMPS, SET_TYPE, type SetEntry, allowEntries, dnatRule, entryKey, filterRules, jumps, networkEntries,
  postroutingRules, rawRules, setEntryObject,
} from '../../src/core/edge-plan.js'
import { networkTag } from '../../src/core/names.js'
import { type DnatObject, type HostObject, keyOf } from '../../src/core/objects.js'
import { parsePolicy } from '../../src/core/policy.js'
import type { EndpointRecord, NetworkRecord, PublishedPort } from '../../src/core/records.js'
import { EdgeFirewall } from '../../src/host/edge-firewall.js'
import { FirewallDriver } from '../../src/host/firewall-driver.js'
import { bridgeEdge, bridgeOf } from '../../src/modes/bridge.js'
import { TsnetError } from '../../src/errors.js'
import { chainRules, createNetns, log, rejection, runnerIn, savedRules, type Netns } from './lib/netns.js'

const TOOLS = ['iptables', 'ip6tables'] as const
type Tool = (typeof TOOLS)[number]
const familyOf = (tool: Tool): Family => (tool === 'iptables' ? 4 : 6)

const NET_A = 'fa'.repeat(32)
const NET_B = 'fb'.repeat(32)
const EP1 = 'e1'.repeat(32)
const EP2 = 'e2'.repeat(32)

function firewallIn(ns: Netns) {
  const runner = runnerIn(ns)
  return { fw: new EdgeFirewall(runner), runner }
}

/** Some rules, a chain and a set of "the rest of the host", so there is something not to touch. */
async function populate(ns: Netns): Promise<void> {
  for (const tool of TOOLS) {
    await ns.ok(tool, ['-w', '10', '-P', 'FORWARD', 'DROP'])
    await ns.ok(tool, ['-w', '10', '-N', 'OTHER-FORWARD'])
    await ns.ok(tool, ['-w', '10', '-A', 'FORWARD', '-j', 'OTHER-FORWARD'])
    await ns.ok(tool, ['-w', '10', '-A', 'FORWARD', '-i', 'eth9', '-o', 'eth9', '-j', 'ACCEPT'])
    await ns.ok(tool, ['-w', '10', '-A', 'OTHER-FORWARD', '-i', 'eth8', '-m', 'comment', '--comment', 'not tsnet', '-j', 'ACCEPT'])
    await ns.ok(tool, ['-w', '10', '-A', 'INPUT', '-i', 'lo', '-j', 'ACCEPT'])
    await ns.ok(tool, ['-w', '10', '-t', 'nat', '-N', 'OTHER-NAT'])
    await ns.ok(tool, ['-w', '10', '-t', 'nat', '-A', 'PREROUTING', '-p', 'tcp', '--dport', '9999', '-j', 'OTHER-NAT'])
    await ns.ok(tool, ['-w', '10', '-t', 'nat', '-A', 'POSTROUTING', '-o', 'eth9', '-j', 'MASQUERADE'])
    await ns.ok(tool, ['-w', '10', '-t', 'raw', '-A', 'PREROUTING', '-i', 'eth9', '-p', 'udp', '--dport', '4789', '-j', 'NOTRACK'])
  }
  await ns.ok('ipset', ['create', 'other-set', 'hash:net', 'comment'])
  await ns.ok('ipset', ['add', 'other-set', '192.0.2.0/24', 'comment', 'not tsnet'])
}

/** Everything a test may compare: both rule dumps and the full `ipset save`. */
async function snapshot(ns: Netns) {
  return { iptables: await savedRules(ns, 'iptables'), ip6tables: await savedRules(ns, 'ip6tables'), ipset: await ns.ok('ipset', ['save']) }
}

async function rulesOf(ns: Netns, tool: Tool, chain: string, table = 'filter'): Promise<string[] | undefined> {
  if (table === 'filter') return chainRules(ns, tool, chain)
  const r = await ns.run(tool, ['-w', '10', '-t', table, '-S', chain])
  if (r.code !== 0) return undefined
  return r.stdout.split('\n').filter((l) => l.startsWith('-A '))
}

/** `add` lines of `ipset save` for tsnet's sets, as `set entry comment`, sorted. */
async function tsnetMembers(ns: Netns): Promise<string[]> {
  return (await ns.ok('ipset', ['save']))
    .split('\n')
    .filter((l) => l.startsWith('add tsnet-'))
    .map((l) => l.replace(/^add /, ''))
    .sort()
}

async function tsnetSets(ns: Netns): Promise<string[]> {
  return (await ns.ok('ipset', ['list', '-n'])).split('\n').filter((s) => s.startsWith('tsnet-')).sort()
}

/** Checks every chain body and jump of tsnet's against edge-plan, in both families. */
async function assertBase(t: Test, ns: Netns, what: string): Promise<void> {
  for (const tool of TOOLS) {
    const f = familyOf(tool)
    const plan = filterRules(f)
    t.same(await rulesOf(ns, tool, CHAIN.forward), plan.forward.map((r) => `-A ${CHAIN.forward} ${r}`), `${what}: ${tool} ${CHAIN.forward} is edge-plan's`)
    t.same(await rulesOf(ns, tool, CHAIN.from), plan.from.map((r) => `-A ${CHAIN.from} ${r}`), `${what}: ${tool} ${CHAIN.from} is edge-plan's`)
    t.same(await rulesOf(ns, tool, CHAIN.to), plan.to.map((r) => `-A ${CHAIN.to} ${r}`), `${what}: ${tool} ${CHAIN.to} is edge-plan's`)
    t.same(await rulesOf(ns, tool, CHAIN.postrouting, 'nat'), postroutingRules(f).map((r) => `-A ${CHAIN.postrouting} ${r}`), `${what}: ${tool} ${CHAIN.postrouting} is edge-plan's`)
    t.same(await rulesOf(ns, tool, CHAIN.raw, 'raw'), rawRules(f).map((r) => `-A ${CHAIN.raw} ${r}`), `${what}: ${tool} raw ${CHAIN.raw} is edge-plan's`)
    t.ok(await rulesOf(ns, tool, CHAIN.dnat, 'nat'), `${what}: ${tool} ${CHAIN.dnat} exists`)
    for (const j of LEGACY_JUMPS) t.notOk(((await rulesOf(ns, tool, j.chain, j.table)) ?? []).includes(`-A ${j.chain} ${j.rule}`), `${what}: ${tool} ${j.table}/${j.chain} has no jump of an earlier version`)
    for (const j of jumps(f)) {
      const rules = (await rulesOf(ns, tool, j.chain, j.table)) ?? []
      const jump = `-A ${j.chain} ${j.rule}`
      t.equal(rules[0], jump, `${what}: ${tool} ${j.table}/${j.chain} starts with tsnet's jump`)
      t.equal(rules.filter((r) => r === jump).length, 1, `${what}: ${tool} ${j.table}/${j.chain} has it once`)
    }
  }
  t.same(await tsnetSets(ns), [...BASE_SETS].sort(), `${what}: all of tsnet's base ipsets exist (the VTEP sets come with the first overlay network)`)
  for (const s of BASE_SETS) {
    const header = (await ns.ok('ipset', ['list', '-t', s])).split('\n')
    const kind = s.replace(/^tsnet-/, '').replace(/[46]$/, '') as keyof typeof SET_TYPE
    t.ok(header.includes(`Type: ${SET_TYPE[kind]}`), `${what}: ${s} is ${SET_TYPE[kind]}`)
    t.match(header.find((l) => l.startsWith('Header:')), new RegExp(`family ${s.endsWith('6') ? 'inet6' : 'inet'} .*comment`), `${what}: ${s} has its family and comments`)
  }
}

t.test('ensureBase on a host with its own rules: chains, jumps first, sets; idempotent', async (t) => {
  const ns = await createNetns(t)
  const { fw } = firewallIn(ns)
  await populate(ns)
  const before = await snapshot(ns)
  t.notMatch(before.iptables, /TSNET|DOCKER-USER/, 'nothing of tsnet\'s to begin with')

  await fw.ensureBase(log)
  await assertBase(t, ns, 'first ensureBase')
  for (const tool of TOOLS) {
    t.same(await rulesOf(ns, tool, 'FORWARD'), ['-A FORWARD -j TSNET-FORWARD', '-A FORWARD -j OTHER-FORWARD', '-A FORWARD -i eth9 -o eth9 -j ACCEPT'], `${tool}: FORWARD keeps its rules after the jump`)
    t.same(await rulesOf(ns, tool, DOCKER_USER), [`-A ${DOCKER_USER} -j TSNET-FORWARD`], `${tool}: DOCKER-USER was created for tsnet's jump`)
    t.same(await rulesOf(ns, tool, 'OTHER-FORWARD'), ['-A OTHER-FORWARD -i eth8 -m comment --comment "not tsnet" -j ACCEPT'], `${tool}: another chain is untouched`)
    t.same(await rulesOf(ns, tool, 'PREROUTING', 'nat'), [`-A PREROUTING ${jumps(familyOf(tool))[2]?.rule}`, '-A PREROUTING -p tcp -m tcp --dport 9999 -j OTHER-NAT'], `${tool}: nat PREROUTING keeps its rule after the jump`)
    t.same(await rulesOf(ns, tool, 'PREROUTING', 'raw'), [`-A PREROUTING -j ${CHAIN.raw}`, '-A PREROUTING -i eth9 -p udp -m udp --dport 4789 -j NOTRACK'], `${tool}: raw PREROUTING keeps its rule after the jump`)
    t.match(await savedRules(ns, tool), /^:FORWARD DROP/m, `${tool}: the FORWARD policy is left as it was`)
  }
  t.match(await ns.ok('ipset', ['save', 'other-set']), /add other-set 192\.0\.2\.0\/24 comment "not tsnet"/, 'a set of someone else is untouched')

  const once = await snapshot(ns)
  await fw.ensureBase(log)
  await fw.ensureBase(log)
  t.same(await snapshot(ns), once, 'ensureBase again changes nothing')

  const fresh = firewallIn(ns).fw // a restarted tsnet
  await fresh.ensureBase(log)
  t.same(await snapshot(ns), once, 'nor does it after a restart')
})

t.test('ensureBase puts tsnet\'s jumps first again, once, after something else inserted itself first', async (t) => {
  const ns = await createNetns(t)
  const { fw } = firewallIn(ns)
  await fw.ensureBase(log)
  for (const tool of TOOLS) {
    // What Docker does when it starts after tsnet.
    await ns.ok(tool, ['-w', '10', '-I', 'FORWARD', '1', '-j', DOCKER_USER])
    await ns.ok(tool, ['-w', '10', '-I', DOCKER_USER, '1', '-j', 'RETURN'])
    await ns.ok(tool, ['-w', '10', '-t', 'nat', '-N', 'DOCKER'])
    await ns.ok(tool, ['-w', '10', '-t', 'nat', '-I', 'PREROUTING', '1', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'DOCKER'])
    await ns.ok(tool, ['-w', '10', '-t', 'nat', '-I', 'POSTROUTING', '1', '-s', tool === 'iptables' ? '172.17.0.0/16' : 'fd00:17::/64', '-j', 'MASQUERADE'])
    await ns.ok(tool, ['-w', '10', '-t', 'raw', '-I', 'PREROUTING', '1', '-d', tool === 'iptables' ? '172.17.0.2' : 'fd00:17::2', '!', '-i', 'docker0', '-j', 'DROP'])
    // And a second copy of tsnet's jump further down (e.g. a restored old dump).
    await ns.ok(tool, ['-w', '10', '-A', 'FORWARD', '-j', CHAIN.forward])
    t.equal((await rulesOf(ns, tool, 'FORWARD'))?.[0], `-A FORWARD -j ${DOCKER_USER}`, `${tool}: precondition: Docker's jump is first`)
  }
  await fw.ensureBase(log)
  await assertBase(t, ns, 'after Docker inserted itself')
  for (const tool of TOOLS) {
    t.same(await rulesOf(ns, tool, 'FORWARD'), [`-A FORWARD -j ${CHAIN.forward}`, `-A FORWARD -j ${DOCKER_USER}`], `${tool}: FORWARD: tsnet's jump first, exactly once, Docker's kept`)
    t.same(await rulesOf(ns, tool, DOCKER_USER), [`-A ${DOCKER_USER} -j ${CHAIN.forward}`, `-A ${DOCKER_USER} -j RETURN`], `${tool}: DOCKER-USER: tsnet's jump first, Docker's rule kept`)
    t.same(await rulesOf(ns, tool, 'PREROUTING', 'nat'), [`-A PREROUTING ${jumps(familyOf(tool))[2]?.rule}`, '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER'], `${tool}: nat PREROUTING: tsnet's jump first`)
    t.same(await rulesOf(ns, tool, 'PREROUTING', 'raw'), [`-A PREROUTING -j ${CHAIN.raw}`, `-A PREROUTING -d ${tool === 'iptables' ? '172.17.0.2/32' : 'fd00:17::2/128'} ! -i docker0 -j DROP`], `${tool}: raw PREROUTING: tsnet's jump first, Docker's rule kept`)
    t.equal((await rulesOf(ns, tool, 'POSTROUTING', 'nat'))?.[0], `-A POSTROUTING -j ${CHAIN.postrouting}`, `${tool}: nat POSTROUTING: tsnet's jump first`)
    t.equal((await rulesOf(ns, tool, 'POSTROUTING', 'nat'))?.length, 2, `${tool}: nat POSTROUTING: Docker's rule kept`)
  }
  const once = await snapshot(ns)
  await fw.ensureBase(log)
  t.same(await snapshot(ns), once, 'and a further ensureBase changes nothing')
})

t.test('ensureBase brings tsnet\'s chains back to spec', async (t) => {
  const ns = await createNetns(t)
  const { fw } = firewallIn(ns)
  await fw.ensureBase(log)
  const good = await snapshot(ns)
  for (const tool of TOOLS) {
    await ns.ok(tool, ['-w', '10', '-A', CHAIN.from, '-s', tool === 'iptables' ? '10.0.0.0/8' : 'fd00::/8', '-j', 'ACCEPT'])
    await ns.ok(tool, ['-w', '10', '-D', CHAIN.to, '-m', 'conntrack', '--ctstate', 'DNAT', '-j', 'ACCEPT'])
    await ns.ok(tool, ['-w', '10', '-t', 'nat', '-F', CHAIN.postrouting])
    await ns.ok(tool, ['-w', '10', '-t', 'nat', '-D', 'OUTPUT', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', CHAIN.dnat])
    await ns.ok(tool, ['-w', '10', '-t', 'raw', '-F', CHAIN.raw])
    await ns.ok(tool, ['-w', '10', '-t', 'raw', '-D', 'PREROUTING', '-j', CHAIN.raw])
  }
  await fw.ensureBase(log)
  t.same(await snapshot(ns), good, 'an extra rule, a missing rule, flushed chains and lost jumps are repaired')
})

t.test('ensureBase and removeBase remove the PREROUTING jump of an earlier version (it DNATed 127.0.0.1 from anywhere)', async (t) => {
  const ns = await createNetns(t)
  const { fw } = firewallIn(ns)
  await populate(ns)
  const before = await snapshot(ns)
  const oldJump = (tool: Tool) => ns.ok(tool, ['-w', '10', '-t', 'nat', '-I', 'PREROUTING', '1', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', CHAIN.dnat])
  // The kernel as an earlier tsnet left it: its jump first in nat PREROUTING, no raw chain.
  for (const tool of TOOLS) {
    await ns.ok(tool, ['-w', '10', '-t', 'nat', '-N', CHAIN.dnat])
    await oldJump(tool)
  }
  await fw.ensureBase(log)
  await assertBase(t, ns, 'ensureBase over an earlier version\'s rules')
  for (const tool of TOOLS) {
    t.same(await rulesOf(ns, tool, 'PREROUTING', 'nat'), [`-A PREROUTING ${jumps(familyOf(tool))[2]?.rule}`, '-A PREROUTING -p tcp -m tcp --dport 9999 -j OTHER-NAT'], `${tool}: only the current jump, and the host's rule`)
    await oldJump(tool) // and once more, as if restored from an old dump
  }
  await fw.removeBase(log)
  t.same(await snapshot(ns), before, 'removeBase takes the old jump along, and leaves the rest as it was')
})

t.test('chainsState tells intact, partial and absent as the kernel shows them; without fresh, what this process last made them', async (t) => {
  const ns = await createNetns(t)
  const { fw, runner } = firewallIn(ns)
  t.equal(await fw.chainsState(true), 'absent', 'a fresh namespace: absent')
  await fw.ensureBase(log)
  t.equal(await fw.chainsState(true), 'intact', 'after ensureBase: intact')
  runner.calls.length = 0
  t.equal(await fw.chainsState(false), 'intact', 'from memory: intact')
  t.same(runner.calls, [], 'and without running anything')
  for (const [what, break_, mend] of [
    ['an extra rule in TSNET-FROM', ['-w', '10', '-A', CHAIN.from, '-s', 'fd00::/8', '-j', 'ACCEPT'], ['-w', '10', '-D', CHAIN.from, '-s', 'fd00::/8', '-j', 'ACCEPT']],
    ['a lost jump in FORWARD', ['-w', '10', '-D', 'FORWARD', '-j', CHAIN.forward], ['-w', '10', '-I', 'FORWARD', '1', '-j', CHAIN.forward]],
    ['a flushed raw chain', ['-w', '10', '-t', 'raw', '-F', CHAIN.raw], undefined],
  ] as const) {
    await ns.ok('ip6tables', [...break_])
    t.equal(await fw.chainsState(false), 'intact', `${what}: without fresh, still what this process made (the periodic reconcile reads fresh)`)
    t.equal(await fw.chainsState(true), 'partial', `${what}: fresh: partial`)
    if (mend) await ns.ok('ip6tables', [...mend])
    else await fw.ensureBase(log)
    t.equal(await fw.chainsState(true), 'intact', `${what}: intact again once mended`)
  }
  await fw.removeBase(log)
  t.equal(await fw.chainsState(false), 'absent', 'after removeBase: absent, from memory')
  t.equal(await fw.chainsState(true), 'absent', 'and on the kernel')
})

// ------------------------------------------------------------------ ipset entries

const record = (id: string, bridge: string, v4: string, v6?: string): NetworkRecord => ({
  id, mode: 'bridge', spec: { bridge, bridgeNamedByUser: false }, mtu: 1500, internal: false, ipv6: v6 !== undefined,
  ipv4Subnets: [{ pool: v4 }], ipv6Subnets: v6 ? [{ pool: v6 }] : [],
  enableIpMasquerade: true, enableIcc: true, genericOptions: {}, createdAt: '',
})
const edgeOf = (n: NetworkRecord) => bridgeEdge(n, bridgeOf(n))
const endpointOn = (n: NetworkRecord, id: string, address: string, addressV6?: string): EndpointRecord => ({
  id, networkId: n.id, hostIf: 'x', containerIf: 'y', mac: '02:00:00:00:00:01', macFromDocker: false, mtu: 1500,
  address, ...(addressV6 ? { addressV6 } : {}), portMappings: [], exposedPorts: [], joined: false, createdAt: '',
})
const resolve = (name: string) => (name === 'ui' ? ['10.50.0.0/24', 'fd00:50::/64'] : [])
/** How `ipset save` prints an entry (full-length prefixes as bare addresses, ICMPv6 by its protocol name). */
const printed = (e: SetEntry) => `${e.set} ${e.entry.replace(/\/(32|128)$/, '').replace('icmpv6:', 'ipv6-icmp:')} comment "${e.comment}"`

/**
 * What a request does for one owner's set members, as the engine does it: the keys the owner
 * wanted before and wants now are observed through the firewall driver, diffed, and the
 * difference applied. `wanted` plays the engine's index (a restarted tsnet rebuilds it from its
 * records, so it carries over).
 */
async function syncOwner(driver: FirewallDriver, wanted: Map<string, SetEntry[]>, tag: string, desired: SetEntry[]): Promise<void> {
  const want = new Map<string, HostObject>(desired.map((e) => [`set ${entryKey(e)}`, setEntryObject(e)]))
  const keys = [...new Set([...(wanted.get(tag) ?? []).map((e) => `set ${entryKey(e)}`), ...want.keys()])]
  const observed = new Map((await driver.observe({ keys, allOwned: false, fresh: false })).map((o) => [keyOf(o), o]))
  await driver.apply(diff(keys, want, observed).ops, log)
  wanted.set(tag, desired)
}

t.test('applyEntries adds and removes exactly the members it is given; entries reads them back as they were written', async (t) => {
  const ns = await createNetns(t)
  const { fw, runner } = firewallIn(ns)
  const driver = new FirewallDriver(fw, runner)
  await fw.ensureBase(log)
  const a = record(NET_A, 'tsbr-a', '10.1.0.0/24', 'fd00:1::/64')
  const b = record(NET_B, 'tsbr-b', '10.2.0.0/24')
  const aEp = endpointOn(a, EP1, '10.1.0.2/24', 'fd00:1::2/64')
  const aAllow = allowEntries(edgeOf(a), [aEp], parsePolicy('ui tcp/80; 192.0.2.7 udp/53,icmp; 2001:db8::7 icmp'), resolve)
  const aAll = [...networkEntries(edgeOf(a)), ...aAllow]
  const bAll = networkEntries(edgeOf(b))
  await ns.ok('ipset', ['add', 'tsnet-src4', '192.0.2.0/24,eth0', 'comment', 'someone else'])
  const foreign = 'tsnet-src4 192.0.2.0/24,eth0 comment "someone else"'

  await fw.applyEntries([], aAll, log)
  await fw.applyEntries([], bAll, log)
  t.same(await tsnetMembers(ns), [...aAll, ...bAll].map(printed).concat(foreign).sort(), 'both networks\' entries, and the foreign one')
  t.ok(aAllow.some((e) => e.entry === '10.1.0.2,icmp:echo-request,192.0.2.7/32') && aAllow.some((e) => e.set === 'tsnet-allow6'), 'precondition: /32 sources and IPv6 ICMP are covered')
  const written = new Map([...aAll, ...bAll].map((e) => [entryKey(e), e]))
  const read = await firewallIn(ns).fw.entries(true)
  t.same(new Map([...read].filter(([, e]) => e.comment !== 'someone else')), written, 'a restarted firewall reads every member back in the form tsnet writes it, with its comment')

  const wanted = new Map([[networkTag(NET_A), aAll], [networkTag(NET_B), bAll]])
  runner.calls.length = 0
  await syncOwner(driver, wanted, networkTag(NET_A), aAll)
  t.same(runner.calls, [], 'an unchanged owner needs no command (its members are known since they were written)')

  const restarted = firewallIn(ns)
  const again = new FirewallDriver(restarted.fw, restarted.runner)
  await syncOwner(again, wanted, networkTag(NET_A), aAll)
  t.ok(restarted.runner.calls.some((c) => c[0] === 'ipset' && c[1] === 'save'), 'after a restart, the kernel\'s members are read once')
  t.notOk(restarted.runner.calls.some((c) => c[0] === 'ipset' && c[1] === 'restore'), 'and recognised as the wanted ones (no write)')

  const aLess = aAll.filter((e) => !e.set.startsWith('tsnet-allow'))
  await syncOwner(again, wanted, networkTag(NET_A), aLess)
  t.same(await tsnetMembers(ns), [...aLess, ...bAll].map(printed).concat(foreign).sort(), 'a\'s allow entries went; b\'s and the foreign one stay')

  await syncOwner(again, wanted, networkTag(NET_A), [])
  t.same(await tsnetMembers(ns), [...bAll].map(printed).concat(foreign).sort(), 'a\'s entries are all gone')

  // Network b goes; a now wants one of b's members: it changes hands, comment and all.
  await syncOwner(again, wanted, networkTag(NET_B), bAll.filter((e) => !(e.set === 'tsnet-masq4' && e.entry === '10.2.0.0/24')))
  wanted.set(networkTag(NET_B), bAll)
  await syncOwner(again, wanted, networkTag(NET_A), [{ set: 'tsnet-masq4', entry: '10.2.0.0/24', comment: networkTag(NET_A) }])
  t.ok((await tsnetMembers(ns)).includes(`tsnet-masq4 10.2.0.0/24 comment "${networkTag(NET_A)}"`), 'a member taken over by another owner carries the new comment')
  t.equal((await tsnetMembers(ns)).filter((l) => l.startsWith('tsnet-masq4 10.2.0.0/24 ')).length, 1, 'once')

  await restarted.fw.applyEntries(bAll.filter((e) => e.set !== 'tsnet-masq4'), [], log)
  t.same(await tsnetMembers(ns), [`tsnet-masq4 10.2.0.0/24 comment "${networkTag(NET_A)}"`, foreign].sort(), 'applyEntries deletes exactly what it is given')
})

t.test('concurrent changes of several networks\' members all land', async (t) => {
  const ns = await createNetns(t)
  const { fw } = firewallIn(ns)
  const nets = [1, 2, 3, 4, 5].map((i) => record(`c${i}`.repeat(32), `tsbr-c${i}`, `10.3${i}.0.0/24`))
  await Promise.all([fw.ensureBase(log), ...nets.map((n) => fw.applyEntries([], networkEntries(edgeOf(n)), log))])
  t.same(await tsnetMembers(ns), nets.flatMap((n) => networkEntries(edgeOf(n))).map(printed).sort())
  t.same(new Set((await fw.entries(false)).keys()), new Set(nets.flatMap((n) => networkEntries(edgeOf(n))).map(entryKey)), 'and the firewall\'s copy holds them all')
})

t.test('entries and rules with characters tsnet never writes are refused before any command', async (t) => {
  const ns = await createNetns(t)
  const { fw, runner } = firewallIn(ns)
  const bad: Array<[string, () => Promise<unknown>]> = [
    ['a newline in an entry', async () => fw.applyEntries([], [{ set: 'tsnet-masq4', entry: '10.0.0.0/8\nflush', comment: 'tsnet:x' }], log)],
    ['a newline in an entry to delete', async () => fw.applyEntries([{ set: 'tsnet-masq4', entry: '10.0.0.0/8\nflush', comment: 'tsnet:x' }], [], log)],
    ['a set that is not tsnet\'s', async () => fw.applyEntries([], [{ set: 'other-set', entry: '10.0.0.0/8', comment: 'tsnet:x' }], log)],
    ['a quote in a comment', async () => fw.applyEntries([], [{ set: 'tsnet-masq4', entry: '10.0.0.0/8', comment: 'x" -j ACCEPT' }], log)],
    ['a newline in a DNAT rule', async () => fw.applyDnat([], [{ family: 4, rule: '-p tcp --dport 1 -j DNAT --to-destination 10.0.0.2:1\n-A FORWARD -j ACCEPT' }], log)],
    ['a newline in a DNAT rule to delete', async () => fw.applyDnat([{ family: 4, rule: '-p tcp --dport 1 -j DNAT --to-destination 10.0.0.2:1\n-F FORWARD' }], [], log)],
  ]
  for (const [what, call] of bad) {
    runner.calls.length = 0
    const err = await rejection(call())
    t.ok(err instanceof TsnetError && err.kind === 'invalid', `${what}: refused as invalid (${String(err)})`)
    t.same(runner.calls, [], `${what}: no command ran`)
  }
})

// ------------------------------------------------------------------ DNAT rules

const published = (hostPort: number, containerIp: string, more: Partial<PublishedPort> = {}): PublishedPort =>
  ({ family: 4, proto: 'tcp', hostIp: '', hostPort, containerIp, containerPort: 80, ...more })
const dnatObject = (r: { family: Family; rule: string }): DnatObject => ({ kind: 'dnat', ...r })

t.test('applyDnat adds and deletes exactly the rules given; they read back as written, so the diff finds nothing to do', async (t) => {
  const ns = await createNetns(t)
  const { fw } = firewallIn(ns)
  await fw.ensureBase(log)
  const ep1 = [
    { family: 4 as const, rule: dnatRule(EP1, published(8080, '10.1.0.2')) },
    { family: 4 as const, rule: dnatRule(EP1, published(8443, '10.1.0.2', { hostIp: '127.0.0.1', containerPort: 443 })) },
    { family: 6 as const, rule: dnatRule(EP1, published(8080, 'fd00:1::2', { family: 6 })) },
  ]
  const ep2 = [{ family: 4 as const, rule: dnatRule(EP2, published(5353, '10.1.0.3', { proto: 'udp', containerPort: 53 })) }]
  for (const tool of TOOLS) await ns.ok(tool, ['-w', '10', '-t', 'nat', '-A', CHAIN.dnat, '-p', 'tcp', '--dport', '1', '-j', 'RETURN']) // no comment: not an endpoint's

  await fw.applyDnat([], ep1, log)
  await fw.applyDnat([], ep2, log)
  const dnat = async (tool: Tool) => (await rulesOf(ns, tool, CHAIN.dnat, 'nat')) ?? []
  const want = (f: Family, rules: Array<{ family: Family; rule: string }>) => rules.filter((r) => r.family === f).map((r) => `-A ${CHAIN.dnat} ${r.rule}`)
  const other = `-A ${CHAIN.dnat} -p tcp -m tcp --dport 1 -j RETURN`
  t.same(await dnat('iptables'), [other, ...want(4, ep1), ...want(4, ep2)], 'iptables: each rule once, in TSNET-DNAT')
  t.same(await dnat('ip6tables'), [other, ...want(6, ep1)], 'ip6tables: the IPv6 rule once')
  t.match((await dnat('iptables'))[1], /^-A TSNET-DNAT -p tcp -m tcp --dport 8080 -m comment --comment "?tsnet:ep:e1e1e1e1e1e1"? -j DNAT --to-destination 10\.1\.0\.2:80$/, 'the rule as the kernel shows it')

  // A restarted tsnet reads every rule back exactly as dnatRule wrote it: nothing to change.
  const restarted = firewallIn(ns)
  const readBack = await restarted.fw.dnatRules(true)
  t.same(readBack.filter((r) => r.rule.includes('tsnet:ep:')), [...ep1.filter((r) => r.family === 4), ...ep2, ...ep1.filter((r) => r.family === 6)], 'dnatRules reads back the bodies tsnet wrote, per family')
  const driver = new FirewallDriver(restarted.fw, restarted.runner)
  const wanted = new Map([...ep1, ...ep2].map((r) => [keyOf(dnatObject(r)), dnatObject(r)]))
  const observed = new Map((await driver.observe({ keys: [...wanted.keys()], allOwned: false, fresh: true })).map((o) => [keyOf(o), o]))
  t.same(diff(wanted.keys(), wanted, observed).ops, [], 'the diff of the wanted rules against the kernel is empty')
  restarted.runner.calls.length = 0
  await driver.apply(diff(wanted.keys(), wanted, observed).ops, log)
  t.same(restarted.runner.calls, [], 'so a repeated change runs nothing')

  await fw.applyDnat(ep1, [], log)
  t.same(await dnat('iptables'), [other, ...want(4, ep2)], 'iptables: only EP2\'s and the untagged rule are left')
  t.same(await dnat('ip6tables'), [other], 'ip6tables: only the untagged rule is left')
  const gone = new Map((await driver.observe({ keys: ep1.map((r) => keyOf(dnatObject(r))), allOwned: false, fresh: true })).map((o) => [keyOf(o), o]))
  t.same(diff(ep1.map((r) => keyOf(dnatObject(r))), new Map(), gone).ops, [], 'removing them again finds nothing to remove')
  await fw.applyDnat(ep2, [], log)
  t.same(await dnat('iptables'), [other], 'deleting every tagged rule leaves the rule without a tag')
})

// ------------------------------------------------------------------ removeBase

t.test('removeBase leaves nothing of tsnet\'s and everything else as it was', async (t) => {
  const ns = await createNetns(t)
  const { fw } = firewallIn(ns)
  await populate(ns)
  const before = await snapshot(ns)
  await fw.ensureBase(log)
  await fw.applyEntries([], networkEntries(edgeOf(record(NET_A, 'tsbr-a', '10.1.0.0/24', 'fd00:1::/64'))), log)
  await fw.applyDnat([], [{ family: 4, rule: dnatRule(EP1, published(8080, '10.1.0.2')) }, { family: 6, rule: dnatRule(EP1, published(8080, 'fd00:1::2', { family: 6 })) }], log)

  await fw.removeBase(log)
  const after = await snapshot(ns)
  for (const tool of TOOLS) {
    t.notMatch(after[tool], /TSNET|DOCKER-USER/, `${tool}: no chain, jump or rule of tsnet's (DOCKER-USER was tsnet's, empty and unused)`)
  }
  t.same(await tsnetSets(ns), [], 'no tsnet ipset')
  t.same(after, before, 'rules, chains, policies and sets that are not tsnet\'s are exactly as before')
  t.same([...(await fw.entries(false)).keys()], [], 'the firewall\'s copy of the members is empty')
  t.same(await fw.dnatRules(false), [], 'and of the DNAT rules')

  await fw.removeBase(log)
  t.same(await snapshot(ns), before, 'removeBase with nothing to remove is a no-op')

  await fw.ensureBase(log)
  await assertBase(t, ns, 'ensureBase after removeBase')
  await fw.applyEntries([], networkEntries(edgeOf(record(NET_B, 'tsbr-b', '10.2.0.0/24'))), log)
  t.same(await tsnetMembers(ns), networkEntries(edgeOf(record(NET_B, 'tsbr-b', '10.2.0.0/24'))).map(printed).sort(), 'entries can be added again (no stale view of the destroyed sets)')
})

t.test('removeBase keeps a DOCKER-USER chain that Docker uses', async (t) => {
  const ns = await createNetns(t)
  const { fw } = firewallIn(ns)
  await populate(ns)
  for (const tool of TOOLS) {
    await ns.ok(tool, ['-w', '10', '-N', DOCKER_USER])
    await ns.ok(tool, ['-w', '10', '-A', DOCKER_USER, '-j', 'RETURN'])
    await ns.ok(tool, ['-w', '10', '-I', 'FORWARD', '1', '-j', DOCKER_USER])
  }
  const before = await snapshot(ns)
  await fw.ensureBase(log)
  for (const tool of TOOLS) t.same(await rulesOf(ns, tool, DOCKER_USER), [`-A ${DOCKER_USER} -j ${CHAIN.forward}`, `-A ${DOCKER_USER} -j RETURN`], `${tool}: tsnet's jump first in Docker's chain`)
  await fw.removeBase(log)
  t.same(await snapshot(ns), before, 'Docker\'s chain, its rule and its jump are exactly as before')

  // DOCKER-USER empty but still jumped to from FORWARD: it stays too.
  for (const tool of TOOLS) await ns.ok(tool, ['-w', '10', '-D', DOCKER_USER, '-j', 'RETURN'])
  const emptyButUsed = await snapshot(ns)
  await fw.ensureBase(log)
  await fw.removeBase(log)
  t.same(await snapshot(ns), emptyButUsed, 'an empty DOCKER-USER that FORWARD jumps to stays')
})
