// The netlink client's addresses and routes against a real kernel, in a namespace of the test's
// own, compared with `ip -j addr` and `ip -j route`.
import t from 'tap'
import { createNetns, globalCidrs, nsState } from './lib/netns.js'
import { startProbe } from './lib/netlink-probe.js'
import { ipAddrs, ipLink, ipRoutes } from './lib/ip-json.js'
import type { Address, Route } from '../../src/host/netlink/index.js'

t.test('addresses: add both families (IPv6 without DAD), list, replace, delete', async (t) => {
  const ns = await createNetns(t)
  const nl = await startProbe(t, ns)
  await nl.call('createLink', { kind: 'bridge', name: 'br-a', up: true })
  await nl.call('createLink', { kind: 'bridge', name: 'br-b', up: true })

  await nl.call('addAddress', 'br-a', '10.60.0.1/24')
  await nl.call('addAddress', 'br-a', 'fd60::1/64')
  await nl.call('addAddress', 'br-b', '10.61.0.1/16')
  t.same(await globalCidrs(ns, 'br-a'), ['10.60.0.1/24', 'fd60::1/64'], 'ip sees both')
  const v6 = (await ipAddrs(ns, 'br-a')).find((a) => a.local === 'fd60::1')
  t.equal(v6?.nodad, true, 'IPv6 address carries nodad')
  t.notOk(v6?.tentative, 'and is not tentative: usable at once')

  const index = (await ipLink(ns, 'br-a'))?.ifindex
  const listed = await nl.call<Address[]>('listAddresses', { link: 'br-a' })
  t.same(listed.filter((a) => a.scope === 'global').sort((x, y) => x.family - y.family), [
    { link: index, family: 4, address: '10.60.0.1', prefixLength: 24, cidr: '10.60.0.1/24', scope: 'global', label: 'br-a', tentative: false, dadFailed: false, nodad: false, permanent: true },
    { link: index, family: 6, address: 'fd60::1', prefixLength: 64, cidr: 'fd60::1/64', scope: 'global', tentative: false, dadFailed: false, nodad: true, permanent: true },
  ], 'listAddresses of one link: both families')
  const onlyV4 = await nl.call<Address[]>('listAddresses', { family: 4 })
  t.same(onlyV4.map((a) => a.cidr).sort(), ['10.60.0.1/24', '10.61.0.1/16', '127.0.0.1/8'], 'listAddresses of a family, every link')
  const everyIp = (JSON.parse(await ns.ok('ip', ['-j', 'addr', 'show'])) as Array<{ addr_info: Array<{ local: string; prefixlen: number; scope: string }> }>)
    .flatMap((l) => l.addr_info.map((a) => `${a.local}/${a.prefixlen} ${a.scope}`)).sort()
  const everyNl = (await nl.call<Address[]>('listAddresses')).map((a) => `${a.cidr} ${a.scope}`).sort()
  t.ok(everyIp.includes('::1/128 host'), 'control: loopback addresses are among them')
  t.same(everyNl, everyIp, 'listAddresses of every link and family lists what ip addr lists, scopes included')

  const refused = await nl.fails('addAddress', 'br-a', '10.60.0.1/24')
  t.same(refused, { kind: 'conflict', message: 'address 10.60.0.1/24 is already on link br-a', name: 'TsnetError' }, 'add of an address that is there')
  const before = await nsState(ns)
  await nl.call('replaceAddress', 'br-a', '10.60.0.1/24')
  await nl.call('addAddress', 'br-a', 'fd60::1/64', { replace: true })
  t.same(await nsState(ns), before, 'replace of an address that is there changes nothing')
  await nl.call('replaceAddress', 'br-a', '10.60.0.2/24')
  t.same(await globalCidrs(ns, 'br-a'), ['10.60.0.1/24', '10.60.0.2/24', 'fd60::1/64'], 'replace adds one that is not')

  await nl.call('deleteAddress', 'br-a', '10.60.0.2/24')
  await nl.call('deleteAddress', 'br-a', 'fd60::1/64')
  t.same(await globalCidrs(ns, 'br-a'), ['10.60.0.1/24'], 'deleted, the other kept')
  t.same(await nl.fails('deleteAddress', 'br-a', 'fd60::1/64'), {
    kind: 'notfound', message: 'address fd60::1/64 is not on link br-a', name: 'TsnetError',
  }, 'delete of an address that is not there')
  t.same(await nl.fails('addAddress', 'nosuch0', '10.1.1.1/24'), { kind: 'notfound', message: 'no link named nosuch0', name: 'TsnetError' })
  t.same(await nl.fails('addAddress', 'br-a', '10.1.1.1'), {
    kind: 'invalid', message: 'address "10.1.1.1" is not of the form address/prefix-length', name: 'TsnetError',
  }, 'a bare address is refused')
  t.same(await nl.fails('listAddresses', { link: 'nosuch0' }), { kind: 'notfound', message: 'no link named nosuch0', name: 'TsnetError' })
})

