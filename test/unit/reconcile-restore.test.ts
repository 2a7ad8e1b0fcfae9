// What the boot reconcile puts back of published ports, policies and shared set members after a
// restart or a reboot, and a store written by the old record shape (schema 1), over FakeHost.
import t from 'tap'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { dnatRule, networkEntries } from '../../src/core/edge-plan.js'
import { COMMON_OPTION } from '../../src/core/docker-keys.js'
import { bridgeNameFor, containerVethFor, endpointAlias, hostVethFor, networkAlias, networkTag } from '../../src/core/names.js'
import type { NetworkRecord } from '../../src/core/records.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { runCli } from '../../src/cli/index.js'
import { BRIDGE_OPTION, bridgeEdge, bridgeOf } from '../../src/modes/bridge.js'
import { TestHost, attach, entriesOf, netReq, openUnit, plant, program, revoke, tcp } from './fixtures/services.js'
import { captureLog, ERROR_LEVEL } from './fixtures/gc-fakes.js'
import { dockerId, log } from './fixtures/util.js'

const NET = dockerId('0a')
const NET2 = dockerId('0b')
const EP = dockerId('e1')
const EP2 = dockerId('e2')
const GHOST_NET = dockerId('dd')
const GHOST_EP = dockerId('de')

t.test('after a reboot the boot reconcile holds the published ports again, with their rules, policy entries and Docker\'s subnets', async (t) => {
  const first = await openUnit(t)
  await first.services.names.update([
    { id: dockerId('a1'), name: 'ui', driver: 'overlay', subnets: ['10.50.0.0/24'] },
    { id: dockerId('b1'), name: 'bridge', driver: 'bridge', subnets: ['172.17.0.0/16'] },
  ])
  await first.services.driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [COMMON_OPTION.allow]: 'ui tcp/8080' }), log)
  await attach(first, NET, EP, '172.18.0.2/16')
  await attach(first, NET, EP2, '172.18.0.3/16')
  await program(first, NET, EP, [tcp(80, 8080), tcp(81)])
  await program(first, NET, EP2, [tcp(80)])
  first.services.reconciler.stop()
  const was = first.host

  const host = new TestHost() // a reboot: the kernel lost everything, the store stayed
  plant(host, { kind: 'setEntry', set: 'tsnet-src4', entry: '10.99.0.0/24,tsbr-ghost', comment: networkTag(GHOST_NET) })
  plant(host, { kind: 'setEntry', set: 'tsnet-allow4', entry: '172.18.0.9,tcp:1,10.50.0.0/24', comment: networkTag(NET) }) // no endpoint has .9
  plant(host, { kind: 'dnat', family: 4, rule: dnatRule(GHOST_EP, { family: 4, proto: 'tcp', hostIp: '', hostPort: 7777, containerIp: '10.99.0.2', containerPort: 80 }) })
  const again = await openUnit(t, { dir: first.dir, host })
  t.same([...host.heldPorts].sort(), [...was.heldPorts].sort(), 'the same host ports are held again')
  t.same([...host.portRules].sort(), [...was.portRules].sort(), 'the same DNAT rules, and no rule no record explains')
  t.same([...host.sets.keys()].sort(), [...was.sets.keys()].sort(), 'the same entries: subnets, policy, Docker\'s subnets; unexplained ones pruned')
  t.same([...host.groups].sort(), [...was.groups].sort())
  t.equal(host.edge, true)
  t.equal(host.sysctls.get(`net/ipv4/conf/${bridgeNameFor(NET)}/route_localnet`), '1', 'route_localnet as the published ports need it')
  t.same((await again.dryRun()).changes, [], 'a reconcile right after plans nothing')

  await revoke(again, NET, EP)
  t.same([...host.heldPorts], [`tcp/${(await again.storedEndpoint(EP2)).published?.[0]?.hostPort}`], 'a Revoke after the restart releases the restored holds')
  t.notOk([...host.portRules].some((r) => r.includes(`tsnet:ep:${EP.slice(0, 12)}`)))
})

