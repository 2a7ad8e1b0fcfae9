// Macvlan mode as Docker drives it, over FakeHost: the objects a network and its containers make
// (and do not make), the 802.1Q sub-interface shared by the networks on it, and every refusal
// answered with {"Err"} while the store and the host stay exactly as they were.
import t, { type Test } from 'tap'
import { FULL_HOST } from '../../src/core/host-facts.js'
import type { LinkObject } from '../../src/core/objects.js'
import { Driver } from './fixtures/driver.js'

const id = (lead: string) => (lead + '0123456789abcdef'.repeat(4)).slice(0, 64)
const NET = id('ab10')
const NET2 = id('ab20')
const NET3 = id('ab30')
const EP = id('ce10')
const EP2 = id('ce20')
const SANDBOX = '/var/run/docker/netns/5a2d0c0ffee0'

/** A physical interface as the link driver reports it. */
const eth = (name: string, over: Partial<LinkObject> = {}): LinkObject => ({
  kind: 'link', name, type: 'device' as LinkObject['type'], alias: '', mtu: 1500, mac: '52:54:00:aa:bb:01', up: true, recreate: false, ...over,
})

async function lan(t: Test, links: LinkObject[] = [eth('eth0')]): Promise<Driver> {
  const d = await Driver.start(t)
  for (const l of links) d.host.objects.set(`link ${l.name}`, l)
  return d
}

function network(net: string, generic: Record<string, string>, pool = '192.168.10.0/24', gateway = '192.168.10.1/24', extra: Record<string, unknown> = {}) {
  return {
    NetworkID: net,
    Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': { 'tsnet.mode': 'macvlan', ...generic }, ...extra },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: pool, Gateway: gateway }],
    IPv6Data: [],
  }
}

const endpoint = (net: string, ep: string, address: string, v6 = '') => ({
  NetworkID: net, EndpointID: ep, Interface: { Address: address, AddressIPv6: v6, MacAddress: '' },
  Options: { 'com.docker.network.endpoint.exposedports': [], 'com.docker.network.portmap': [] },
})

async function ok(t: Test, d: Driver, method: string, body: unknown) {
  const a = await d.send(method, body as never)
  t.equal(a.status, 200, `${method}: ${a.text}`)
  return a.json
}

/** Sends a request that must be refused with `re`, and checks that nothing changed. */
async function refused(t: Test, d: Driver, method: string, body: unknown, re: RegExp) {
  const before = await d.state()
  const a = await d.send(method, body as never)
  t.not(a.status, 200, `${method} is refused`)
  t.match(a.json?.Err, re, `the sentence: ${a.json?.Err}`)
  t.same(await d.state(), before, 'store and host exactly as before')
}

const dryRun = async (d: Driver) => (await d.send('Tsnet.Reconcile', { DryRun: true })).json

