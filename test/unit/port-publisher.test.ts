// services/port-publisher: ProgramExternalConnectivity / RevokeExternalConnectivity as serve builds
// them (openServices + boot), over FakeHost and a FileStore: held host ports, DNAT rules, the
// endpoint's record, host_binding_ipv4, conntrack flows, the per-request port budget.
import t from 'tap'
import { dnatRule } from '../../src/core/edge-plan.js'
import { keyOf } from '../../src/core/objects.js'
import { MAX_PORT_TRIES } from '../../src/core/ports.js'
import type { PublishedPort } from '../../src/core/records.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { BRIDGE_OPTION } from '../../src/modes/bridge.js'
import { OPT } from '../../src/protocol/types.js'
import { TestHost, attach, netReq, openUnit, program, revoke, tcp, udp } from './fixtures/services.js'
import { captureLog, ERROR_LEVEL } from './fixtures/gc-fakes.js'
import { dockerId, log } from './fixtures/util.js'

const NET = dockerId('0a')
const NET2 = dockerId('0b')
const EP = dockerId('e1')
const EP2 = dockerId('e2')
const EP3 = dockerId('e3')

/** `family rule` as FakeHost shows DNAT rules. */
const rule = (ep: string, p: PublishedPort) => `${p.family} ${dnatRule(ep, p)}`
const port = (p: Partial<PublishedPort> & Pick<PublishedPort, 'hostPort' | 'containerIp' | 'containerPort'>): PublishedPort =>
  ({ family: 4, proto: 'tcp', hostIp: '', ...p })
const v6 = (i: number) => ({ pool: `fd00:${i}::/64`, gw: `fd00:${i}::1/64` })

t.test('ProgramExternalConnectivity publishes: a held host port, a DNAT rule, the endpoint records it', async (t) => {
  const u = await openUnit(t)
  const { services, host } = u
  await services.driver.createNetwork(netReq(NET), log)
  const maps = [tcp(80, 8080), tcp(443, 8443, { HostIP: '127.0.0.1' }), { Proto: 17, Port: 53, HostPort: 5353, HostPortEnd: 5353 }]
  await attach(u, NET, EP, '172.18.0.2/16', maps)
  t.same(host.portRules.size, 0, 'CreateEndpoint and Join publish nothing')
  t.same(await program(u, NET, EP, maps), {})
  t.same([...host.portRules].sort(), [
    '4 -d 127.0.0.1/32 -p tcp -m tcp --dport 8443 -m comment --comment "tsnet:ep:e10123456789" -j DNAT --to-destination 172.18.0.2:443',
    '4 -p tcp -m tcp --dport 8080 -m comment --comment "tsnet:ep:e10123456789" -j DNAT --to-destination 172.18.0.2:80',
    '4 -p udp -m udp --dport 5353 -m comment --comment "tsnet:ep:e10123456789" -j DNAT --to-destination 172.18.0.2:53',
  ], 'one DNAT rule per mapping, bound to the HostIP when one is given')
  t.same([...host.heldPorts].sort(), ['tcp/8080', 'tcp/8443', 'udp/5353'], 'each host port is held')
  const published = [
    port({ hostPort: 8080, containerIp: '172.18.0.2', containerPort: 80 }),
    port({ hostIp: '127.0.0.1', hostPort: 8443, containerIp: '172.18.0.2', containerPort: 443 }),
    port({ proto: 'udp', hostPort: 5353, containerIp: '172.18.0.2', containerPort: 53 }),
  ]
  t.same((await u.storedEndpoint(EP)).published, published, 'the stored endpoint lists what was published')
  t.same(services.driver.snapshot().endpoints[0]?.published, published, 'and so does the service')
  t.same((await u.dryRun()).changes, [], 'a reconcile right after plans nothing')
})

