// Hostile packets against the network edge, on the real kernel: tsnet's services (built as `tsnet
// serve` builds them) over the real host layer running in a "host" namespace (lib/services.ts), "containers" in namespaces of their own wired to the endpoints' veths,
// and a "LAN" namespace routed to the host. Each guarantee is checked by sending the packet an
// attacker would send, next to a positive control on the same path (the same sender reaching an
// allowed target), so no check can pass because nothing arrived at all.
//
//  - a port published on 127.0.0.1 answers the host itself only: not a LAN host routing 127.0.0.1
//    to the host, not a container on another network, not one on the same network;
//  - no container (internal networks included) reaches a host service bound to 127.0.0.1
//    (CVE-2020-8558 class); route_localnet is on only where a published port needs it;
//  - a Router Advertisement from a container changes no route or address of the host;
//  - a container cannot open connections into a Docker bridge that tsnet never heard of from
//    Docker's API.
import t, { type Test } from 'tap'
import { CHAIN, DROP } from '../../src/core/edge-plan.js'
import type { Services } from '../../src/main.js'
import { bridgeOf } from '../../src/modes/bridge.js'
import { dropCount, link, probe, routeLoopbackVia, sendRouterAdvertisement, serve, shown, wireContainer } from './lib/attack.js'
import { createNetns, log, type Netns } from './lib/netns.js'
import { tsnetIn } from './lib/services.js'

const id = (c: string) => c.repeat(64 / c.length)
const LAN_HOST_IP = '198.51.100.1'
const LAN_PEER_IP = '198.51.100.2'
/** The nat PREROUTING jump tsnet made before it excluded loopback destinations. */
const LEGACY_PREROUTING = ['-m', 'addrtype', '--dst-type', 'LOCAL', '-j', CHAIN.dnat]

function networkReq(nid: string, v4: string, opts: { internal?: boolean } = {}) {
  return {
    NetworkID: nid,
    Options: { 'com.docker.network.generic': {}, ...(opts.internal ? { 'com.docker.network.internal': true } : {}) },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: v4, Gateway: v4.replace(/0\/24$/, '1/24') }],
    IPv6Data: [],
  }
}

/** CreateEndpoint + Join for `address` (CIDR) on network `nid`, then the container end moved into a namespace of its own. */
async function container(t: Test, host: Netns, services: Services, nid: string, eid: string, address: string): Promise<Netns> {
  await services.driver.createEndpoint({ NetworkID: nid, EndpointID: eid, Interface: { Address: address, AddressIPv6: '', MacAddress: '' }, Options: {} }, log)
  await services.driver.join({ NetworkID: nid, EndpointID: eid, SandboxKey: `/var/run/docker/netns/${eid.slice(0, 12)}`, Options: {} }, log)
  const ep = services.driver.snapshot().endpoints.find((e) => e.id === eid)
  if (!ep) throw new Error(`endpoint ${eid} not recorded`)
  const ns = await createNetns(t)
  await wireContainer(host, ns, ep.containerIf, address, address.replace(/\.\d+\/24$/, '.1'))
  return ns
}

const sysctl = async (ns: Netns, key: string) => (await ns.ok('sysctl', ['-n', key])).trim()

