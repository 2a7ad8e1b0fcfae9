// The kernel settings of tsnet's own bridges, as serve drives them over FakeHost: accept_ra off at
// create and at boot (none on a kernel without IPv6), and route_localnet on only while a published
// port needs the host's 127.0.0.1 path to a container behind the bridge: on before the DNAT rules,
// off again when the last such port goes, whichever way it goes (Revoke, DeleteEndpoint, a failed
// Program, a restart). And host/sysctl-driver: forwarding that tsnet turns on closes FORWARD.
import t from 'tap'
import type { Logger } from 'pino'
import type { Family } from '../../src/core/addr.js'
import { bridgeNameFor } from '../../src/core/names.js'
import { SysctlDriver } from '../../src/host/sysctl-driver.js'
import type { SysctlOutcome, Sysctls } from '../../src/host/sysctl.js'
import { TestHost, attach, netReq, openUnit, plant, program, revoke, tcp } from './fixtures/services.js'
import { dockerId, log } from './fixtures/util.js'

const NET = dockerId('0a')
const NET2 = dockerId('0b')
const EP = dockerId('e1')
const EP2 = dockerId('e2')
const BR = bridgeNameFor(NET)
const BR2 = bridgeNameFor(NET2)
const localnet = (bridge: string) => `net/ipv4/conf/${bridge}/route_localnet`
const acceptRa = (bridge: string) => `net/ipv6/conf/${bridge}/accept_ra`
const setting = (path: string, value: string) => ({ kind: 'sysctl' as const, path, value })

t.test('CreateNetwork: accept_ra off, route_localnet off; a kernel without IPv6 is fine', async (t) => {
  const { services, host } = await openUnit(t)
  plant(host, setting(localnet(BR), '1')) // e.g. net.ipv4.conf.default.route_localnet=1 on this host
  await services.driver.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24'), log)
  t.equal(host.sysctls.get(acceptRa(BR)), '0', 'no Router Advertisements on the bridge')
  t.equal(host.sysctls.get(localnet(BR)), '0', 'no route_localnet: no published port needs it')

  const noV6 = new TestHost()
  noV6.hostFacts = { ...noV6.hostFacts, ipv6: false } // booted with ipv6.disable=1
  const u = await openUnit(t, { host: noV6 })
  t.same(await u.services.driver.createNetwork(netReq(NET2, '10.2.0.0/24', '10.2.0.1/24'), log), {}, 'no IPv6 conf directory: the network is still made')
  t.equal(noV6.sysctls.get(acceptRa(BR2)), undefined, 'and no IPv6 setting is written')
  t.equal(noV6.sysctls.get(localnet(BR2)), '0')
  t.same((await u.dryRun()).changes, [])
})

t.test('route_localnet follows the ports that need it: loopback and wildcard IPv4 bindings', async (t) => {
  const u = await openUnit(t)
  const { services, host } = u
  await services.driver.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24'), log)
  await services.driver.createNetwork(netReq(NET2, '10.2.0.0/24', '10.2.0.1/24'), log)
  await attach(u, NET, EP, '10.1.0.2/24')
  await attach(u, NET, EP2, '10.1.0.3/24')
  await attach(u, NET2, dockerId('e3'), '10.2.0.2/24')

  await program(u, NET, EP, [tcp(80, 8080, { HostIP: '192.0.2.10' })])
  t.equal(host.sysctls.get(localnet(BR)), '0', 'a specific host address: the host connects from it, no route_localnet')
  await program(u, NET, EP, [tcp(80, 8080, { HostIP: '127.0.0.1' })])
  t.equal(host.sysctls.get(localnet(BR)), '1', 'a loopback binding turns it on')
  t.equal(host.sysctls.get(localnet(BR2)), '0', 'on that bridge only')
  await program(u, NET, EP2, [tcp(80, 8081)])
  await revoke(u, NET, EP)
  t.equal(host.sysctls.get(localnet(BR)), '1', 'a wildcard binding of another endpoint still needs it')
  await services.driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP2 }, log)
  t.equal(host.sysctls.get(localnet(BR)), '0', 'the last such port gone (DeleteEndpoint): off again')
  t.same((await u.dryRun()).changes, [])
})

