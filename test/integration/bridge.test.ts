// Bridges as host objects against a real kernel, inside private network namespaces: the real host
// layer (the link driver over rtnetlink, run in the namespace by lib/remote-host.ts) under the
// engine, as a CreateNetwork drives it. Created to spec (alias, MTU, MAC, device group, gateway
// addresses with IPv6 DAD off), observed as `ip -d link show` / `ip addr` show it, a repeated
// change changes nothing, updated in place (MTU, group, up), the MTU kept after the last port went,
// deleted with its addresses; an untagged link under a tsnet name taken over, a link of another
// owner refused with the sentence and left untouched; a failing change rolled back so that the
// namespace is exactly as before.
import t, { type Test } from 'tap'
import { TsnetError } from '../../src/errors.js'
import { GROUP } from '../../src/core/edge-plan.js'
import { macFromSeed, networkAlias } from '../../src/core/names.js'
import type { HostObject } from '../../src/core/objects.js'
import { addrObject, bridgeObject, keysOf, matchesIp, Owners } from './lib/link-objects.js'
import { ipAddrs, ipLink } from './lib/ip-json.js'
import { addPlainDevice, createNetns, deviceGroup, globalCidrs, link, nsState, rejection, type Netns } from './lib/netns.js'
import { hostIn } from './lib/remote-host.js'

const NET_ID = 'a1'.repeat(32)
const OWNER = `net:${NET_ID}`
const DOING = `creating network ${NET_ID.slice(0, 12)}`
const bridge = (name = 'tsbr-it1', over: Partial<Parameters<typeof bridgeObject>[1]> = {}) =>
  bridgeObject(name, { alias: networkAlias(NET_ID), mtu: 1400, mac: macFromSeed(NET_ID), group: GROUP.base, ...over })
const network = (name = 'tsbr-it1', over: Partial<Parameters<typeof bridgeObject>[1]> = {}, addresses = ['10.77.0.1/24', 'fd77::1/64']): HostObject[] =>
  [bridge(name, over), ...addresses.map((a) => addrObject(name, a))]

async function setup(t: Test) {
  const ns = await createNetns(t)
  const host = hostIn(t, ns)
  return { ns, host, owners: new Owners(host) }
}

t.test('a bridge is created to spec, observed as ip shows it, and a repeated change changes nothing', async (t) => {
  const { ns, host, owners } = await setup(t)
  const objs = network()
  await owners.set(OWNER, objs, DOING)

  const br = await link(ns, 'tsbr-it1')
  t.equal(br?.linkinfo?.info_kind, 'bridge', 'it is a bridge')
  t.equal(br?.ifalias, networkAlias(NET_ID), 'the alias marks it as the network\'s')
  t.equal(br?.mtu, 1400, 'MTU')
  t.equal(br?.address, macFromSeed(NET_ID), 'MAC')
  t.ok(br?.flags.includes('UP'), 'administratively up')
  t.equal(deviceGroup(br), GROUP.base, 'tsnet\'s device group')
  t.same(await globalCidrs(ns, 'tsbr-it1'), ['10.77.0.1/24', 'fd77::1/64'], 'IPv4 and IPv6 gateway addresses')
  const v6 = (await ipAddrs(ns, 'tsbr-it1')).find((a) => a.local === 'fd77::1')
  t.ok(v6?.nodad, 'the IPv6 gateway carries nodad')
  t.notOk(v6?.tentative, 'so it is usable at once (not tentative)')

  const seen = await host.observe({ keys: keysOf(objs) })
  t.same(seen.get('link tsbr-it1'), {
    kind: 'link', name: 'tsbr-it1', type: 'bridge', alias: networkAlias(NET_ID), mtu: 1400, up: true, recreate: false, group: GROUP.base, mac: macFromSeed(NET_ID),
  }, 'the link driver reads the bridge back')
  t.same([...seen.keys()].sort(), keysOf(objs).sort(), 'and both addresses, under the keys they were made with')
  await matchesIp(t, ns, seen, 'after creation')

  const before = await nsState(ns)
  await host.resetCounters()
  await owners.set(OWNER, objs, DOING, true)
  await owners.set(OWNER, objs, DOING, true)
  const c = await host.counters()
  t.equal(c.netlinkChanges, 0, `repeating the change (every key observed again) sends no change to the kernel (${c.netlinkReads} reads)`)
  t.same(c.commands, [], 'and spawns nothing')
  t.same(await nsState(ns), before, 'the namespace is as it was')
  t.equal((await ipAddrs(ns, 'tsbr-it1')).filter((a) => a.local === '10.77.0.1').length, 1, 'no duplicate IPv4 address')
  t.same((await owners.dryRun()).changes, [], 'a reconcile right after plans nothing')
})