t.test('HostPort 0 takes a free port; a range takes the first free one', async (t) => {
  const u = await openUnit(t)
  const { services, host } = u
  await services.driver.createNetwork(netReq(NET), log)
  await attach(u, NET, EP, '172.18.0.2/16')
  await attach(u, NET, EP2, '172.18.0.3/16')
  await attach(u, NET, EP3, '172.18.0.4/16')

  await program(u, NET, EP, [tcp(80)])
  const chosen = (await u.storedEndpoint(EP)).published?.[0]?.hostPort
  t.ok(Number.isInteger(chosen) && (chosen as number) > 0, `a host port was chosen (${chosen})`)
  t.ok(host.heldPorts.has(`tcp/${chosen}`), 'it is held')
  t.ok(host.portRules.has(rule(EP, port({ hostPort: chosen as number, containerIp: '172.18.0.2', containerPort: 80 }))), 'its DNAT rule leads to the container')

  host.heldPorts.add('tcp/9000') // another process
  await program(u, NET, EP2, [tcp(80, 9001)])
  await program(u, NET, EP3, [tcp(80, 9000, { HostPortEnd: 9005 })])
  t.equal((await u.storedEndpoint(EP3)).published?.[0]?.hostPort, 9002, '9000 is another process\'s, 9001 another endpoint\'s: 9002')
  t.ok(host.portRules.has(rule(EP3, port({ hostPort: 9002, containerIp: '172.18.0.4', containerPort: 80 }))))
  t.same([...host.heldPorts].filter((p) => p.startsWith('tcp/900')).sort(), ['tcp/9000', 'tcp/9001', 'tcp/9002'])
})

t.test('a dual-stack endpoint publishes on both families; an IPv6 HostIP needs an IPv6 container', async (t) => {
  const u = await openUnit(t)
  const { services, host } = u
  await services.driver.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24', {}, {}, v6(1)), log)
  await services.driver.createNetwork(netReq(NET2, '10.2.0.0/24', '10.2.0.1/24'), log)
  await attach(u, NET, EP, '10.1.0.2/24', [], 'fd00:1::2/64')
  await attach(u, NET2, EP2, '10.2.0.2/24')
  await program(u, NET, EP, [tcp(80, 8080)])
  t.same([...host.portRules].sort(), [
    rule(EP, port({ hostPort: 8080, containerIp: '10.1.0.2', containerPort: 80 })),
    rule(EP, port({ family: 6, hostPort: 8080, containerIp: 'fd00:1::2', containerPort: 80 })),
  ].sort(), 'an IPv4 and an IPv6 DNAT rule')
  t.ok([...host.portRules].some((r) => r.startsWith('6 ') && r.endsWith('--to-destination [fd00:1::2]:80')), 'the IPv6 destination is bracketed')
  t.same([...host.heldPorts], ['tcp/8080'], 'one host port, held on both families')

  const hostBefore = host.state()
  const storeBefore = await u.storeState()
  await t.rejects(program(u, NET2, EP2, [tcp(80, 8081, { HostIP: '::' })]), { name: 'TsnetError', kind: 'invalid', message: /host IP :: is IPv6, but the container has no IPv6 address/ })
  await t.rejects(program(u, NET2, EP2, [tcp(80, 8081, { HostIP: '2001:db8::1' })]), { name: 'TsnetError', kind: 'invalid', message: /2001:db8::1 is IPv6/ })
  t.equal(host.state(), hostBefore, 'nothing programmed')
  t.equal(await u.storeState(), storeBefore, 'nothing stored')
})

t.test('a port held by another process or endpoint is refused, naming it, and nothing changes', async (t) => {
  const u = await openUnit(t)
  const { services, host } = u
  await services.driver.createNetwork(netReq(NET), log)
  await attach(u, NET, EP, '172.18.0.2/16')
  await attach(u, NET, EP2, '172.18.0.3/16')
  await program(u, NET, EP2, [tcp(80, 8080)])
  host.heldPorts.add('tcp/7000') // another process
  const hostBefore = host.state()
  const storeBefore = await u.storeState()

  await t.rejects(program(u, NET, EP, [tcp(80, 7000)]), { name: 'TsnetError', kind: 'conflict', message: 'publishing ports of endpoint e10123456789 (rolled back: the host is as it was): host port tcp/7000 is already in use on this host' })
  await t.rejects(program(u, NET, EP, [tcp(80, 8080)]), { name: 'TsnetError', kind: 'conflict', message: /host port tcp\/8080 is already published by endpoint e20123456789 of network 0a0123456789/ })
  await t.rejects(program(u, NET, EP, [tcp(80, 8080, { HostIP: '127.0.0.1' })]), { name: 'TsnetError', kind: 'conflict', message: /already published by endpoint e20123456789/ }, 'a wildcard binding covers every address')
  await t.rejects(program(u, NET, EP, [tcp(80, 6999), tcp(81, 7000)]), { name: 'TsnetError', kind: 'conflict', message: /tcp\/7000/ }, 'all or nothing: the free first port is given back')
  t.equal(host.state(), hostBefore, 'FakeHost.state() unchanged (no port held, no rule added)')
  t.equal(await u.storeState(), storeBefore, 'the store unchanged')
  t.notOk(services.driver.snapshot().endpoints.find((e) => e.id === EP)?.published, 'the endpoint publishes nothing')
  t.same(await program(u, NET, EP, [tcp(80, 6999)]), {}, 'a free port then works')
})