t.test('route_localnet is on before the DNAT rules, and off again when publishing fails', async (t) => {
  const u = await openUnit(t)
  const { services, host } = u
  await services.driver.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24'), log)
  await attach(u, NET, EP, '10.1.0.2/24')
  const from = host.applied.length
  await program(u, NET, EP, [tcp(80, 8080)])
  const order = host.applied.slice(from).filter((c) => c.includes('route_localnet') || c.startsWith('create dnat'))
  t.same(order.map((c) => c.split(' ').slice(0, 2).join(' ')), ['update sysctl', 'create dnat'], `route_localnet first, then the rule (${order.join('; ')})`)

  await revoke(u, NET, EP)
  for (const op of ['reservePort', 'dnat:create'] as const) {
    host.failNext.add(op)
    await t.rejects(program(u, NET, EP, [tcp(80, 8080, { HostIP: '127.0.0.1' })]), { name: 'TsnetError', kind: 'host' }, `${op} fails`)
    t.equal(host.sysctls.get(localnet(BR)), '0', `after the failed Program (${op}): off again`)
  }
  host.failNext.add('sysctl')
  await t.rejects(program(u, NET, EP, [tcp(80, 8080, { HostIP: '127.0.0.1' })]), { name: 'TsnetError', kind: 'host', message: /injected failure in sysctl:update/ }, 'route_localnet cannot be set: refused')
  t.equal(host.portRules.size, 0, 'and nothing was published')
  t.equal(host.heldPorts.size, 0)
  t.same((await u.dryRun()).changes, [])
})

t.test('boot reconcile: accept_ra off again, route_localnet as the stored ports need it', async (t) => {
  const first = await openUnit(t)
  await first.services.driver.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24'), log)
  await first.services.driver.createNetwork(netReq(NET2, '10.2.0.0/24', '10.2.0.1/24'), log)
  await attach(first, NET, EP, '10.1.0.2/24')
  await program(first, NET, EP, [tcp(80, 8080, { HostIP: '127.0.0.1' })])
  first.services.reconciler.stop()

  const host = new TestHost() // as an earlier tsnet left the kernel: route_localnet on every bridge, RAs accepted
  for (const b of [BR, BR2]) {
    plant(host, setting(localnet(b), '1'))
    plant(host, setting(acceptRa(b), '1'))
  }
  await openUnit(t, { dir: first.dir, host })
  t.equal(host.sysctls.get(acceptRa(BR)), '0')
  t.equal(host.sysctls.get(acceptRa(BR2)), '0', 'accept_ra off on every bridge')
  t.equal(host.sysctls.get(localnet(BR)), '1', 'the bridge with a loopback publish keeps route_localnet')
  t.equal(host.sysctls.get(localnet(BR2)), '0', 'the other one loses it')
})

/** Kernel settings in memory, as ProcSysctls reports them. */
class MemorySysctls implements Sysctls {
  constructor(readonly values: Map<string, string>) {}
  async get(key: string) { return this.values.get(key) }
  async set(key: string, value: string): Promise<SysctlOutcome> {
    const was = this.values.get(key)
    if (was === undefined) return 'absent'
    this.values.set(key, value)
    return was === value ? 'unchanged' : 'changed'
  }
}

t.test('sysctl driver: forwarding turned on by tsnet closes FORWARD by default; already on, the policy is the host\'s business', async (t) => {
  const closed: Family[] = []
  const run = async (values: Record<string, string>, path: string, value: string) => {
    closed.length = 0
    const sysctls = new MemorySysctls(new Map(Object.entries(values)))
    const driver = new SysctlDriver(sysctls, async (f: Family, _l: Logger) => { closed.push(f) })
    await driver.apply([{ op: 'update', obj: setting(path, value), from: setting(path, values[path] ?? '') }], log)
    return { sysctls, closed: [...closed] }
  }
  t.same((await run({ 'net/ipv4/ip_forward': '0' }, 'net/ipv4/ip_forward', '1')).closed, [4], 'IPv4 forwarding turned on: FORWARD drops by default (tsnet\'s chains accept its own traffic)')
  t.same((await run({ 'net/ipv6/conf/all/forwarding': '0' }, 'net/ipv6/conf/all/forwarding', '1')).closed, [6], 'IPv6 alike')
  t.same((await run({ 'net/ipv4/ip_forward': '1' }, 'net/ipv4/ip_forward', '1')).closed, [], 'forwarding was on already (Docker turned it on): the policy stays')
  t.same((await run({ [localnet(BR)]: '0' }, localnet(BR), '1')).closed, [], 'another setting: nothing to close')
  await t.rejects(run({}, acceptRa(BR), '0'), { name: 'TsnetError', kind: 'host', message: `this kernel has no setting net.ipv6.conf.${BR}.accept_ra` }, 'a setting the kernel lacks is an error')
  const driver = new SysctlDriver(new MemorySysctls(new Map([['net/ipv4/ip_forward', '1']])), async () => { throw new Error('not expected') })
  await driver.apply([{ op: 'delete', obj: setting('net/ipv4/ip_forward', '1') }], log)
  t.same(await driver.observe({ keys: ['sysctl net/ipv4/ip_forward'], allOwned: false, fresh: true }), [setting('net/ipv4/ip_forward', '1')], 'settings are shared with the host: tsnet never takes one back')
})