t.test('a bridge is updated in place: MTU, device group, a lost group, a downed bridge; its MTU stays when the last port goes', async (t) => {
  const { ns, owners } = await setup(t)
  await owners.set(OWNER, network(), DOING)
  const index = (await ipLink(ns, 'tsbr-it1'))?.ifindex

  await owners.set(OWNER, network('tsbr-it1', { mtu: 1300 }), 'changing the MTU')
  const br = await link(ns, 'tsbr-it1')
  t.equal(br?.mtu, 1300, 'a changed MTU is applied')
  t.equal(br?.ifalias, networkAlias(NET_ID), 'alias kept')
  t.equal(br?.address, macFromSeed(NET_ID), 'MAC kept')
  t.same(await globalCidrs(ns, 'tsbr-it1'), ['10.77.0.1/24', 'fd77::1/64'], 'addresses kept, not duplicated')
  t.equal((await ipLink(ns, 'tsbr-it1'))?.ifindex, index, 'the same link, changed in place')

  const iccOff = network('tsbr-it1', { mtu: 1300, group: GROUP.base | GROUP.iccOff | GROUP.internal })
  await owners.set(OWNER, iccOff, 'changing the group')
  t.equal(deviceGroup(await link(ns, 'tsbr-it1')), GROUP.base | GROUP.iccOff | GROUP.internal, 'a changed device group is applied to the existing bridge')

  await ns.ok('ip', ['link', 'set', 'dev', 'tsbr-it1', 'group', 'default'])
  await ns.ok('ip', ['link', 'set', 'dev', 'tsbr-it1', 'down'])
  const repair = await owners.reconcile()
  // Taking a link down flushes its IPv6 addresses (keep_addr_on_down is 0): the gateway comes back too.
  t.same(repair.changes.sort(), ['create addr tsbr-it1 fd77::1/64', 'update link tsbr-it1'], 'the reconcile finds the bridge changed behind tsnet\'s back')
  t.same(repair.failed, [], 'and repairs it')
  t.equal(deviceGroup(await link(ns, 'tsbr-it1')), GROUP.base | GROUP.iccOff | GROUP.internal, 'a bridge of ours that lost its group gets it back')
  t.ok((await link(ns, 'tsbr-it1'))?.flags.includes('UP'), 'a downed bridge of ours is brought back up')
  t.same(await globalCidrs(ns, 'tsbr-it1'), ['10.77.0.1/24', 'fd77::1/64'], 'with the IPv6 gateway the kernel dropped when it went down')

  // The kernel forgets an MTU given at creation when the last port goes; tsnet's survives.
  for (const [name, make] of [['tsbr-it1', undefined], ['ctl0', async () => { await ns.ok('ip', ['link', 'add', 'name', 'ctl0', 'mtu', '1300', 'type', 'bridge']) }]] as const) {
    if (make) await make()
    await ns.ok('ip', ['link', 'add', 'name', `${name.slice(0, 6)}p`, 'mtu', '1500', 'master', name, 'type', 'veth', 'peer', 'name', `${name.slice(0, 6)}c`])
    await ns.ok('ip', ['link', 'del', 'dev', `${name.slice(0, 6)}p`])
  }
  t.equal((await link(ns, 'tsbr-it1'))?.mtu, 1300, 'tsnet\'s bridge keeps its MTU after a port came and went')
  t.equal((await link(ns, 'ctl0'))?.mtu, 1500, 'control: a bridge given its MTU only at creation (ip link add ... mtu 1300) falls back to 1500')
  await ns.ok('ip', ['link', 'del', 'dev', 'ctl0'])
  t.same((await owners.dryRun()).changes, [], 'a reconcile plans nothing')
})