t.test('a published port another process took meanwhile is logged and gets no DNAT rule; the rest is restored', async (t) => {
  const first = await openUnit(t)
  await first.services.driver.createNetwork(netReq(NET), log)
  await attach(first, NET, EP, '172.18.0.2/16')
  await attach(first, NET, EP2, '172.18.0.3/16')
  await program(first, NET, EP, [tcp(80, 8080)])
  await program(first, NET, EP2, [tcp(80, 8081)])
  first.services.reconciler.stop()

  const host = new TestHost()
  host.heldPorts.add('tcp/8080')
  const { logger, entries } = captureLog()
  const again = await openUnit(t, { dir: first.dir, host, logger })
  const errors = entries.filter((e) => e.level === ERROR_LEVEL)
  t.equal(errors.length, 1, 'one error logged')
  t.match(errors[0], {
    msg: 'reconcile could not fix some objects',
    failedChanges: [
      { change: 'create port tcp/8080 4:0.0.0.0', error: /host port tcp\/8080 is already in use/ },
      { change: /^create dnat 4 .*--dport 8080 /, error: /skipped/ },
    ],
  }, 'naming the port, and the rule that must not steal the other process\'s traffic')
  t.same([...host.portRules], [`4 ${dnatRule(EP2, { family: 4, proto: 'tcp', hostIp: '', hostPort: 8081, containerIp: '172.18.0.3', containerPort: 80 })}`], 'no DNAT rule steals the other process\'s port; EP2\'s is back')
  t.same([...host.heldPorts].sort(), ['tcp/8080', 'tcp/8081'])

  host.heldPorts.delete('tcp/8080') // the other process lets go
  await again.services.reconciler.pass('periodic')
  t.equal(host.portRules.size, 2, 'the next pass publishes it again')
  t.same((await again.dryRun()).changes, [])
})

t.test('a restore that cannot get one port of an endpoint', async (t) => {
  const first = await openUnit(t)
  await first.services.driver.createNetwork(netReq(NET), log)
  await attach(first, NET, EP, '172.18.0.2/16')
  await program(first, NET, EP, [tcp(80, 8080), tcp(81, 8081)])
  first.services.reconciler.stop()
  const host = new TestHost()
  host.heldPorts.add('tcp/8081') // another process took 8081 while tsnet was down
  const again = await openUnit(t, { dir: first.dir, host })
  t.notOk([...host.portRules].some((r) => r.includes('--dport 8081 ')), 'no DNAT rule for the port it could not hold')
  t.same([...host.heldPorts].sort(), ['tcp/8081'], 'tsnet holds no port of the endpoint it could not restore whole', {
    todo: 'the engine restores per object: tcp/8080 is held and programmed again, only tcp/8081 waits for the next pass (the old restore was all or nothing per endpoint)',
  })
  await revoke(again, NET, EP)
  t.same([...host.heldPorts], ['tcp/8081'], 'after Revoke, tsnet holds nothing')
  t.equal(host.portRules.size, 0)
  host.heldPorts.delete('tcp/8081')
  t.same(await program(again, NET, EP, [tcp(80, 8080)]), {}, 'the endpoint can publish 8080 again')
})

