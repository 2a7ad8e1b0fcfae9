// tsnet.allow policies as serve builds them (openServices + boot) over FakeHost and a FileStore:
// at CreateNetwork and CreateEndpoint, `tsnet policy set` (services/policy-service), Docker's names
// that change (services/docker-names → namesChanged), and the size cap at every door.
import t from 'tap'
import { FOREIGN_TAG, entryKey } from '../../src/core/edge-plan.js'
import { COMMON_OPTION } from '../../src/core/docker-keys.js'
import { networkTag } from '../../src/core/names.js'
import type { NamedNetwork } from '../../src/docker/docker-view.js'
import type { FakeHost } from '../../src/host/fake-host.js'
import { OPT } from '../../src/protocol/types.js'
import { attach, epReq, netReq, openUnit } from './fixtures/services.js'
import { dockerId, log } from './fixtures/util.js'

const NET = dockerId('0a')
const NET2 = dockerId('0b')
const EP = dockerId('e1')
const EP2 = dockerId('e2')
const EP3 = dockerId('e3')
const ALLOW = COMMON_OPTION.allow

const allowOf = (host: FakeHost, id: string) => [...host.sets.values()].filter((e) => e.comment === networkTag(id) && e.set.startsWith('tsnet-allow')).map(entryKey).sort()
/** Docker's networks as its API lists them: tsnet's, other drivers', and Docker's own bridges. */
const named = (name: string, id: string, subnets: string[], driver = 'overlay'): NamedNetwork => ({ id, name, driver, subnets })
const UI = named('ui', dockerId('a1'), ['10.50.0.0/24', 'fd00:50::/64'])

t.test('tsnet.allow at create: entries for each endpoint address × port × resolved source', async (t) => {
  const u = await openUnit(t)
  const { services: { driver, names }, host } = u
  await names.update([UI])
  await driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [ALLOW]: 'ui tcp/8080 ;10.99.0.0/16 udp/53,icmp' }), log)
  t.equal((await u.storedNetwork(NET)).policy, 'ui tcp/8080; 10.99.0.0/16 udp/53,icmp', 'the policy is stored in canonical form')
  t.same(allowOf(host, NET), [], 'no endpoint yet: nothing to allow')
  await attach(u, NET, EP, '172.18.0.2/16')
  await attach(u, NET, EP2, '172.18.0.3/16')
  const entries = (ip: string) => [`tsnet-allow4 ${ip},tcp:8080,10.50.0.0/24`, `tsnet-allow4 ${ip},udp:53,10.99.0.0/16`, `tsnet-allow4 ${ip},icmp:echo-request,10.99.0.0/16`]
  t.same(allowOf(host, NET), [...entries('172.18.0.2'), ...entries('172.18.0.3')].sort(), 'IPv4 containers get IPv4 sources only')
  t.same((await u.dryRun()).changes, [], 'a reconcile after CreateEndpoint on a policy network plans nothing')
  await driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP2 }, log)
  t.same(allowOf(host, NET), entries('172.18.0.2').sort(), 'a deleted endpoint takes its entries along')

  await driver.createNetwork(netReq(NET2, '10.1.0.0/24', '10.1.0.1/24', { [ALLOW]: 'ui tcp/80-81' }, {}, { pool: 'fd00:1::/64', gw: 'fd00:1::1/64' }), log)
  await attach(u, NET2, EP3, '10.1.0.2/24', [], 'fd00:1::2/64')
  t.same(allowOf(host, NET2), [
    'tsnet-allow4 10.1.0.2,tcp:80,10.50.0.0/24', 'tsnet-allow4 10.1.0.2,tcp:81,10.50.0.0/24',
    'tsnet-allow6 fd00:1::2,tcp:80,fd00:50::/64', 'tsnet-allow6 fd00:1::2,tcp:81,fd00:50::/64',
  ], 'a dual-stack container: each family with its sources, each port of the range')
  t.same(allowOf(host, NET), entries('172.18.0.2').sort(), 'the other network\'s entries are untouched')
  await driver.deleteNetwork({ NetworkID: NET2 }, log)
  t.same(allowOf(host, NET2), [], 'DeleteNetwork removes the policy entries')
  t.same((await u.dryRun()).changes, [])
})

