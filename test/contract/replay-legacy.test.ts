// Replays what Docker 20.10 sent to a legacy (v1) plugin, scenario by scenario, and checks what
// each of tsnet's answers means to Docker. Expectations come from the protocol, not from the lab
// driver's recorded answers (see test/fixtures/wire/README.md).
import t, { type Test } from 'tap'
import { cloneBody, loadScenario, loadScenarios, type Json, type RecordedCall } from '../fixtures/wire/loader.js'
import { Driver, ipOf, macForIpv4 } from './fixtures/driver.js'
import { BRIDGE_OPTION, MTU_OPTION, Replayer, assertNoEdge } from './fixtures/replay.js'

// The package's 60 s file timeout is too short on a loaded machine; this limit only catches hangs (issue 11).
t.setTimeout(600_000)

async function assertHostEmpty(t: Test, d: Driver, what: string) {
  t.same([...d.host.links.keys()], [], `${what}: no links are left on the host`)
  assertNoEdge(t, d, what)
  t.same(Object.keys(await d.records('networks')), [], `${what}: no network is left in the store`)
  t.same(Object.keys(await d.records('endpoints')), [], `${what}: no endpoint is left in the store`)
}

/**
 * On 20.10 IpamDriver.GetDefaultAddressSpaces came at activation, before 23's calls, and Docker then
 * sent the answer as RequestPool's AddressSpace. The lab driver had answered labnet-local/-global
 * (its answer is recorded in restart/43); replaying this call maps those names to tsnet's.
 */
const LAB_ACTIVATION_SPACES: RecordedCall = {
  method: 'IpamDriver.GetDefaultAddressSpaces',
  body: null,
  source: 'activation (before 23)',
  recorded: { response: { LocalDefaultAddressSpace: 'labnet-local', GlobalDefaultAddressSpace: 'labnet-global' } },
}

const byMethod = (r: Replayer, method: string) => r.answers.filter((x) => x.call.method === method)

t.test('01-07: create a network, run two containers, disconnect one, remove both, remove the network', async (t) => {
  const d = await Driver.start(t)
  const r = new Replayer(t, d)
  await r.replay(loadScenarios('legacy/01-network-create', 'legacy/02-run-c1', 'legacy/03-run-c2'))
  t.equal(byMethod(r, 'NetworkDriver.CreateEndpoint').length, 2)
  const joins = byMethod(r, 'NetworkDriver.Join').map((x) => x.answer.json)
  t.not(joins[0].InterfaceName.SrcName, joins[1].InterfaceName.SrcName, 'each container gets its own interface')
  t.same(joins.map((j) => j.Gateway), ['10.77.0.1', '10.77.0.1'], 'both containers route via the gateway Docker chose')
  // Two containers are attached: two veth pairs and the bridge.
  t.equal([...d.host.links.values()].filter((l) => l.type === 'veth').length, 4, 'two veth pairs exist')

  await r.replay(loadScenario('legacy/05-disconnect-c2'))
  t.equal([...d.host.links.values()].filter((l) => l.type === 'veth').length, 2, 'c2\'s veth pair is gone, c1\'s stays')
  await r.replay(loadScenarios('legacy/06-rm-c1-c2', 'legacy/07-network-rm'))
  await assertHostEmpty(t, d, 'after network rm')
})