t.test('removing the network deletes the bridge with its addresses; a bridge already gone is no error', async (t) => {
  const { ns, owners } = await setup(t)
  const empty = await nsState(ns)
  await owners.set(OWNER, network(), DOING)
  await owners.set(OWNER, undefined, 'deleting the network')
  t.equal(await link(ns, 'tsbr-it1'), undefined, 'the bridge is gone')
  t.same(await nsState(ns), empty, 'the namespace is as before the network')

  await owners.set(OWNER, network(), DOING)
  await ns.ok('ip', ['link', 'del', 'dev', 'tsbr-it1'])
  await owners.set(OWNER, undefined, 'deleting the network')
  t.same(await nsState(ns), empty, 'deleting a network whose bridge someone else deleted succeeds and changes nothing')
})

t.test('an untagged link under a tsnet name is taken over; a link of another owner is refused with the sentence and left untouched', async (t) => {
  const { ns, owners } = await setup(t)
  const name = 'tsbr-it2'
  const make = (step: string[] | 'plain') => (step === 'plain' ? addPlainDevice(ns, name) : ns.ok('ip', step))

  // A crash between creating the link and tagging it (two requests) leaves exactly this.
  await make(['link', 'add', 'name', name, 'mtu', '1500', 'type', 'bridge'])
  const index = (await ipLink(ns, name))?.ifindex
  await owners.set(OWNER, network(name), DOING)
  const took = await link(ns, name)
  t.equal((await ipLink(ns, name))?.ifindex, index, 'an untagged bridge named tsbr-… is taken over in place')
  t.match({ alias: took?.ifalias, mtu: took?.mtu, mac: took?.address, up: took?.flags.includes('UP'), group: deviceGroup(took) },
    { alias: networkAlias(NET_ID), mtu: 1400, mac: macFromSeed(NET_ID), up: true, group: GROUP.base }, 'and brought to spec')
  t.same(await globalCidrs(ns, name), ['10.77.0.1/24', 'fd77::1/64'], 'with its gateways')
  await owners.set(OWNER, undefined, 'deleting the network')

  const kindOf = async () => (await link(ns, name))?.linkinfo?.info_kind
  for (const [what, steps] of [['an untagged plain device', ['plain']], ['a plain device carrying the network\'s alias', ['plain', ['link', 'set', 'dev', name, 'alias', networkAlias(NET_ID)]]]] as const) {
    for (const step of steps) await make(step as string[] | 'plain')
    t.not(await kindOf(), 'bridge', `${what}: precondition: not a bridge`)
    await owners.set(OWNER, network(name), DOING)
    t.equal(await kindOf(), 'bridge', `${what} under a tsnet name is tsnet's: it is replaced by the bridge`)
    await owners.set(OWNER, undefined, 'deleting the network')
  }

  const other = networkAlias('b2'.repeat(32))
  // `orphan`: the link carries a tsnet tag no record wants, so a reconcile would delete it (and only that).
  const refusals: Array<{ what: string; name: string; setup: Array<string[] | 'plain'>; sentence: string; orphan?: boolean }> = [
    {
      what: 'a bridge with a foreign alias', name,
      setup: [['link', 'add', 'name', name, 'type', 'bridge'], ['link', 'set', 'dev', name, 'alias', 'someone-else']],
      sentence: `${DOING}: a link named ${name} already exists and is not tsnet's (it belongs to someone-else)`,
    },
    {
      what: 'a bridge of another tsnet network', name,
      setup: [['link', 'add', 'name', name, 'type', 'bridge'], ['link', 'set', 'dev', name, 'alias', other]],
      sentence: `${DOING}: a link named ${name} already exists and belongs to another tsnet object (${other})`,
      orphan: true,
    },
    {
      what: 'an untagged bridge under a name that is not tsnet\'s (-o com.docker.network.bridge.name=br-user1)', name: 'br-user1',
      setup: [['link', 'add', 'name', 'br-user1', 'type', 'bridge']],
      sentence: `${DOING}: a link named br-user1 already exists and is not tsnet's (it has no tsnet tag)`,
    },
  ]
  for (const c of refusals) {
    for (const step of c.setup) await (step === 'plain' ? addPlainDevice(ns, c.name) : ns.ok('ip', step))
    const before = await nsState(ns)
    const err = await rejection(owners.set(OWNER, network(c.name), DOING))
    t.ok(err instanceof TsnetError, `${c.what}: refused with a TsnetError`)
    t.equal((err as TsnetError | undefined)?.kind, 'conflict', `${c.what}: kind conflict`)
    t.equal((err as Error | undefined)?.message, c.sentence, `${c.what}: the sentence names the link and its owner`)
    t.same(await nsState(ns), before, `${c.what}: the namespace is unchanged (no address, MTU, alias, group or state touched)`)
    t.notOk((await link(ns, c.name))?.flags.includes('UP'), `${c.what}: still down`)
    t.same((await owners.dryRun()).changes, c.orphan ? [`delete link ${c.name}`] : [], `${c.what}: nothing of the refused change was committed (a reconcile plans ${c.orphan ? 'only to remove the orphan' : 'nothing'})`)
    await ns.ok('ip', ['link', 'del', 'dev', c.name])
  }
})

