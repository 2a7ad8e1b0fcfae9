// routedPrefixes and defaultRouteMtu of the real host layer (rtnetlink route and link dumps) read
// the routing table of a private namespace.
import t from 'tap'
import { addPlainDevice, createNetns } from './lib/netns.js'
import { hostIn } from './lib/remote-host.js'

t.test('routedPrefixes lists connected and static routes, never the default route', async (t) => {
  const ns = await createNetns(t)
  const host = hostIn(t, ns)
  t.same((await host.routedPrefixes()).filter((p) => !p.startsWith('fe80:') && p !== '::1/128'), [], 'fresh namespace: nothing routed')

  await addPlainDevice(ns, 'tsit-d0', ['mtu', '1450'])
  await ns.ok('ip', ['addr', 'add', '10.99.0.1/24', 'dev', 'tsit-d0'])
  await ns.ok('ip', ['addr', 'add', 'fd99::1/64', 'dev', 'tsit-d0', 'nodad'])
  await ns.ok('ip', ['link', 'set', 'dev', 'tsit-d0', 'up'])
  await ns.ok('ip', ['route', 'add', '10.98.0.5', 'dev', 'tsit-d0'])
  await ns.ok('ip', ['route', 'add', '172.31.0.0/16', 'via', '10.99.0.254'])
  await ns.ok('ip', ['route', 'add', 'default', 'dev', 'tsit-d0'])
  await ns.ok('ip', ['-6', 'route', 'add', 'default', 'dev', 'tsit-d0'])
  // a route in another table is not the main table's business
  await ns.ok('ip', ['route', 'add', '10.97.0.0/24', 'dev', 'tsit-d0', 'table', '100'])

  const got = await host.routedPrefixes()
  t.ok(got.includes('10.99.0.0/24'), 'connected IPv4 prefix of the address')
  t.ok(got.includes('fd99::/64'), 'connected IPv6 prefix of the address')
  t.ok(got.includes('10.98.0.5/32'), 'a host route is given as /32')
  t.ok(got.includes('172.31.0.0/16'), 'a static route via a gateway')
  t.notOk(got.includes('10.97.0.0/24'), 'routes of other tables are not listed')
  t.notOk(got.some((p) => p === 'default' || p === '0.0.0.0/0' || p === '::/0'), 'the default routes are excluded')
  t.ok(got.every((p) => /\/\d+$/.test(p)), 'every entry is a CIDR')
})

t.test('defaultRouteMtu is the MTU of the default-route device', async (t) => {
  const ns = await createNetns(t)
  const host = hostIn(t, ns)
  t.equal(await host.defaultRouteMtu(), undefined, 'no default route: undefined')

  await addPlainDevice(ns, 'tsit-d1', ['mtu', '1450'])
  await addPlainDevice(ns, 'tsit-d2', ['mtu', '9000'])
  await ns.ok('ip', ['addr', 'add', '10.99.0.1/24', 'dev', 'tsit-d1'])
  await ns.ok('ip', ['link', 'set', 'dev', 'tsit-d1', 'up'])
  await ns.ok('ip', ['link', 'set', 'dev', 'tsit-d2', 'up'])
  t.equal(await host.defaultRouteMtu(), undefined, 'devices but no default route: undefined')

  await ns.ok('ip', ['route', 'add', 'default', 'dev', 'tsit-d1'])
  t.equal(await host.defaultRouteMtu(), 1450, 'MTU of the device carrying the default route')

  await ns.ok('ip', ['link', 'set', 'dev', 'tsit-d1', 'mtu', '1380'])
  t.equal(await host.defaultRouteMtu(), 1380, 'follows a change of the device MTU')

  await ns.ok('ip', ['route', 'del', 'default'])
  t.equal(await host.defaultRouteMtu(), undefined, 'default route removed: undefined again')
})