t.test('10-13: publish a port, fixed IP, --mac-address, connect with an alias, then network rm', async (t) => {
  const d = await Driver.start(t)
  const r = new Replayer(t, d)

  await r.replay(loadScenario('legacy/10-run-publish-p8080'))
  const ep10 = (await d.records('endpoints'))
  t.same(ep10, {}, '10: the container was removed, its endpoint too')

  await r.replay(loadScenario('legacy/11-run-fixed-ip'), {
    after: (call, _body, answer) => {
      if (call.method === 'NetworkDriver.CreateEndpoint') {
        t.same(answer.json, { Interface: { MacAddress: macForIpv4('10.77.0.50/24') } }, '11: --ip 10.77.0.50 gives MAC 02:42:0a:4d:00:32 and nothing else')
      }
    },
  })

  const mac = '02:42:0a:4d:00:99'
  await r.replay(loadScenario('legacy/12-run-mac-address'), {
    after: (call, _body, answer) => {
      if (call.method === 'NetworkDriver.CreateEndpoint') {
        t.notOk(answer.json.Interface?.MacAddress, '12: Docker sent --mac-address, so no MAC comes back')
      }
      if (call.method === 'NetworkDriver.Join') {
        const src = answer.json.InterfaceName.SrcName
        t.equal(d.link(src)?.mac, mac, `12: the veth peer ${src} carries --mac-address ${mac} (Docker 20.10 does not set it)`)
      }
    },
  })

  await r.replay(loadScenario('legacy/13-connect-alias'), {
    after: (call, _body, answer) => {
      if (call.method === 'NetworkDriver.Join') t.equal(answer.json.Gateway, '10.77.0.1', '13: the generic map in Join options is ignored')
    },
  })
  await assertHostEmpty(t, d, '13: after network rm')
})

t.test('10: the published port arrives in CreateEndpoint, Join and ProgramExternalConnectivity and is accepted', async (t) => {
  const d = await Driver.start(t)
  const r = new Replayer(t, d)
  const calls = loadScenario('legacy/10-run-publish-p8080')
  const upToProgram = calls.slice(0, calls.findIndex((c) => c.method === 'NetworkDriver.ProgramExternalConnectivity') + 1)
  await r.replay(upToProgram)
  const ep = Object.values(await d.records('endpoints'))[0]
  t.same(ep?.portMappings, [{ proto: 'tcp', containerPort: 80, hostIp: '', hostPort: 8080, hostPortEnd: 8080 }], 'the endpoint remembers -p 8080:80')
  await r.replay(calls.slice(upToProgram.length))
  await r.replay([{ method: 'NetworkDriver.DeleteNetwork', body: { NetworkID: (calls[0]?.body as any).NetworkID }, recorded: {}, source: 'cleanup' }])
  await assertHostEmpty(t, d, 'after cleanup')
})

t.test('20: --internal network gives no gateway', async (t) => {
  const d = await Driver.start(t)
  const r = new Replayer(t, d)
  await r.replay(loadScenario('legacy/20-net-internal'), {
    after: (call, _body, answer) => {
      if (call.method === 'NetworkDriver.Join') {
        t.notOk('Gateway' in answer.json, '20: Join has no Gateway on an internal network')
        t.notOk('GatewayIPv6' in answer.json, '20: Join has no GatewayIPv6 on an internal network')
      }
    },
  })
  await assertHostEmpty(t, d, 'after network rm')
})

t.test('21: --ipv6 network: both gateways on the bridge and in Join', async (t) => {
  const d = await Driver.start(t)
  const r = new Replayer(t, d)
  await r.replay(loadScenario('legacy/21-net-ipv6'), {
    after: async (call, _body, answer) => {
      if (call.method === 'NetworkDriver.CreateNetwork') {
        const bridge = (Object.values(await d.records('networks'))[0] as any).spec.bridge
        t.same([...(d.link(bridge)?.addresses ?? [])].sort(), ['10.79.0.1/24', 'fd00:79::1/64'], '21: the bridge has both gateway addresses')
      }
      if (call.method === 'NetworkDriver.CreateEndpoint') {
        t.same(answer.json, { Interface: { MacAddress: '02:42:0a:4f:00:02' } }, '21: only the MAC comes back, not the addresses Docker set')
      }
      if (call.method === 'NetworkDriver.Join') {
        t.equal(answer.json.Gateway, '10.79.0.1', '21: IPv4 gateway without mask')
        t.equal(answer.json.GatewayIPv6, 'fd00:79::1', '21: IPv6 gateway without mask')
      }
    },
  })
  await assertHostEmpty(t, d, 'after network rm')
})

