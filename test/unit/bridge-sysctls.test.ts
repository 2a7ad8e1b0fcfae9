// The kernel settings of tsnet's own bridges, as services/network-service drives them over FakeHost:
// accept_ra off at create and at boot reconcile (absent on a kernel without IPv6 is fine), and
// route_localnet on only while a published port needs the host's 127.0.0.1 path to a container
// behind the bridge: on before the DNAT rules, off again when the last such port goes, whichever
// way it goes (Revoke, DeleteEndpoint, a failed Program, a restart).
import t, { type Test } from 'tap'
import { bridgeNameFor } from '../../src/core/names.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { OPT, type CreateNetworkRequest } from '../../src/protocol/types.js'
import { NetworkService } from '../../src/services/network-service.js'
import { FileStore } from '../../src/store/file-store.js'
import { dockerId, log, tempDir } from './fixtures/util.js'

const NET = dockerId('0a')
const NET2 = dockerId('0b')
const EP = dockerId('e1')
const EP2 = dockerId('e2')
const BR = bridgeNameFor(NET)
const BR2 = bridgeNameFor(NET2)
const localnet = (bridge: string) => `net/ipv4/conf/${bridge}/route_localnet`
const acceptRa = (bridge: string) => `net/ipv6/conf/${bridge}/accept_ra`

function netReq(id: string, pool: string, gw: string, extra: Record<string, unknown> = {}): CreateNetworkRequest {
  return { NetworkID: id, Options: { [OPT.generic]: {}, ...extra }, IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: pool, Gateway: gw }], IPv6Data: [] }
}
const tcp = (port: number, hostPort: number, hostIp = '') => ({ Proto: 6, IP: '', Port: port, HostIP: hostIp, HostPort: hostPort, HostPortEnd: hostPort })

async function setup(t: Test, dir?: string, host = new FakeHost()) {
  const d = dir ?? (await tempDir(t))
  const svc = new NetworkService(await FileStore.open(d), host, {})
  await svc.load()
  const attach = async (net: string, ep: string, address: string) => {
    await svc.createEndpoint({ NetworkID: net, EndpointID: ep, Interface: { Address: address, AddressIPv6: '', MacAddress: '' } }, log)
    await svc.join({ NetworkID: net, EndpointID: ep, SandboxKey: `/var/run/docker/netns/${ep.slice(0, 12)}`, Options: {} }, log)
  }
  const program = (net: string, ep: string, portMap: unknown[]) =>
    svc.programExternalConnectivity({ NetworkID: net, EndpointID: ep, Options: { [OPT.portMap]: portMap } }, log)
  const revoke = (net: string, ep: string) => svc.revokeExternalConnectivity({ NetworkID: net, EndpointID: ep }, log)
  return { dir: d, host, svc, attach, program, revoke }
}

t.test('CreateNetwork: accept_ra off, route_localnet off; a kernel without IPv6 is fine', async (t) => {
  const { svc, host } = await setup(t)
  host.sysctls.set(localnet(BR), '1') // e.g. net.ipv4.conf.default.route_localnet=1 on this host
  await svc.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24'), log)
  t.equal(host.sysctls.get(acceptRa(BR)), '0', 'no Router Advertisements on the bridge')
  t.equal(host.sysctls.get(localnet(BR)), '0', 'no route_localnet: no published port needs it')

  host.absentSysctls.add(acceptRa(BR2)) // booted with ipv6.disable=1
  t.same(await svc.createNetwork(netReq(NET2, '10.2.0.0/24', '10.2.0.1/24'), log), {}, 'no IPv6 conf directory: the network is still made')
  t.equal(host.sysctls.get(acceptRa(BR2)), undefined)
})