t.test('routes: the main table per family, default route device and MTU, gateways, protocols', async (t) => {
  const ns = await createNetns(t)
  const nl = await startProbe(t, ns)
  await nl.call('createLink', { kind: 'veth', name: 'up0', mtu: 1460, up: true, peer: { name: 'up0p' } })
  await ns.ok('ip', ['link', 'set', 'dev', 'up0p', 'up'])
  await nl.call('addAddress', 'up0', '192.0.2.10/24')
  await nl.call('addAddress', 'up0', '2001:db8::10/64')
  await ns.ok('ip', ['route', 'add', 'default', 'via', '192.0.2.1', 'dev', 'up0'])
  await ns.ok('ip', ['route', 'add', '198.51.100.0/24', 'via', '192.0.2.2', 'mtu', '1400', 'proto', 'static'])
  await ns.ok('ip', ['-6', 'route', 'add', 'default', 'via', '2001:db8::1', 'dev', 'up0'])
  await ns.ok('ip', ['route', 'add', '203.0.113.0/24', 'dev', 'up0', 'table', '100'])
  const up0 = (await ipLink(ns, 'up0'))?.ifindex

  const v4 = await nl.call<Route[]>('listRoutes', 4)
  const def = v4.find((r) => r.dst === 'default')
  t.match(def, { family: 4, dev: up0, gateway: '192.0.2.1', protocol: 'boot', scope: 'global', type: 'unicast', table: 254 }, 'default route')
  t.match(v4.find((r) => r.dst === '198.51.100.0/24'), { gateway: '192.0.2.2', mtu: 1400, protocol: 'static' }, 'a route with its own MTU')
  t.match(v4.find((r) => r.dst === '192.0.2.0/24'), { dev: up0, scope: 'link', protocol: 'kernel', prefsrc: '192.0.2.10' }, 'the connected route')
  t.notOk(v4.some((r) => r.dst === '203.0.113.0/24'), 'other tables are left out')
  const ip4 = await ipRoutes(ns, 4)
  t.same(v4.map((r) => r.dst).sort(), ip4.map((r) => r.dst).sort(), 'the same destinations as ip -4 route show table main')
  t.equal(ip4.find((r) => r.dst === '198.51.100.0/24')?.metrics?.[0]?.mtu, 1400, 'control: ip sees the route MTU too')

  const v6 = await nl.call<Route[]>('listRoutes', 6)
  t.match(v6.find((r) => r.dst === 'default'), { family: 6, dev: up0, gateway: '2001:db8::1' }, 'IPv6 default route')
  t.same(v6.map((r) => r.dst).sort(), (await ipRoutes(ns, 6)).map((r) => r.dst).sort(), 'the same destinations as ip -6 route show table main')
  t.equal((await ipLink(ns, 'up0'))?.mtu, 1460, 'the default route device MTU a caller would look up')
})