t.test('a host or store failure while publishing is rolled back', async (t) => {
  for (const op of ['reservePort', 'dnat:create', 'store'] as const) {
    await t.test(op, async (t) => {
      const u = await openUnit(t)
      const { services, host } = u
      await services.driver.createNetwork(netReq(NET), log)
      await attach(u, NET, EP, '172.18.0.2/16')
      const hostBefore = host.state()
      const storeBefore = await u.storeState()
      if (op === 'store') u.failNextPut()
      else host.failNext.add(op)
      await t.rejects(program(u, NET, EP, [tcp(80, 8080), tcp(443, 8443)]), {
        name: 'TsnetError', kind: 'host', message: new RegExp(`^publishing ports of endpoint e10123456789 \\(rolled back: the host is as it was\\): ${op === 'store' ? 'disk full' : `injected failure in ${op}`}`),
      })
      t.equal(host.state(), hostBefore, 'no port held, no rule')
      t.equal(await u.storeState(), storeBefore)
      t.same((await u.dryRun()).changes, [], 'nothing for a reconcile to do either')
      t.same(await program(u, NET, EP, [tcp(80, 8080), tcp(443, 8443)]), {}, 'a retry works')
      t.same([...host.heldPorts].sort(), ['tcp/8080', 'tcp/8443'])
    })
  }
})

t.test('Program again is idempotent, puts a lost rule back; with other mappings it replaces the old ones', async (t) => {
  const u = await openUnit(t)
  const { services, host } = u
  await services.driver.createNetwork(netReq(NET), log)
  await attach(u, NET, EP, '172.18.0.2/16', [tcp(80, 8080)])
  await program(u, NET, EP, [tcp(80, 8080)])
  const hostOnce = host.state()
  const storeOnce = await u.storeState()
  const calls = host.calls.length
  t.same(await program(u, NET, EP, [tcp(80, 8080)]), {})
  t.same(await program(u, NET, EP, [tcp(80, 8080)]), {})
  t.same(host.changesSince(calls).concat(host.calls.slice(calls).filter((c) => c === 'reservePort')), [], 'no host change, no reservation')
  t.equal(host.state(), hostOnce, 'no second rule or reservation')
  t.equal(await u.storeState(), storeOnce)

  for (const r of host.ofKind('dnat')) host.objects.delete(keyOf(r)) // someone flushed the nat table
  await program(u, NET, EP, [tcp(80, 8080)])
  t.equal(host.state(), hostOnce, 'a repeated Program puts a lost rule back')

  await program(u, NET, EP, [tcp(80, 9090)])
  t.same([...host.heldPorts], ['tcp/9090'], 'the old port is released, the new one held')
  t.same([...host.portRules], [rule(EP, port({ hostPort: 9090, containerIp: '172.18.0.2', containerPort: 80 }))])
  t.same((await u.storedEndpoint(EP)).published?.map((p) => p.hostPort), [9090])
  t.same((await u.dryRun()).changes, [])
})

t.test('Revoke removes exactly what Program added', async (t) => {
  const u = await openUnit(t)
  const { services, host } = u
  await services.driver.createNetwork(netReq(NET), log)
  const maps = [tcp(80, 8080), tcp(22, 2222)]
  await attach(u, NET, EP, '172.18.0.2/16', maps)
  await attach(u, NET, EP2, '172.18.0.3/16', [tcp(80, 8081)])
  await program(u, NET, EP2, [tcp(80, 8081)])
  const hostBefore = host.state()
  const storeBefore = await u.storeState()
  await program(u, NET, EP, maps)
  t.equal(host.portRules.size, 3)
  t.same(await revoke(u, NET, EP), {})
  t.equal(host.state(), hostBefore, 'EP\'s rules and ports are gone, EP2\'s stay')
  t.equal(await u.storeState(), storeBefore, 'the endpoint record is as before Program')
  t.notOk('published' in (await u.storedEndpoint(EP)), 'no published list')
  t.same((await u.dryRun()).changes, [], 'a reconcile after Revoke plans nothing')
  const calls = host.calls.length
  t.same(await revoke(u, NET, EP), {}, 'a second Revoke is fine')
  t.same(host.changesSince(calls), [], 'and applies nothing')
  t.equal(host.state(), hostBefore)
  t.same(await program(u, NET, EP, maps), {}, 'and the ports can be published again')
})