t.test('a container on the LAN: one macvlan link, nothing else on the host', async (t) => {
  const d = await lan(t)
  const empty = d.host.state()
  await ok(t, d, 'NetworkDriver.CreateNetwork', network(NET, { parent: 'eth0' }))
  t.equal(d.host.state(), empty, 'the network changes nothing on the host: no bridge, address, setting or rule')
  const rec = (await d.records('networks'))[NET]
  t.same(rec.spec, { parent: 'eth0', macvlanMode: 'bridge', parentCreated: false })
  const created = await ok(t, d, 'NetworkDriver.CreateEndpoint', endpoint(NET, EP, '192.168.10.2/24'))
  t.same(created, { Interface: { MacAddress: '02:42:c0:a8:0a:02' } })
  const child = d.link('tsmce1001234567')
  t.match(child, { type: 'macvlan', macvlan: { parent: 'eth0', mode: 'bridge' }, mac: '02:42:c0:a8:0a:02', mtu: 1500, up: false, alias: `tsnet:ep:${EP}` })
  t.equal(d.host.ofKind('link').length, 2, 'eth0 and the one link')
  t.same((await ok(t, d, 'NetworkDriver.EndpointOperInfo', { NetworkID: NET, EndpointID: EP })).Value,
    { macAddress: '02:42:c0:a8:0a:02', address: '192.168.10.2/24' }, 'no host interface to report')
  const joined = await ok(t, d, 'NetworkDriver.Join', { NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX, Options: {} })
  t.same(joined, { InterfaceName: { SrcName: 'tsmce1001234567', DstPrefix: 'eth' }, Gateway: '192.168.10.1' }, "the LAN's router is the gateway")
  // Docker moves the link into the container: a reconcile finds nothing to do and nothing missing.
  const inContainer = d.host.objects.get('link tsmce1001234567')
  d.host.objects.delete('link tsmce1001234567')
  t.match(await dryRun(d), { Changes: [], Failed: [], Missing: [], Foreign: [] }, 'the moved link is neither missing nor made again')
  t.equal(d.host.edge, false, 'tsnet\'s chains were never made')
  t.same([...d.host.sets.keys()], [], 'nor any set member')
  await ok(t, d, 'NetworkDriver.Leave', { NetworkID: NET, EndpointID: EP })
  // Docker calls Leave first and moves the link back after it (libnetwork sbLeave, then
  // clearNetworkResources): Leave makes no link under the name of the one still in the container.
  t.equal(d.link('tsmce1001234567'), undefined, 'left: no second link under its name')
  if (inContainer) d.host.objects.set('link tsmce1001234567', inContainer)
  t.match(d.link('tsmce1001234567'), { type: 'macvlan', macvlan: { parent: 'eth0' }, alias: `tsnet:ep:${EP}` }, 'Docker moved it back')
  await ok(t, d, 'NetworkDriver.DeleteEndpoint', { NetworkID: NET, EndpointID: EP })
  await ok(t, d, 'NetworkDriver.DeleteNetwork', { NetworkID: NET })
  t.equal(d.host.state(), empty, 'the parent as it was, nothing else')
  t.match(await dryRun(d), { Changes: [], Missing: [] })
})

t.test('dual stack: both gateways come from the IPAM data', async (t) => {
  const d = await lan(t)
  const body = {
    ...network(NET, { parent: 'eth0' }), Options: { 'com.docker.network.enable_ipv6': true, 'com.docker.network.generic': { 'tsnet.mode': 'macvlan', parent: 'eth0' } },
    IPv6Data: [{ AddressSpace: 'LocalDefault', Pool: 'fd00:10::/64', Gateway: 'fd00:10::1/64' }],
  }
  await ok(t, d, 'NetworkDriver.CreateNetwork', body)
  await ok(t, d, 'NetworkDriver.CreateEndpoint', endpoint(NET, EP, '192.168.10.2/24', 'fd00:10::2/64'))
  t.same(await ok(t, d, 'NetworkDriver.Join', { NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX, Options: {} }),
    { InterfaceName: { SrcName: 'tsmce1001234567', DstPrefix: 'eth' }, Gateway: '192.168.10.1', GatewayIPv6: 'fd00:10::1' })
})