t.test('a host failure while adding an endpoint\'s policy entries is rolled back', async (t) => {
  const u = await openUnit(t)
  await u.services.names.update([UI])
  await u.services.driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [ALLOW]: 'ui tcp/8080' }), log)
  const hostBefore = u.host.state()
  const storeBefore = await u.storeState()
  u.host.failNext.add('setEntry:create')
  await t.rejects(u.services.driver.createEndpoint(epReq(NET, EP), log),
    { name: 'TsnetError', kind: 'host', message: 'creating endpoint e10123456789 (rolled back: the host is as it was): injected failure in setEntry:create' })
  t.equal(u.host.state(), hostBefore, 'no veth, no entry')
  t.equal(await u.storeState(), storeBefore)
})

t.test('setPolicy by name or ID prefix changes the entries and the store', async (t) => {
  const u = await openUnit(t)
  const { services: { driver, policy, names }, host } = u
  await names.update([UI, named('web', NET, ['172.18.0.0/16'], 'tsnet'), named('quiet', NET2, ['10.1.0.0/24'], 'tsnet')])
  await driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [ALLOW]: 'ui tcp/8080' }), log)
  await driver.createNetwork(netReq(NET2, '10.1.0.0/24', '10.1.0.1/24', {}, { [OPT.internal]: true }), log)
  await attach(u, NET, EP, '172.18.0.2/16')
  t.same(allowOf(host, NET), ['tsnet-allow4 172.18.0.2,tcp:8080,10.50.0.0/24'])
  // setPolicy validates before it queues on the network's lock, so a refusal may be thrown rather than returned.
  const setPolicy = async (ref: string, text: string) => policy.setPolicy(ref, text, log)

  const shown = await setPolicy('web', 'ui tcp/443,tcp/8443')
  t.same(shown, { network: NET, name: 'web', internal: false, allow: 'ui tcp/443,tcp/8443', resolved: { ui: ['10.50.0.0/24', 'fd00:50::/64'] } }, 'answers the new policy with its resolved names')
  t.same(allowOf(host, NET), ['tsnet-allow4 172.18.0.2,tcp:443,10.50.0.0/24', 'tsnet-allow4 172.18.0.2,tcp:8443,10.50.0.0/24'], 'the old entries went, the new ones are in')
  t.equal((await u.storedNetwork(NET)).policy, 'ui tcp/443,tcp/8443', 'persisted')
  t.same((await u.dryRun()).changes, [], 'a reconcile after `tsnet policy set` plans nothing')
  const calls = host.calls.length
  await setPolicy('web', 'ui tcp/443,tcp/8443')
  t.same(host.changesSince(calls), [], 'setting the same policy again applies nothing')

  await setPolicy(NET.slice(0, 6), '192.0.2.7 udp/53')
  t.same(allowOf(host, NET), ['tsnet-allow4 172.18.0.2,udp:53,192.0.2.7/32'], 'by ID prefix; a single address is a /32')

  const hostBefore = host.state()
  const storeBefore = await u.storeState()
  await t.rejects(setPolicy('web', 'ui tcp/99999'), { name: 'TsnetError', kind: 'invalid', message: /port 99999 in "tcp\/99999" is out of range/ })
  await t.rejects(setPolicy('web', 'ui'), { name: 'TsnetError', kind: 'invalid', message: /a rule is SOURCES PORTS/ })
  await t.rejects(setPolicy('web', 'ui gre/1'), { name: 'TsnetError', kind: 'invalid', message: /"gre\/1" is not a port/ })
  await t.rejects(setPolicy(NET2, 'ui tcp/80'), { name: 'TsnetError', kind: 'invalid', message: /is internal: it accepts no traffic from other networks/ })
  await t.rejects(setPolicy('0', 'ui tcp/80'), { name: 'TsnetError', kind: 'invalid', message: /"0" matches 2 tsnet networks/ })
  await t.rejects(setPolicy('nosuch', 'ui tcp/80'), { name: 'TsnetError', kind: 'notfound', message: /no tsnet network is called "nosuch"/ })
  await t.rejects(setPolicy('ui', 'ui tcp/80'), { name: 'TsnetError', kind: 'notfound' }, 'a Docker network that is not tsnet\'s')
  t.equal(host.state(), hostBefore, 'refusals change no entry')
  t.equal(await u.storeState(), storeBefore, 'and no record')

  host.failNext.add('setEntry:create')
  await t.rejects(setPolicy('web', 'ui tcp/22'), { name: 'TsnetError', kind: 'host', message: 'changing the policy of network web (rolled back: the host is as it was): injected failure in setEntry:create' })
  t.equal(host.state(), hostBefore, 'a host failure restores the old entries')
  t.equal(await u.storeState(), storeBefore)
  u.failNextPut()
  await t.rejects(setPolicy('web', 'ui tcp/22'), { name: 'TsnetError', kind: 'host', message: /^changing the policy of network web \(rolled back: the host is as it was\): disk full/ })
  t.equal(host.state(), hostBefore, 'so does a store failure')
  t.equal(await u.storeState(), storeBefore)

  await setPolicy('web', '')
  t.same(allowOf(host, NET), [], 'the empty policy removes every allow entry')
  t.notOk('policy' in (await u.storedNetwork(NET)), 'and the stored policy')
  t.same(policy.policies('web'), [{ network: NET, name: 'web', internal: false, allow: '', resolved: {} }])
  await setPolicy('web', 'ui tcp/443')
  const again = await u.restart()
  t.equal(again.services.policy.policies(NET)[0]?.allow, 'ui tcp/443', 'a restarted service knows it')
  t.same(allowOf(host, NET), ['tsnet-allow4 172.18.0.2,tcp:443,10.50.0.0/24'], 'and its entries, with the names as last seen')
})