t.test('DeleteEndpoint and DeleteNetwork unpublish', async (t) => {
  const u = await openUnit(t)
  const { services, host } = u
  await services.driver.createNetwork(netReq(NET), log)
  await attach(u, NET, EP, '172.18.0.2/16')
  await attach(u, NET, EP2, '172.18.0.3/16')
  await program(u, NET, EP, [tcp(80, 8080)])
  await program(u, NET, EP2, [tcp(80, 8081)])
  await services.driver.leave({ NetworkID: NET, EndpointID: EP }, log)
  t.ok(host.heldPorts.has('tcp/8080'), 'Leave alone does not unpublish (Docker revokes first)')
  await services.driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log)
  t.same([...host.heldPorts], ['tcp/8081'], 'EP\'s port is released')
  t.same([...host.portRules], [rule(EP2, port({ hostPort: 8081, containerIp: '172.18.0.3', containerPort: 80 }))], 'EP\'s rule is gone')
  await services.driver.deleteNetwork({ NetworkID: NET }, log)
  t.equal(host.state(), new FakeHost().state(), 'nothing is left: no rule, port, entry, group or chain')
})

t.test('an internal network publishes nothing', async (t) => {
  const u = await openUnit(t)
  const { services, host } = u
  await services.driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', {}, { [OPT.internal]: true }), log)
  await attach(u, NET, EP, '172.18.0.2/16')
  const hostBefore = host.state()
  const storeBefore = await u.storeState()
  t.same(await program(u, NET, EP, [tcp(80)]), {}, 'an exposed port without a host port: fine, nothing to do')
  await t.rejects(program(u, NET, EP, [tcp(80, 8080)]), { name: 'TsnetError', kind: 'invalid', message: /network 0a0123456789 is internal: it publishes no ports/ })
  await t.rejects(program(u, NET, EP, [tcp(80, 0, { HostIP: '127.0.0.1' })]), { name: 'TsnetError', kind: 'invalid', message: /is internal/ })
  t.equal(host.state(), hostBefore, 'no rule, no held port')
  t.equal(await u.storeState(), storeBefore)
})

t.test('a port map that would look at too many host ports is refused early, and nothing changes', async (t) => {
  const u = await openUnit(t)
  const { services, host } = u
  await services.driver.createNetwork(netReq(NET), log)
  await attach(u, NET, EP, '172.18.0.2/16')
  const hostBefore = host.state()
  const storeBefore = await u.storeState()
  // Mapping #k takes port k of 1-65535 after looking at the k-1 ports the earlier ones took.
  const hostile = Array.from({ length: 200 }, () => tcp(80, 1, { HostPortEnd: 65535 }))
  await t.rejects(program(u, NET, EP, hostile), {
    name: 'TsnetError', kind: 'invalid',
    message: new RegExp(`^publishing ports of endpoint e10123456789 \\(rolled back: the host is as it was\\): publishing this port map would look at more than ${MAX_PORT_TRIES} host ports, the most tsnet looks at for one request \\(reached at port mapping #\\d+, tcp host 1-65535 to container port 80\\)`),
  })
  t.equal(host.heldPorts.size, 0, 'every port held meanwhile was given back')
  t.equal(host.state(), hostBefore)
  t.equal(await u.storeState(), storeBefore)
  t.same(await program(u, NET, EP, hostile.slice(0, 100)), {}, 'control: 100 such mappings fit the budget')
  t.equal(host.heldPorts.size, 100)
})