t.test('published ports and policies: refused, host netfilter never sees the traffic', async (t) => {
  const d = await lan(t)
  await ok(t, d, 'NetworkDriver.CreateNetwork', network(NET, { parent: 'eth0' }))
  await ok(t, d, 'NetworkDriver.CreateEndpoint', endpoint(NET, EP, '192.168.10.2/24'))
  await ok(t, d, 'NetworkDriver.Join', { NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX, Options: {} })
  for (const [what, HostPort] of [['-p 8080:80', 8080], ['-p 80 (any host port)', 0]] as const) {
    const portmap = [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort, HostPortEnd: HostPort }]
    await refused(t, d, 'NetworkDriver.ProgramExternalConnectivity', {
      NetworkID: NET, EndpointID: EP, Options: { 'com.docker.network.portmap': portmap, 'com.docker.network.endpoint.exposedports': [{ Proto: 6, Port: 80 }] },
    }, /a macvlan network publishes no ports: host netfilter never sees its traffic/)
    t.comment(what)
  }
  t.same(await ok(t, d, 'NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET, EndpointID: EP, Options: {} }), {}, 'nothing to publish: fine')
  await refused(t, d, 'Tsnet.Policy', { Network: NET, Allow: 'other tcp/80' }, /is a macvlan network: host netfilter never sees its traffic, so it takes no policy/)
})

t.test('the 802.1Q sub-interface: made once, kept while any network uses it, removed with the last', async (t) => {
  const d = await lan(t)
  const empty = d.host.state()
  await ok(t, d, 'NetworkDriver.CreateNetwork', network(NET, { parent: 'eth0.10' }))
  t.match(d.link('eth0.10'), { type: 'vlan', vlan: { parent: 'eth0', id: 10 }, alias: 'tsnet:vlan', up: true, mtu: 1500 })
  t.match((await d.records('networks'))[NET].spec, { parentCreated: true, vlan: { link: 'eth0', id: 10, mtu: 1500 } }, 'the record says tsnet made it')
  await ok(t, d, 'NetworkDriver.CreateNetwork', network(NET2, { parent: 'eth0.10' }, '192.168.11.0/24', '192.168.11.1/24'))
  await ok(t, d, 'NetworkDriver.CreateEndpoint', endpoint(NET2, EP2, '192.168.11.2/24'))
  t.match(d.link('tsmce2001234567'), { macvlan: { parent: 'eth0.10' } })
  await ok(t, d, 'NetworkDriver.DeleteNetwork', { NetworkID: NET })
  t.ok(d.link('eth0.10'), 'the second network still uses it')
  t.match(await dryRun(d), { Changes: [] }, 'and a reconcile agrees')
  await ok(t, d, 'NetworkDriver.DeleteEndpoint', { NetworkID: NET2, EndpointID: EP2 })
  await ok(t, d, 'NetworkDriver.DeleteNetwork', { NetworkID: NET2 })
  t.notOk(d.link('eth0.10'), 'gone with the last network')
  t.equal(d.host.state(), empty, 'eth0 as it was')
})

t.test('a sub-interface tsnet did not make is used and left alone', async (t) => {
  const users = eth('eth0.20', { type: 'vlan', vlan: { parent: 'eth0', id: 20 }, mac: '52:54:00:aa:bb:01' })
  const d = await lan(t, [eth('eth0'), users])
  const before = d.host.state()
  await ok(t, d, 'NetworkDriver.CreateNetwork', network(NET, { parent: 'eth0.20' }))
  t.same((await d.records('networks'))[NET].spec, { parent: 'eth0.20', macvlanMode: 'bridge', parentCreated: false })
  await ok(t, d, 'NetworkDriver.DeleteNetwork', { NetworkID: NET })
  t.equal(d.host.state(), before, 'eth0.20 is still there, untouched')
})

t.test('a sub-interface lost meanwhile is made again by the reconcile', async (t) => {
  const d = await lan(t)
  await ok(t, d, 'NetworkDriver.CreateNetwork', network(NET, { parent: 'eth0.10' }))
  d.host.objects.delete('link eth0.10')
  t.match(await dryRun(d), { Changes: ['create link eth0.10'] })
})

t.test('refusals: the sentence, and store and host unchanged', async (t) => {
  const d = await lan(t, [eth('eth0'), eth('eth1', { up: false }), eth('br0', { type: 'bridge' }), eth('eth2', { master: 'br0' })])
  await ok(t, d, 'NetworkDriver.CreateNetwork', network(NET, { parent: 'eth0' }))
  const cases: Array<[string, unknown, RegExp]> = [
    ['no parent', network(NET2, {}), /needs -o parent=<interface>/],
    ['a parent that does not exist', network(NET2, { parent: 'eth7' }), /there is no interface named "eth7" on this host/],
    ['a parent that is down', network(NET2, { parent: 'eth1' }), /eth1 is down/],
    ['a bridge port', network(NET2, { parent: 'eth2' }), /eth2 is a port of br0/],
    ['the same parent, an overlapping subnet', network(NET2, { parent: 'eth0' }, '192.168.10.128/25', '192.168.10.129/25'),
      /subnet 192\.168\.10\.128\/25 overlaps subnet 192\.168\.10\.0\/24 of macvlan network ab1001234567, which is on the same parent eth0/],
    ['a sub-interface on a missing link', network(NET2, { parent: 'eth9.10' }), /nor eth9 to make it on/],
    ['tsnet.allow', network(NET2, { parent: 'eth0', 'tsnet.allow': 'other tcp/80' }, '192.168.20.0/24', '192.168.20.1/24'), /needs the host firewall, which never sees the traffic of a macvlan network/],
    ['enable_icc=false', network(NET2, { parent: 'eth0', 'com.docker.network.bridge.enable_icc': 'false' }, '192.168.20.0/24', '192.168.20.1/24'), /host netfilter never sees/],
    ['enable_ip_masquerade', network(NET2, { parent: 'eth0', 'com.docker.network.bridge.enable_ip_masquerade': 'true' }, '192.168.20.0/24', '192.168.20.1/24'), /host netfilter never sees/],
    ['--internal', network(NET2, { parent: 'eth0' }, '192.168.20.0/24', '192.168.20.1/24', { 'com.docker.network.internal': true }), /--internal cannot be given to a macvlan network/],
    ['an MTU above the parent\'s', network(NET2, { parent: 'eth0', 'com.docker.network.driver.mtu': '9000' }, '192.168.20.0/24', '192.168.20.1/24'), /larger than the MTU of the parent eth0 \(1500\)/],
    ['a bad macvlan_mode', network(NET2, { parent: 'eth0', macvlan_mode: 'source' }, '192.168.20.0/24', '192.168.20.1/24'), /is not a macvlan mode/],
    ['ipvlan', network(NET2, { 'tsnet.mode': 'ipvlan', parent: 'eth0' }), /tsnet\.mode=ipvlan: ipvlan mode is not available/],
  ]
  for (const [what, body, re] of cases) await t.test(what, (tt) => refused(tt, d, 'NetworkDriver.CreateNetwork', body, re))
})

t.test('a kernel without 802.1Q or ipvlan: refused with what the kernel says', async (t) => {
  const d = await lan(t)
  d.host.hostFacts = { ...FULL_HOST, linkKinds: new Set(['bridge', 'veth', 'macvlan']) }
  await refused(t, d, 'NetworkDriver.CreateNetwork', network(NET, { parent: 'eth0.10' }),
    /there is no interface named eth0\.10, and tsnet cannot create it as an 802\.1Q sub-interface of eth0 with VLAN 10: this kernel has no vlan support/)
  await refused(t, d, 'NetworkDriver.CreateNetwork', network(NET, { 'tsnet.mode': 'ipvlan', parent: 'eth0' }), /this kernel has no ipvlan support/)
})

t.test('host failures roll back: the link of a container, the sub-interface of a network', async (t) => {
  const d = await lan(t)
  d.host.failNext.add('link:create')
  await refused(t, d, 'NetworkDriver.CreateNetwork', network(NET, { parent: 'eth0.10' }), /creating network ab1001234567 \(rolled back: the host is as it was\): injected failure/)
  await ok(t, d, 'NetworkDriver.CreateNetwork', network(NET, { parent: 'eth0' }))
  d.host.failNext.add('link:create')
  await refused(t, d, 'NetworkDriver.CreateEndpoint', endpoint(NET, EP, '192.168.10.2/24'), /creating endpoint ce1001234567 \(rolled back: the host is as it was\)/)
})

t.test('passthru: one network per parent; the container takes the parent\'s MAC', async (t) => {
  const d = await lan(t)
  await ok(t, d, 'NetworkDriver.CreateNetwork', network(NET, { parent: 'eth0', macvlan_mode: 'passthru' }))
  const created = await ok(t, d, 'NetworkDriver.CreateEndpoint', endpoint(NET, EP, '192.168.10.2/24'))
  t.same(created, { Interface: { MacAddress: '52:54:00:aa:bb:01' } }, "Docker is told the parent's MAC")
  t.equal(d.link('tsmce1001234567')?.mac, undefined, 'tsnet sets no MAC on it (the kernel would set it on the parent)')
  await refused(t, d, 'NetworkDriver.CreateNetwork', network(NET3, { parent: 'eth0' }, '192.168.30.0/24', '192.168.30.1/24'),
    /a passthru macvlan network needs its parent for itself alone/)
})

t.test('CreateNetwork, CreateEndpoint and Join sent twice: the same answers, the same store and host', async (t) => {
  for (const parent of ['eth0', 'eth0.10']) {
    const d = await lan(t)
    const calls: Array<[string, unknown]> = [
      ['NetworkDriver.CreateNetwork', network(NET, { parent })],
      ['NetworkDriver.CreateEndpoint', endpoint(NET, EP, '192.168.10.2/24')],
      ['NetworkDriver.Join', { NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX, Options: {} }],
    ]
    for (const [method, body] of calls) {
      const first = await ok(t, d, method, body)
      const after = await d.state()
      t.same(await ok(t, d, method, body), first, `${parent}: ${method} again answers the same`)
      t.same(await d.state(), after, `${parent}: ${method} again changes nothing`)
    }
  }
})