t.test('GatewayIPv6 appears only in the IPv6 scenario', async (t) => {
  for (const name of ['legacy/02-run-c1', 'legacy/10-run-publish-p8080', 'legacy/11-run-fixed-ip', 'legacy/20-net-internal', 'managed/50-managed-local']) {
    const d = await Driver.start(t)
    const r = new Replayer(t, d)
    const calls = name === 'legacy/02-run-c1' ? loadScenarios('legacy/01-network-create', name)
      : name === 'legacy/11-run-fixed-ip' ? [...loadScenario('legacy/10-run-publish-p8080'), ...loadScenario(name)]
        : loadScenario(name)
    await r.replay(calls)
    for (const j of byMethod(r, 'NetworkDriver.Join')) t.notOk('GatewayIPv6' in j.answer.json, `${j.call.source}: no GatewayIPv6 on an IPv4-only network`)
  }
})

t.test('22: -o options', async (t) => {
  const recorded = loadScenario('legacy/22-net-options')
  const create = recorded[0] as RecordedCall
  t.equal(create.method, 'NetworkDriver.CreateNetwork')

  t.test('as recorded (-o com.example.vlan=42 -o foo=bar): refused, naming the option, nothing changes', async (t) => {
    const d = await Driver.start(t)
    const before = await d.state()
    const a = await d.send(create.method, create.body)
    t.not(a.status, 200, 'an option tsnet does not understand fails network create')
    t.same(Object.keys(a.json ?? {}), ['Err'])
    t.match(a.json?.Err, /com\.example\.vlan|foo/, 'the error names the unknown option')
    t.same(await d.state(), before, 'store and host are unchanged')
  })

  t.test('with -o com.docker.network.driver.mtu=1400 -o com.docker.network.bridge.name=tsnet-opts in their place', async (t) => {
    const d = await Driver.start(t)
    const r = new Replayer(t, d)
    const variant = recorded.map((c) => ({ ...c, body: cloneBody(c.body) }))
    const body = variant[0]?.body as { Options: Record<string, Json> }
    body.Options['com.docker.network.generic'] = { [MTU_OPTION]: '1400', [BRIDGE_OPTION]: 'tsnet-opts' }
    await r.replay(variant, {
      after: (call, _body, answer) => {
        if (call.method === 'NetworkDriver.CreateNetwork') {
          const br = d.link('tsnet-opts')
          t.equal(br?.mtu, 1400, '22: the bridge has MTU 1400 from -o com.docker.network.driver.mtu')
          t.same(br?.addresses, ['10.80.0.1/24'], '22: the bridge has the gateway address')
        }
        if (call.method === 'NetworkDriver.Join') {
          const src = answer.json.InterfaceName.SrcName
          t.equal(d.link(src)?.mtu, 1400, '22: the container end has MTU 1400 too')
          const hostEnd = d.link(d.link(src)?.peer ?? '')
          t.equal(hostEnd?.mtu, 1400, '22: the host end has MTU 1400 too')
          t.equal(hostEnd?.master, 'tsnet-opts', '22: the host end is on the named bridge')
        }
      },
    })
    await assertHostEmpty(t, d, 'after network rm')
  })
})