t.test('host_binding_ipv4: a mapping without a HostIP binds to the network\'s address only; a given HostIP wins', async (t) => {
  const u = await openUnit(t)
  const { services, host } = u
  await services.driver.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24', { [BRIDGE_OPTION.hostBinding]: '192.0.2.10' }, {}, v6(1)), log)
  const maps = [tcp(80, 8080), tcp(443, 8443, { HostIP: '127.0.0.1' }), tcp(22, 2222, { HostIP: '::' })]
  await attach(u, NET, EP, '10.1.0.2/24', maps, 'fd00:1::2/64')
  await program(u, NET, EP, maps)
  t.same([...host.portRules].sort(), [
    rule(EP, port({ hostIp: '192.0.2.10', hostPort: 8080, containerIp: '10.1.0.2', containerPort: 80 })),
    rule(EP, port({ hostIp: '127.0.0.1', hostPort: 8443, containerIp: '10.1.0.2', containerPort: 443 })),
    rule(EP, port({ family: 6, hostIp: '::', hostPort: 2222, containerIp: 'fd00:1::2', containerPort: 22 })),
  ].sort(), '-p 8080:80 on the dual-stack container: one IPv4 rule for 192.0.2.10 and no IPv6 wildcard (as Docker 20.10)')
  t.ok([...host.portRules].some((r) => r.startsWith('4 -d 192.0.2.10/32 -p tcp -m tcp --dport 8080 ')), 'the rule matches the address')
  t.same(host.reserved.find((r) => r.bindings.some((b) => b.address === '192.0.2.10'))?.bindings, [{ family: 4, address: '192.0.2.10' }], 'and the port is held on that address alone')
  t.same((await u.storedEndpoint(EP)).published?.map((p) => `${p.family} ${p.hostIp}:${p.hostPort}`), ['4 192.0.2.10:8080', '4 127.0.0.1:8443', '6 :::2222'])
  t.equal((await u.storedEndpoint(EP)).portMappings[0]?.hostIp, '', 'the mappings are stored as Docker sent them')

  const hostOnce = host.state()
  const storeOnce = await u.storeState()
  t.same(await program(u, NET, EP, maps), {}, 'a repeated Program is still idempotent')
  t.equal(host.state(), hostOnce)
  t.equal(await u.storeState(), storeOnce)
})

t.test('host_binding_ipv4: 0.0.0.0 is the default; an IPv6 address takes IPv6 alone', async (t) => {
  const u = await openUnit(t)
  const { services, host } = u
  await services.driver.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24', { [BRIDGE_OPTION.hostBinding]: '0.0.0.0' }, {}, v6(1)), log)
  await services.driver.createNetwork(netReq(NET2, '10.2.0.0/24', '10.2.0.1/24', { [BRIDGE_OPTION.hostBinding]: '2001:db8::7' }, {}, v6(2)), log)
  await attach(u, NET, EP, '10.1.0.2/24', [], 'fd00:1::2/64')
  await attach(u, NET2, EP2, '10.2.0.2/24', [], 'fd00:2::2/64')
  await program(u, NET, EP, [tcp(80, 8080)])
  await program(u, NET2, EP2, [tcp(80, 8081)])
  t.same([...host.portRules].sort(), [
    rule(EP, port({ hostPort: 8080, containerIp: '10.1.0.2', containerPort: 80 })),
    rule(EP, port({ family: 6, hostPort: 8080, containerIp: 'fd00:1::2', containerPort: 80 })),
    rule(EP2, port({ family: 6, hostIp: '2001:db8::7', hostPort: 8081, containerIp: 'fd00:2::2', containerPort: 80 })),
  ].sort(), '0.0.0.0: every address of both families; 2001:db8::7: that address, no IPv4')
})

t.test('host_binding_ipv4: an address that is not the host\'s is refused at ProgramExternalConnectivity, naming the option', async (t) => {
  const host = new TestHost()
  host.localAddresses = new Set(['192.0.2.10', '127.0.0.1'])
  const u = await openUnit(t, { host })
  await u.services.driver.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24', { [BRIDGE_OPTION.hostBinding]: '192.0.2.99' }), log)
  await attach(u, NET, EP, '10.1.0.2/24')
  const hostBefore = host.state()
  const storeBefore = await u.storeState()
  await t.rejects(program(u, NET, EP, [tcp(80, 8080)]), {
    name: 'TsnetError', kind: 'invalid',
    message: 'network 0a0123456789 publishes on 192.0.2.99 (com.docker.network.bridge.host_binding_ipv4): publishing ports of endpoint e10123456789 (rolled back: the host is as it was): host IP 192.0.2.99 is not an address of this host',
  })
  t.equal(host.state(), hostBefore, 'nothing held or programmed')
  t.equal(await u.storeState(), storeBefore, 'nothing stored')
  await t.rejects(program(u, NET, EP, [tcp(80, 8080, { HostIP: '198.51.100.1' })]), {
    name: 'TsnetError', kind: 'invalid',
    message: 'publishing ports of endpoint e10123456789 (rolled back: the host is as it was): host IP 198.51.100.1 is not an address of this host',
  }, 'a HostIP the mapping gave itself: the option is not blamed')
  t.equal(host.state(), hostBefore)
  t.same(await program(u, NET, EP, [tcp(80, 8080, { HostIP: '127.0.0.1' })]), {}, 'control: a HostIP of the host works on the same network')
})