t.test('two stored networks on one subnet (an older tsnet allowed it) share set members: deleting one keeps the other\'s', async (t) => {
  const first = await openUnit(t)
  await first.services.driver.createNetwork(netReq(NET, '10.9.0.0/24', '10.9.0.1/24'), log)
  // CreateNetwork refuses the overlap now; a store written before that may still hold one.
  const twin: NetworkRecord = {
    ...(await first.storedNetwork(NET)), id: NET2, mode: 'bridge', spec: { bridge: 'twin0', bridgeNamedByUser: true }, genericOptions: { [BRIDGE_OPTION.bridgeName]: 'twin0' },
  }
  await writeFile(join(first.dir, 'store', 'networks', `${NET2}.json`), JSON.stringify(twin))
  const u = await first.restart()
  const { host } = u
  t.same(u.services.driver.snapshot().networks.map((n) => n.id).sort(), [NET, NET2].sort(), 'precondition: both networks are back')
  t.ok(host.sets.has('tsnet-masq4 10.9.0.0/24'), 'the subnet is masqueraded')
  t.same((await u.dryRun()).changes, [], 'one member for two owners: a reconcile plans nothing')
  await u.services.driver.deleteNetwork({ NetworkID: NET2 }, log)
  t.same(u.services.driver.snapshot().networks.map((n) => n.id), [NET])
  t.ok(host.sets.has(`tsnet-src4 10.9.0.0/24,${bridgeNameFor(NET)}`), 'NET\'s anti-spoofing entry stays (it names the bridge)')
  t.notOk(host.sets.has('tsnet-src4 10.9.0.0/24,twin0'), 'the twin\'s went')
  t.same(entriesOf(host, NET), networkEntries(bridgeEdge(await u.storedNetwork(NET), bridgeNameFor(NET))).map((e) => `${e.set} ${e.entry}`).sort(), 'NET\'s subnet is still masqueraded, as NET\'s')
  t.ok(host.edge, 'the chains stay')
  t.same((await u.dryRun()).changes, [])
})

// ------------------------------------------------------------------ a store of schema 1

const CREATED = '2025-06-01T00:00:00.000Z'
/** A network record as tsnet 0.1 wrote it: no mode, the bridge at the top level. */
const v1Network = (id: string, bridge: string, pool: string, gw: string, more: Record<string, unknown> = {}) => ({
  id, bridge, bridgeNamedByUser: bridge !== bridgeNameFor(id), mtu: 1500, internal: false, ipv6: false,
  ipv4Subnets: [{ pool, gateway: gw }], ipv6Subnets: [], enableIpMasquerade: true, enableIcc: true,
  genericOptions: bridge !== bridgeNameFor(id) ? { [BRIDGE_OPTION.bridgeName]: bridge } : {}, createdAt: CREATED, ...more,
})
const v1Endpoint = (id: string, networkId: string, address: string, more: Record<string, unknown> = {}) => ({
  id, networkId, hostIf: hostVethFor(id), containerIf: containerVethFor(id), mac: '02:42:0a:07:00:02', macFromDocker: false, mtu: 1500,
  address, portMappings: [], exposedPorts: [], joined: false, createdAt: CREATED, ...more,
})