t.test('route_localnet follows the ports that need it: loopback and wildcard IPv4 bindings', async (t) => {
  const { svc, host, attach, program, revoke } = await setup(t)
  await svc.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24'), log)
  await svc.createNetwork(netReq(NET2, '10.2.0.0/24', '10.2.0.1/24'), log)
  await attach(NET, EP, '10.1.0.2/24')
  await attach(NET, EP2, '10.1.0.3/24')
  await attach(NET2, dockerId('e3'), '10.2.0.2/24')

  await program(NET, EP, [tcp(80, 8080, '192.0.2.10')])
  t.equal(host.sysctls.get(localnet(BR)), '0', 'a specific host address: the host connects from it, no route_localnet')
  await program(NET, EP, [tcp(80, 8080, '127.0.0.1')])
  t.equal(host.sysctls.get(localnet(BR)), '1', 'a loopback binding turns it on')
  t.equal(host.sysctls.get(localnet(BR2)), '0', 'on that bridge only')
  await program(NET, EP2, [tcp(80, 8081)])
  await revoke(NET, EP)
  t.equal(host.sysctls.get(localnet(BR)), '1', 'a wildcard binding of another endpoint still needs it')
  await svc.deleteEndpoint({ NetworkID: NET, EndpointID: EP2 }, log)
  t.equal(host.sysctls.get(localnet(BR)), '0', 'the last such port gone (DeleteEndpoint): off again')
})

t.test('route_localnet is on before the DNAT rules, and off again when publishing fails', async (t) => {
  const { svc, host, attach, program } = await setup(t)
  await svc.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24'), log)
  await attach(NET, EP, '10.1.0.2/24')
  const order: string[] = []
  const setSysctl = host.setSysctl.bind(host)
  const addPortRules = host.addPortRules.bind(host)
  host.setSysctl = async (key, value, l) => { order.push(`${key}=${value}`); return setSysctl(key, value, l) }
  host.addPortRules = async (rules, l) => { order.push('dnat'); return addPortRules(rules, l) }
  await program(NET, EP, [tcp(80, 8080)])
  t.same(order, [`${localnet(BR)}=1`, 'dnat'], 'route_localnet first, then the rules')

  await svc.revokeExternalConnectivity({ NetworkID: NET, EndpointID: EP }, log)
  for (const op of ['reservePort', 'addPortRules'] as const) {
    host.failNext.add(op)
    await t.rejects(program(NET, EP, [tcp(80, 8080, '127.0.0.1')]), { name: 'TsnetError', kind: 'host' }, `${op} fails`)
    t.equal(host.sysctls.get(localnet(BR)), '0', `after the failed Program (${op}): off again`)
  }
  host.failNext.add('setSysctl')
  await t.rejects(program(NET, EP, [tcp(80, 8080, '127.0.0.1')]), { name: 'TsnetError', kind: 'host' }, 'route_localnet cannot be set: refused')
  t.equal(host.portRules.size, 0, 'and nothing was published')
  t.equal(host.heldPorts.size, 0)
})

t.test('boot reconcile: accept_ra off again, route_localnet as the stored ports need it', async (t) => {
  const first = await setup(t)
  await first.svc.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24'), log)
  await first.svc.createNetwork(netReq(NET2, '10.2.0.0/24', '10.2.0.1/24'), log)
  await first.attach(NET, EP, '10.1.0.2/24')
  await first.program(NET, EP, [tcp(80, 8080, '127.0.0.1')])

  const host = new FakeHost() // as an earlier tsnet left the kernel: route_localnet on every bridge, RAs accepted
  for (const b of [BR, BR2]) {
    host.sysctls.set(localnet(b), '1')
    host.sysctls.set(acceptRa(b), '1')
  }
  const again = await setup(t, first.dir, host)
  await again.svc.restoreHost(log)
  t.equal(host.sysctls.get(acceptRa(BR)), '0')
  t.equal(host.sysctls.get(acceptRa(BR2)), '0', 'accept_ra off on every bridge')
  t.equal(host.sysctls.get(localnet(BR)), '1', 'the bridge with a loopback publish keeps route_localnet')
  t.equal(host.sysctls.get(localnet(BR2)), '0', 'the other one loses it')
})