t.test('loopback: published on 127.0.0.1 answers the host only; no container or LAN host reaches 127.0.0.0/8', async (t) => {
  const host = await createNetns(t)
  const { services: service } = await tsnetIn(t, host)
  const X = id('a1'), Y = id('b2'), Z = id('c3')
  await service.driver.createNetwork(networkReq(X, '10.71.1.0/24'), log)
  await service.driver.createNetwork(networkReq(Y, '10.71.2.0/24'), log)
  await service.driver.createNetwork(networkReq(Z, '10.71.3.0/24', { internal: true }), log)
  const bridge = (nid: string) => bridgeOf(service.driver.snapshot().networks.find((n) => n.id === nid)!)
  const target = await container(t, host, service, X, id('e1'), '10.71.1.2/24')
  const sameNet = await container(t, host, service, X, id('e2'), '10.71.1.3/24')
  const otherNet = await container(t, host, service, Y, id('e3'), '10.71.2.2/24')
  const internal = await container(t, host, service, Z, id('e4'), '10.71.3.2/24')
  const lan = await createNetns(t)
  await link(host, 'lan0', lan, 'eth0')
  await host.ok('ip', ['addr', 'add', `${LAN_HOST_IP}/24`, 'dev', 'lan0'])
  await lan.ok('ip', ['addr', 'add', `${LAN_PEER_IP}/24`, 'dev', 'eth0'])
  await lan.ok('ip', ['route', 'add', 'default', 'via', LAN_HOST_IP])

  t.equal(await sysctl(host, `net.ipv4.conf.${bridge(X)}.route_localnet`), '0', 'before any port is published, no bridge has route_localnet')
  await serve(t, target, 'target', ['0.0.0.0:80'])
  await serve(t, host, 'host-loopback', ['127.0.0.1:9999'])
  await serve(t, host, 'host-any', ['0.0.0.0:9998'])
  await service.ports.program({
    NetworkID: X, EndpointID: id('e1'), Options: { 'com.docker.network.portmap': [
      { Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 },
      { Proto: 6, IP: '', Port: 80, HostIP: '127.0.0.1', HostPort: 8081, HostPortEnd: 8081 },
      { Proto: 6, IP: '', Port: 80, HostIP: LAN_HOST_IP, HostPort: 8082, HostPortEnd: 8082 },
    ] },
  }, log)
  t.equal(await sysctl(host, `net.ipv4.conf.${bridge(X)}.route_localnet`), '1', 'the target\'s bridge has route_localnet: the host reaches it through 127.0.0.1')
  for (const n of [Y, Z]) t.equal(await sysctl(host, `net.ipv4.conf.${bridge(n)}.route_localnet`), '0', `${bridge(n)} publishes nothing: no route_localnet`)

  const reaches = async (from: Netns, who: string, addr: string, port: number, want: string) => {
    const p = await probe(from, addr, port)
    t.ok(p.ok && p.out === want, `${who} -> ${addr}:${port} reaches ${want}: ${shown(p)}`)
  }
  const refused = async (from: Netns, who: string, addr: string, port: number) => {
    const p = await probe(from, addr, port)
    t.notOk(p.ok, `${who} -> ${addr}:${port} gets nothing: ${shown(p)}`)
  }

  // The host itself: every binding, loopback included.
  await reaches(host, 'host', '127.0.0.1', 8081, 'target')
  await reaches(host, 'host', '127.0.0.1', 8080, 'target')
  await reaches(host, 'host', LAN_HOST_IP, 8080, 'target')
  await reaches(host, 'host', LAN_HOST_IP, 8082, 'target')

  // A LAN host: host addresses yes (positive controls), 127.0.0.1 routed to the host no.
  await reaches(lan, 'LAN', LAN_HOST_IP, 8080, 'target')
  await reaches(lan, 'LAN', LAN_HOST_IP, 8082, 'target')
  await reaches(lan, 'LAN', LAN_HOST_IP, 9998, 'host-any')
  await routeLoopbackVia(lan, LAN_HOST_IP)
  const before = await dropCount(host, 'iptables', 'raw', DROP.loopback)
  await refused(lan, 'LAN routing 127.0.0.0/8 to the host', '127.0.0.1', 8081)
  await refused(lan, 'LAN routing 127.0.0.0/8 to the host', '127.0.0.1', 8080)
  await refused(lan, 'LAN routing 127.0.0.0/8 to the host', '127.0.0.1', 9999)
  t.ok((await dropCount(host, 'iptables', 'raw', DROP.loopback)) > before, 'the LAN\'s packets to 127.0.0.1 reached the host and were dropped by tsnet\'s raw rule')

  // Containers: through a host address yes (another network, hairpin), 127.0.0.1 via the gateway no.
  for (const [ns, who, gw] of [[otherNet, 'container on another network', '10.71.2.1'], [sameNet, 'container on the same network', '10.71.1.1']] as const) {
    await reaches(ns, who, LAN_HOST_IP, 8080, 'target')
    await reaches(ns, who, gw, 9998, 'host-any')
    await routeLoopbackVia(ns, gw)
    const n = await dropCount(host, 'iptables', 'raw', DROP.loopback)
    await refused(ns, `${who} sending to 127.0.0.1 via its gateway`, '127.0.0.1', 8081)
    await refused(ns, `${who} sending to 127.0.0.1 via its gateway`, '127.0.0.1', 9999)
    t.ok((await dropCount(host, 'iptables', 'raw', DROP.loopback)) > n, `${who}: its packets to 127.0.0.1 reached the host and were dropped`)
  }

  // An internal network publishes nothing and routes nowhere, but its gateway is the host.
  await reaches(internal, 'container on an internal network', '10.71.3.1', 9998, 'host-any')
  await routeLoopbackVia(internal, '10.71.3.1')
  const n = await dropCount(host, 'iptables', 'raw', DROP.loopback)
  await refused(internal, 'container on an internal network sending to 127.0.0.1 via its gateway', '127.0.0.1', 9999)
  t.ok((await dropCount(host, 'iptables', 'raw', DROP.loopback)) > n, 'internal: its packets to 127.0.0.1 reached the host and were dropped')

  // Each layer holds on its own. Without the raw drop, the nat rules alone DNAT nothing that
  // arrives for 127.0.0.1 ...
  await host.ok('iptables', ['-w', '10', '-t', 'raw', '-D', 'PREROUTING', '-j', CHAIN.raw])
  await refused(lan, 'LAN, raw drop removed (nat rules alone)', '127.0.0.1', 8081)
  // ... and with the PREROUTING jump of earlier versions (which DNATed 127.0.0.1 from anywhere) back, the raw drop alone stops it.
  await host.ok('iptables', ['-w', '10', '-t', 'raw', '-I', 'PREROUTING', '1', '-j', CHAIN.raw])
  await host.ok('iptables', ['-w', '10', '-t', 'nat', '-I', 'PREROUTING', '1', ...LEGACY_PREROUTING])
  const m = await dropCount(host, 'iptables', 'raw', DROP.loopback)
  await refused(lan, 'LAN, old PREROUTING jump back (raw drop alone)', '127.0.0.1', 8081)
  t.ok((await dropCount(host, 'iptables', 'raw', DROP.loopback)) > m, 'the raw rule dropped them')
  await host.ok('iptables', ['-w', '10', '-t', 'nat', '-D', 'PREROUTING', ...LEGACY_PREROUTING])

  // Revoked: route_localnet goes back off.
  await service.ports.revoke({ NetworkID: X, EndpointID: id('e1') }, log)
  t.equal(await sysctl(host, `net.ipv4.conf.${bridge(X)}.route_localnet`), '0', 'after the ports are revoked, the bridge\'s route_localnet is off again')
  await refused(host, 'host (ports revoked)', '127.0.0.1', 8081)
})