t.test('23: tsnet as the IPAM driver too (--ipam-driver)', async (t) => {
  const d = await Driver.start(t)
  const r = new Replayer(t, d)
  await r.replay([LAB_ACTIVATION_SPACES])
  t.equal(r.subst.get('labnet-local'), 'LocalDefault', 'Docker will send tsnet\'s local space name')

  const calls = loadScenario('legacy/23-ipam-driver')
  await r.replay(calls, {
    after: async (call, body, answer) => {
      const b = body as any
      switch (call.method) {
        case 'IpamDriver.RequestPool':
          t.same(answer.json, { PoolID: 'LocalDefault/10.81.0.0/24', Pool: '10.81.0.0/24', Data: {} }, '23: the explicit pool, with a deterministic PoolID')
          t.same(Object.keys(await d.records('pools')), ['LocalDefault/10.81.0.0/24'], '23: the pool is stored')
          break
        case 'IpamDriver.RequestAddress':
          if (b.Options?.RequestAddressType === 'com.docker.network.gateway') t.equal(answer.json.Address, '10.81.0.1/24', '23: the gateway gets .1')
          else t.equal(answer.json.Address, '10.81.0.2/24', '23: the first container gets the lowest free address, .2')
          break
        case 'NetworkDriver.CreateNetwork':
          t.equal(b.IPv4Data[0].AddressSpace, 'LocalDefault', '23: CreateNetwork carries tsnet\'s space name')
          break
        case 'IpamDriver.ReleasePool':
          t.same(await d.records('pools'), {}, '23: no pool is stored after ReleasePool')
          t.same(await d.records('leases'), {}, '23: no lease is stored after ReleasePool')
          break
      }
    },
  })
  await assertHostEmpty(t, d, 'after network rm')
  t.same(await d.records('pools'), {}, 'no pools are left in the store')
  t.same(await d.records('leases'), {}, 'no leases are left in the store')

  t.test('the PoolID does not depend on the process: a fresh tsnet gives the same one', async (t) => {
    const fresh = await Driver.start(t)
    const req = calls.find((c) => c.method === 'IpamDriver.RequestPool')?.body as any
    const a = await fresh.send('IpamDriver.RequestPool', { ...req, AddressSpace: 'LocalDefault' })
    t.equal(a.json?.PoolID, 'LocalDefault/10.81.0.0/24')
  })
})

t.test('23 (continued): releases free the address for the next container', async (t) => {
  const d = await Driver.start(t)
  const r = new Replayer(t, d)
  const calls = loadScenario('legacy/23-ipam-driver')
  // Pool, gateway, network, container .2, then the container goes (ReleaseAddress .2) and comes back.
  await r.replay([LAB_ACTIVATION_SPACES, ...calls.slice(0, 4)])
  const pool = r.subst.get('pool-10.81.0.0/24') ?? 'pool-10.81.0.0/24'
  const release = { method: 'IpamDriver.ReleaseAddress', body: { PoolID: pool, Address: '10.81.0.2' }, recorded: {}, source: 'synthetic' }
  const again = { method: 'IpamDriver.RequestAddress', body: { PoolID: pool, Address: '', Options: null }, recorded: {}, source: 'synthetic' }
  await r.replay([release, again])
  t.equal(r.answers.at(-1)?.answer.json.Address, '10.81.0.2/24', 'the released address is the lowest free again')
  const leases = Object.values(await d.records('leases')).map((l: any) => l.address).sort()
  t.same(leases, ['10.81.0.1', '10.81.0.2'], 'the store holds exactly the gateway and the new lease')
})

t.test('24: network without --subnet (Docker\'s default IPAM chose 172.18.0.0/16)', async (t) => {
  const d = await Driver.start(t)
  const r = new Replayer(t, d)
  await r.replay(loadScenario('legacy/24-no-subnet-default-ipam'), {
    after: async (call) => {
      if (call.method === 'NetworkDriver.CreateNetwork') {
        const n = Object.values(await d.records('networks'))[0] as any
        t.same(d.link(n.spec.bridge)?.addresses, ['172.18.0.1/16'], '24: the bridge has 172.18.0.1/16')
      }
    },
  })
  await assertHostEmpty(t, d, 'after network rm')
})

t.test('30: eleven `docker run --rm` in a row (the timing run)', async (t) => {
  const d = await Driver.start(t)
  const r = new Replayer(t, d)
  await r.replay(loadScenario('legacy/30-timing'))
  const macs = byMethod(r, 'NetworkDriver.CreateEndpoint').map((x) => x.answer.json.Interface.MacAddress)
  t.same(macs, macs.map(() => macForIpv4('10.77.0.2/24')), 'each run reused 10.77.0.2 and got the same MAC')
  t.ok(byMethod(r, 'NetworkDriver.Join').every((x) => x.answer.json.Gateway === ipOf('10.77.0.1/24')))
  await assertHostEmpty(t, d, 'after network rm')
})