t.test('Docker\'s names that change re-resolve the names policies use, and Docker\'s own subnets', async (t) => {
  const u = await openUnit(t)
  const { services: { driver, names }, host } = u
  await names.update([named('nothing', dockerId('99'), ['10.200.0.0/24'])])
  t.equal(host.sets.size, 0, 'no network: nothing to do')
  await driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [ALLOW]: 'db tcp/5432; 10.99.0.0/16 tcp/22' }), log)
  await driver.createNetwork(netReq(NET2, '10.1.0.0/24', '10.1.0.1/24', { [ALLOW]: '10.98.0.0/16 tcp/80' }), log)
  await attach(u, NET, EP, '172.18.0.2/16')
  await attach(u, NET2, EP2, '10.1.0.2/24')
  t.same(allowOf(host, NET), ['tsnet-allow4 172.18.0.2,tcp:22,10.99.0.0/16'], 'db does not exist yet: it allows nothing')
  const net2Before = allowOf(host, NET2)

  await names.update([named('db', dockerId('db'), ['10.60.0.0/24'])])
  t.same(allowOf(host, NET), ['tsnet-allow4 172.18.0.2,tcp:22,10.99.0.0/16', 'tsnet-allow4 172.18.0.2,tcp:5432,10.60.0.0/24'], 'db appeared: its subnet is allowed')
  t.same((await u.dryRun()).changes, [], 'a reconcile after a names change plans nothing')

  await names.update([named('db', dockerId('db'), ['10.61.0.0/24'])])
  t.same(allowOf(host, NET), ['tsnet-allow4 172.18.0.2,tcp:22,10.99.0.0/16', 'tsnet-allow4 172.18.0.2,tcp:5432,10.61.0.0/24'], 'db moved: the entries follow')

  await names.update([])
  t.same(allowOf(host, NET), ['tsnet-allow4 172.18.0.2,tcp:22,10.99.0.0/16'], 'db went: nothing of it is allowed')
  t.same(allowOf(host, NET2), net2Before, 'a policy without names is untouched')

  await names.update([named('bridge', dockerId('b1'), ['172.17.0.0/16'], 'bridge'), named('wide', dockerId('b2'), ['0.0.0.0/0'], 'bridge')])
  t.same([...host.sets.values()].filter((e) => e.comment === FOREIGN_TAG).map(entryKey).sort(),
    ['tsnet-foreign4 0.0.0.0/1', 'tsnet-foreign4 128.0.0.0/1', 'tsnet-foreign4 172.17.0.0/16'], 'Docker\'s bridge subnets are kept apart (a /0 as its two halves)')
  await driver.deleteNetwork({ NetworkID: NET2 }, log)
  t.ok([...host.sets.values()].some((e) => e.comment === FOREIGN_TAG), 'they stay while any tsnet network does')
  await names.update([])
  t.notOk([...host.sets.values()].some((e) => e.comment === FOREIGN_TAG), 'and are dropped when Docker\'s network goes')
  t.same((await u.dryRun()).changes, [])
})