async function failsRolledBack(t: Test, ns: Netns, owners: Owners, objs: HostObject[], what: string, kind?: string) {
  const before = await nsState(ns)
  const err = await rejection(owners.set(OWNER, objs, DOING))
  t.ok(err instanceof TsnetError, `${what}: refused with a TsnetError (${String((err as Error | undefined)?.message)})`)
  if (kind) t.equal((err as TsnetError | undefined)?.kind, kind, `${what}: kind ${kind}`)
  t.match((err as Error | undefined)?.message ?? '', new RegExp(`^${DOING} \\(rolled back: the host is as it was\\): `), `${what}: the message says it was rolled back`)
  t.same(await nsState(ns), before, `${what}: the namespace is exactly as before`)
  t.same((await owners.dryRun()).changes, [], `${what}: nothing was committed (a reconcile plans nothing)`)
}

t.test('a failing change rolls back the bridge it created: the namespace is exactly as before', async (t) => {
  const { ns, owners } = await setup(t)
  // The kernel refuses a multicast IPv6 address on an interface (EADDRNOTAVAIL), after the bridge was made.
  await failsRolledBack(t, ns, owners, network('tsbr-rb1', {}, ['10.78.0.1/24', 'ff02::5/64']), 'an address the kernel refuses')
  t.equal(await link(ns, 'tsbr-rb1'), undefined, 'the bridge is gone')
  await failsRolledBack(t, ns, owners, network('tsbr-rb2', {}, ['10.78.0.1/33']), 'an address that is no CIDR', 'invalid')
  t.equal(await link(ns, 'tsbr-rb2'), undefined, 'the bridge is gone')
  // A multicast MAC is a string like any other; the kernel refuses it. Whatever layer refuses it, nothing may remain.
  await failsRolledBack(t, ns, owners, network('tsbr-rb3', { mac: '01:00:5e:00:00:01' }), 'a multicast MAC')
  await failsRolledBack(t, ns, owners, network('tsbr-rb4', { mac: '00:00:00:00:00:00' }), 'an all-zero MAC')
})

t.test('a failing change on an existing bridge of ours leaves the bridge as it was', async (t) => {
  const { ns, owners } = await setup(t)
  await owners.set(OWNER, network(), DOING)
  await failsRolledBack(t, ns, owners, network('tsbr-it1', { mtu: 1280 }, ['10.77.0.1/24', 'fd77::1/64', 'ff02::6/64']), 'a new address the kernel refuses, with a new MTU')
  const br = await link(ns, 'tsbr-it1')
  t.equal(br?.ifalias, networkAlias(NET_ID), 'the bridge is still there and ours')
  t.equal(br?.mtu, 1400, 'its MTU was put back')
  t.same(await globalCidrs(ns, 'tsbr-it1'), ['10.77.0.1/24', 'fd77::1/64'], 'its addresses are still there')
})