t.test('a Router Advertisement from a container installs no route or address on the host', async (t) => {
  const host = await createNetns(t)
  const tsnet = await tsnetIn(t, host)
  const service = tsnet.services
  const W = id('d4')
  await service.driver.createNetwork(networkReq(W, '10.73.1.0/24'), log)
  const bridge = bridgeOf(service.driver.snapshot().networks[0]!)
  const rogue = await container(t, host, service, W, id('e5'), '10.73.1.2/24')
  t.equal(await sysctl(host, `net.ipv6.conf.all.forwarding`), '0', 'precondition: no tsnet IPv6 network, so the host is no IPv6 router (RAs would count)')
  t.equal(await sysctl(host, `net.ipv6.conf.${bridge}.accept_ra`), '0', 'tsnet turned accept_ra off on its bridge')

  const learnt = async () => ({
    routes: (await host.ok('ip', ['-6', 'route', 'show', 'default'])).trim(),
    addrs: (await host.ok('ip', ['-6', 'addr', 'show', 'dev', bridge, 'scope', 'global'])).trim(),
  })
  const settle = () => new Promise((r) => setTimeout(r, 500))
  await sendRouterAdvertisement(rogue, 'eth0', '2001:db8:bad:1::')
  await settle()
  t.same(await learnt(), { routes: '', addrs: '' }, 'after the RA: no default route, no address on the bridge')

  // Boot reconcile puts accept_ra back (a bridge left by an older tsnet, or changed by hand).
  await host.ok('sysctl', ['-q', '-w', `net.ipv6.conf.${bridge}.accept_ra=1`])
  await tsnet.restart()
  t.equal(await sysctl(host, `net.ipv6.conf.${bridge}.accept_ra`), '0', 'boot reconcile turned accept_ra off again')
  await sendRouterAdvertisement(rogue, 'eth0', '2001:db8:bad:2::')
  await settle()
  t.same(await learnt(), { routes: '', addrs: '' }, 'after reconcile, the RA changes nothing either')

  // Positive control: the same RA on the same bridge with accept_ra=1 is taken.
  await host.ok('sysctl', ['-q', '-w', `net.ipv6.conf.${bridge}.accept_ra=1`])
  await sendRouterAdvertisement(rogue, 'eth0', '2001:db8:bad:3::')
  await settle()
  const taken = await learnt()
  t.match(taken.routes, new RegExp(`^default via fe80::\\S+ dev ${bridge} proto ra`), `control: with accept_ra=1 the RA installs a default route (${taken.routes})`)
  t.match(taken.addrs, /inet6 2001:db8:bad:3:/, 'control: and an address from its prefix')
})