// Declared schema 1 (as 0.1 wrote it): migrated at open. Declared 2: read through NetworkState's defensive upgrade.
for (const declared of [1, 2]) t.test(`a state directory written by the old record shape (schema 1), declaring schema ${declared}, boots, and the requests that follow work`, async (t) => {
  const u0 = await openUnit(t) // creates the store and its meta/schema, as 0.1 did
  u0.services.reconciler.stop()
  const store = join(u0.dir, 'store')
  await mkdir(join(store, 'networks'), { recursive: true })
  const published = [{ family: 4, proto: 'tcp', hostIp: '', hostPort: 8080, containerIp: '10.7.0.2', containerPort: 80 }]
  const records: Array<[string, string, unknown]> = [
    ['networks', NET, v1Network(NET, bridgeNameFor(NET), '10.7.0.0/24', '10.7.0.1/24', { policy: '10.50.0.0/24 tcp/443', genericOptions: { [COMMON_OPTION.allow]: '10.50.0.0/24 tcp/443' } })],
    ['networks', NET2, v1Network(NET2, 'oldbr0', '10.8.0.0/24', '10.8.0.1/24')],
    ['endpoints', EP, v1Endpoint(EP, NET, '10.7.0.2/24', { portMappings: [{ proto: 'tcp', containerPort: 80, hostIp: '', hostPort: 8080, hostPortEnd: 8080 }], published })],
    ['endpoints', EP2, v1Endpoint(EP2, NET2, '10.8.0.2/24', { joined: true, sandboxKey: '/var/run/docker/netns/x' })],
  ]
  for (const [c, id, v] of records) await writeFile(join(store, c, `${id}.json`), JSON.stringify(v))
  await writeFile(join(store, 'meta', 'schema.json'), JSON.stringify({ version: declared }))

  const host = new TestHost()
  const u = await openUnit(t, { dir: u0.dir, host })
  t.same(u.services.driver.snapshot().networks.map((n) => [n.id, n.mode, bridgeOf(n)]).sort(), [[NET, 'bridge', bridgeNameFor(NET)], [NET2, 'bridge', 'oldbr0']], 'the records are read in today\'s shape')
  const onDisk = JSON.parse(await readFile(join(store, 'networks', `${NET2}.json`), 'utf8')) as { mode?: string; bridge?: string }
  t.same([onDisk.mode, onDisk.bridge], declared === 1 ? ['bridge', undefined] : [undefined, 'oldbr0'], declared === 1 ? 'migrated on disk at open' : 'left as it is on disk, upgraded on read')
  const printed: string[] = []
  const real = console.log
  console.log = (text: string) => { printed.push(text) }
  try {
    await runCli(['status', '--state-dir', u0.dir, '--socket', join(u0.dir, 'no-daemon.sock')], {})
  } finally {
    console.log = real
  }
  t.ok(printed.some((l) => l.includes('oldbr0')), 'tsnet status shows the user-named bridge')
  t.match(host.links.get(bridgeNameFor(NET)), { type: 'bridge', alias: networkAlias(NET), addresses: ['10.7.0.1/24'] }, 'NET\'s bridge')
  t.match(host.links.get('oldbr0'), { type: 'bridge', alias: networkAlias(NET2), addresses: ['10.8.0.1/24'] }, 'NET2\'s bridge under its user name')
  t.match(host.links.get(hostVethFor(EP)), { type: 'veth', alias: endpointAlias(EP), master: bridgeNameFor(NET) }, 'the endpoint not yet joined gets its veth')
  t.notOk(host.links.has(hostVethFor(EP2)), 'a joined one is Docker\'s to make again')
  t.same(entriesOf(host, NET), ['tsnet-allow4 10.7.0.2,tcp:443,10.50.0.0/24', 'tsnet-masq4 10.7.0.0/24', `tsnet-src4 10.7.0.0/24,${bridgeNameFor(NET)}`], 'subnet and policy entries')
  t.same([...host.heldPorts], ['tcp/8080'], 'the published port is held again')
  t.equal(host.portRules.size, 1, 'with its DNAT rule')
  t.same((await u.dryRun()).changes, [], 'a reconcile right after plans nothing')

  const calls = host.calls.length
  t.same(await u.services.driver.createNetwork(netReq(NET2, '10.8.0.0/24', '10.8.0.1/24', { [BRIDGE_OPTION.bridgeName]: 'oldbr0' }), log), {}, 'Docker\'s retried CreateNetwork is the same network across the upgrade')
  t.same(host.changesSince(calls), [], 'and applies nothing')
  t.same(await u.services.ports.program({ NetworkID: NET, EndpointID: EP, Options: { 'com.docker.network.portmap': [{ Proto: 6, Port: 80, HostPort: 8080, HostPortEnd: 8080 }] } }, log), {}, 'a repeated Program')
  t.same(host.changesSince(calls), [], 'applies nothing either')
  await u.services.driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log)
  await u.services.driver.deleteNetwork({ NetworkID: NET }, log)
  await u.services.driver.deleteEndpoint({ NetworkID: NET2, EndpointID: EP2 }, log)
  await u.services.driver.deleteNetwork({ NetworkID: NET2 }, log)
  t.equal(host.state(), new FakeHost().state(), 'deleting the upgraded records cleans the host')
  t.same((await u.dryRun()).changes, [])
})