t.test('the policy size cap holds at CreateNetwork, CreateEndpoint, `tsnet policy set` and a names change; nothing changes', async (t) => {
  const u = await openUnit(t)
  const { services: { driver, policy, names }, host } = u
  const addresses = (count: number) => Array.from({ length: count }, (_, i) => `10.${Math.floor(i / 250)}.${i % 250}.1`).join(',')
  await names.update([named('ops', dockerId('0f'), ['10.77.0.0/24'])])
  const huge = `${addresses(200)} tcp/1-1024`
  await t.rejects(driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [ALLOW]: huge }), log),
    { name: 'TsnetError', kind: 'invalid', message: /the tsnet\.allow policy of network 0a0123456789 .* would put 204800 entries in the firewall for its first container/ })
  t.same(driver.snapshot().networks, [], 'CreateNetwork: refused before anything was made')
  t.notOk(host.edge, 'not even the chains')

  // 40 sources x 1,024 ports: 40,960 entries per container, so one container fits and two do not.
  await driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [ALLOW]: `${addresses(40)} tcp/1-1024` }), log)
  await attach(u, NET, EP, '172.18.0.2/16')
  t.equal(allowOf(host, NET).length, 40 * 1024, 'one container: every entry is in')
  const hostBefore = host.state()
  const storeBefore = await u.storeState()
  await t.rejects(driver.createEndpoint(epReq(NET, EP2, '172.18.0.3/16'), log), {
    name: 'TsnetError', kind: 'invalid',
    message: /^creating endpoint e20123456789: the tsnet\.allow policy of network 0a0123456789 .* would put 81920 entries in the firewall for its containers \(2 x 40960/,
  })
  await t.rejects(policy.setPolicy(NET, `${addresses(70)} tcp/1-1024`, log), { name: 'TsnetError', kind: 'invalid', message: /^changing the policy of network 0a0123456789: the tsnet\.allow policy .* would put 71680 entries/ })
  t.equal(host.state(), hostBefore, 'CreateEndpoint and setPolicy refusals change nothing on the host')
  t.equal(await u.storeState(), storeBefore, 'nor in the store')
  t.same(driver.snapshot().endpoints.map((e) => e.id), [EP])

  await policy.setPolicy(NET, `ops tcp/1-1024`, log)
  t.equal(allowOf(host, NET).length, 1024, 'precondition: a policy by name, one subnet')
  await names.update([named('ops', dockerId('0f'), Array.from({ length: 65 }, (_, i) => `10.${100 + i}.0.0/16`))])
  t.equal(allowOf(host, NET).length, 1024, 'a name that grows past the cap changes nothing (the change is refused and logged)')
})