t.test('a container cannot open connections into a Docker bridge tsnet never heard of from Docker\'s API', async (t) => {
  const host = await createNetns(t)
  const { services: service } = await tsnetIn(t, host)
  const Y = id('e6')
  await service.driver.createNetwork(networkReq(Y, '10.74.1.0/24'), log)
  const sender = await container(t, host, service, Y, id('e7'), '10.74.1.2/24')
  // A bridge as Docker makes one (no Docker API here: tsnet's foreign set stays empty), with a "container".
  const other = await createNetns(t)
  await host.ok('ip', ['link', 'add', 'br-0123456789ab', 'type', 'bridge'])
  await host.ok('ip', ['addr', 'add', '10.75.0.1/24', 'dev', 'br-0123456789ab'])
  await host.ok('ip', ['link', 'set', 'dev', 'br-0123456789ab', 'up'])
  await link(host, 'vdock0', other, 'eth0')
  await host.ok('ip', ['link', 'set', 'dev', 'vdock0', 'master', 'br-0123456789ab'])
  await other.ok('ip', ['addr', 'add', '10.75.0.2/24', 'dev', 'eth0'])
  await other.ok('ip', ['route', 'add', 'default', 'via', '10.75.0.1'])
  await serve(t, other, 'docker-container', ['0.0.0.0:80'])
  t.same((await host.ok('ipset', ['list', 'tsnet-foreign4'])).split('Members:')[1]?.trim(), '', 'precondition: tsnet knows no Docker subnet')

  let bridgeName = 'br-0123456789ab'
  const rename = async (name: string) => {
    await host.ok('ip', ['link', 'set', 'dev', bridgeName, 'down'])
    await host.ok('ip', ['link', 'set', 'dev', bridgeName, 'name', name])
    await host.ok('ip', ['link', 'set', 'dev', name, 'up'])
    bridgeName = name
  }
  for (const name of ['br-0123456789ab', 'docker0', 'docker_gwbridge']) {
    if (name !== bridgeName) await rename(name)
    const before = await dropCount(host, 'iptables', 'filter', DROP.docker)
    const p = await probe(sender, '10.75.0.2', 80)
    t.notOk(p.ok, `into ${name}: ${shown(p)}`)
    t.ok((await dropCount(host, 'iptables', 'filter', DROP.docker)) > before, `into ${name}: dropped by tsnet's "${DROP.docker}" rule`)
  }
  // Positive control: the same sender, target and bridge, under a name that is not Docker's (a LAN bridge).
  await rename('lanbr0')
  const p = await probe(sender, '10.75.0.2', 80)
  t.ok(p.ok && p.out === 'docker-container', `control: the same bridge named lanbr0 is reached (egress to a LAN bridge stays open): ${shown(p)}`)
})