t.test('conntrack: flows of UDP and SCTP ports are forgotten when they are published and when they are revoked; TCP ones never', async (t) => {
  const u = await openUnit(t)
  const { services, host } = u
  await services.driver.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24', {}, {}, v6(1)), log)
  const maps = [tcp(80, 8080), udp(53, 5353), { Proto: 132, Port: 9, HostPort: 9009, HostPortEnd: 9009 }, udp(54, 5354, { HostIP: '127.0.0.1' })]
  await attach(u, NET, EP, '10.1.0.2/24', maps, 'fd00:1::2/64')
  await attach(u, NET, EP2, '10.1.0.3/24', [tcp(80, 8081)])
  const flows = [
    { family: 4, proto: 'udp', hostPort: 5353, hostIp: '' }, { family: 6, proto: 'udp', hostPort: 5353, hostIp: '' },
    { family: 4, proto: 'sctp', hostPort: 9009, hostIp: '' }, { family: 6, proto: 'sctp', hostPort: 9009, hostIp: '' },
    { family: 4, proto: 'udp', hostPort: 5354, hostIp: '127.0.0.1' },
  ]
  await program(u, NET, EP, maps)
  t.same(host.forgottenFlows, [flows], 'publishing: the flows that began while no rule held the ports, in one call')
  await program(u, NET, EP, maps)
  t.equal(host.forgottenFlows.length, 1, 'a repeated Program changes no port: nothing to forget')
  await program(u, NET, EP2, [tcp(80, 8081)])
  t.equal(host.forgottenFlows.length, 1, 'TCP ports: nothing to forget (a new connection is a new flow)')
  await revoke(u, NET, EP)
  t.same(host.forgottenFlows, [flows, flows], 'Revoke forgets the same flows, in one call')
  await revoke(u, NET, EP)
  t.equal(host.forgottenFlows.length, 2, 'a second Revoke has nothing to forget')

  await program(u, NET, EP, maps)
  await services.driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log)
  t.same(host.forgottenFlows.slice(3), [flows], 'DeleteEndpoint of a publishing endpoint forgets them')
  await attach(u, NET, EP3, '10.1.0.4/24')
  await program(u, NET, EP3, [udp(53, 5353)])
  await services.driver.deleteNetwork({ NetworkID: NET }, log)
  t.same(host.forgottenFlows.slice(-1), [[{ family: 4, proto: 'udp', hostPort: 5353, hostIp: '' }]], 'DeleteNetwork forgets those of its endpoints')
  t.equal(host.forgottenFlows.filter((f) => f.some((x) => x.hostPort === 8081)).length, 0, 'never a TCP port')
})

t.test('conntrack: a failure to forget flows is logged; the ports are published and revoked all the same', async (t) => {
  const u = await openUnit(t)
  const { services, host } = u
  await services.driver.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24'), log)
  const maps = [udp(53, 5353)]
  await attach(u, NET, EP, '10.1.0.2/24', maps)
  const { logger, entries } = captureLog()
  host.failNext.add('forgetPortFlows')
  t.same(await program(u, NET, EP, maps, logger), {}, 'Program answers')
  t.ok(host.heldPorts.has('udp/5353') && (await u.storedEndpoint(EP)).published?.length === 1, 'and the port is published')
  host.failNext.add('forgetPortFlows')
  t.same(await revoke(u, NET, EP, logger), {}, 'Revoke answers')
  t.equal(host.heldPorts.size + host.portRules.size, 0, 'and the port is gone')
  const errors = entries.filter((e) => e.level === ERROR_LEVEL)
  t.equal(errors.length, 2, 'each failure is logged as an error')
  t.match(errors[0], { msg: 'conntrack entries of published ports not forgotten', err: { message: /injected failure in forgetPortFlows/ }, flows: [{ proto: 'udp', hostPort: 5353 }] })
})
