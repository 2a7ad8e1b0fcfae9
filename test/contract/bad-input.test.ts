// Requests tsnet must refuse. Docker shows the refusal to the user as "<Method>: <Err>", so every
// refusal must be a non-200 status with {"Err": "<a sentence naming the object/problem>"}, and a
// refused request must change nothing: the store's files and the host stay exactly as they were.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { DOCKER_DEFAULT_POOLS_TEXT, parseDefaultPools } from '../../src/core/ipam.js'
import type { Runner } from '../../src/host/exec.js'
import { linuxHostVia } from '../../src/host/linux-host.js'
import { Rtnl } from '../../src/host/netlink/index.js'
import type { NlMessage } from '../../src/host/netlink/wire.js'
import { openServices } from '../../src/main.js'
import { buildApp } from '../../src/server/app.js'
import { type Json, wireText } from '../fixtures/wire/loader.js'
import { Driver } from './fixtures/driver.js'

// About 130 cases, each over a fresh baseline: on a loaded machine this takes longer than the
// package's 60 s file timeout. The limit only catches hangs; speed is bench/'s business.
t.setTimeout(600_000)

const N = '1d'.repeat(32) // the baseline network
const E = '2e'.repeat(32) // its endpoint (created and joined)
const E2 = '3f'.repeat(32) // an endpoint ID nobody used yet
const N2 = '4a'.repeat(32) // a network ID nobody used yet
const POOL = 'LocalDefault/10.20.0.0/24'
const TINY = 'LocalDefault/10.30.0.0/30'

const network = (over: Record<string, Json> = {}): Json => ({
  NetworkID: N2,
  Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': {} },
  IPv4Data: [{ AddressSpace: 'LocalDefault', Gateway: '10.19.0.1/24', Pool: '10.19.0.0/24' }],
  IPv6Data: [],
  ...over,
})
const withGeneric = (generic: Record<string, string>): Json =>
  network({ Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': generic } })
const endpoint = (over: Record<string, Json> = {}, iface: Record<string, string> = {}): Json => ({
  NetworkID: N,
  EndpointID: E2,
  Interface: { Address: '10.9.0.3/24', AddressIPv6: '', MacAddress: '', ...iface },
  Options: { 'com.docker.network.endpoint.exposedports': [], 'com.docker.network.portmap': [] },
  ...over,
})
const withPortmap = (pm: Record<string, Json>): Json =>
  endpoint({ Options: { 'com.docker.network.portmap': [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080, ...pm }], 'com.docker.network.endpoint.exposedports': [{ Proto: 6, Port: 80 }] } })
/** ProgramExternalConnectivity for the baseline's joined endpoint E with one port mapping (-p 8080:80 unless changed). */
const program = (pm: Record<string, Json>, over: Record<string, Json> = {}): Json => ({
  NetworkID: N,
  EndpointID: E,
  Options: { 'com.docker.network.portmap': [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080, ...pm }], 'com.docker.network.endpoint.exposedports': [{ Proto: 6, Port: 80 }] },
  ...over,
})
const programOptions = (options: Record<string, Json>): Json => ({ NetworkID: N, EndpointID: E, Options: options })
const withPolicy = (allow: string, options: Record<string, Json> = {}): Json =>
  network({ Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': { 'tsnet.allow': allow }, ...options } })
const pool = (over: Record<string, Json> = {}): Json => ({ AddressSpace: 'LocalDefault', Pool: '10.21.0.0/24', SubPool: '', Options: null, V6: false, ...over })

/** A driver holding a network with a joined endpoint, a /24 pool with its gateway leased, and a /30 pool. */
async function baseline(t: Test): Promise<Driver> {
  const d = await Driver.start(t)
  const ok = async (method: string, body: Json) => {
    const a = await d.send(method, body)
    if (a.status !== 200) throw new Error(`baseline ${method} failed: ${a.text}`)
  }
  await ok('NetworkDriver.CreateNetwork', { ...(network() as object), NetworkID: N, IPv4Data: [{ AddressSpace: 'LocalDefault', Gateway: '10.9.0.1/24', Pool: '10.9.0.0/24' }] })
  await ok('NetworkDriver.CreateEndpoint', { ...(endpoint() as object), EndpointID: E, Interface: { Address: '10.9.0.2/24', AddressIPv6: '', MacAddress: '' } })
  await ok('NetworkDriver.Join', { NetworkID: N, EndpointID: E, SandboxKey: '/var/run/docker/netns/0123456789ab', Options: {} })
  await ok('IpamDriver.RequestPool', pool({ Pool: '10.20.0.0/24' }))
  await ok('IpamDriver.RequestAddress', { PoolID: POOL, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } })
  await ok('IpamDriver.RequestPool', pool({ Pool: '10.30.0.0/30' }))
  return d
}

interface Case {
  name: string
  method: string
  /** A body object (sent as Docker encodes it) or raw text (sent as is). */
  body: Json | { raw: string }
  /** What the Err sentence must name. */
  err: RegExp
  todo?: string
}

async function expectRefused(t: Test, d: Driver, c: Case): Promise<void> {
  // A known product bug is marked on each assertion, so the test still runs and shows what fails.
  const x = c.todo ? { todo: c.todo } : {}
  const before = await d.state()
  const text = c.body !== null && typeof c.body === 'object' && 'raw' in c.body && typeof c.body.raw === 'string' ? c.body.raw : wireText(c.body as Json)
  const a = await d.raw(c.method, text)
  t.not(a.status, 200, `${c.name}: not 200 (got ${a.status} ${a.text.slice(0, 200)})`, x)
  t.ok(a.status >= 400 && a.status <= 599, `${c.name}: an HTTP error status`, x)
  t.same(Object.keys(a.json ?? { none: 1 }), ['Err'], `${c.name}: the body is {"Err": …}`, x)
  t.type(a.json?.Err, 'string', `${c.name}: Err is a string`, x)
  t.match(a.json?.Err ?? '', c.err, `${c.name}: Err names the problem (${a.json?.Err})`, x)
  t.notMatch(a.json?.Err ?? '', /^internal error/, `${c.name}: a refusal, not a crash`, x)
  t.same(await d.state(), before, `${c.name}: store files and host state are exactly unchanged`, x)
}

const cases: Case[] = [
  // ---- the body itself ----
  { name: 'malformed JSON', method: 'NetworkDriver.CreateNetwork', body: { raw: '{"NetworkID": "abc",\n' }, err: /not valid JSON/ },
  { name: 'body null', method: 'NetworkDriver.CreateNetwork', body: { raw: 'null\n' }, err: /NetworkID/ },
  { name: 'body []', method: 'NetworkDriver.CreateNetwork', body: { raw: '[]\n' }, err: /body.*object/ },
  { name: 'body a string', method: 'NetworkDriver.CreateNetwork', body: { raw: '"x"\n' }, err: /body.*object/ },
  { name: 'body null on CreateEndpoint', method: 'NetworkDriver.CreateEndpoint', body: { raw: 'null\n' }, err: /NetworkID|EndpointID/ },
  { name: 'body [] on RequestPool', method: 'IpamDriver.RequestPool', body: { raw: '[]\n' }, err: /body.*object/ },
  // ---- NetworkID ----
  { name: 'missing NetworkID', method: 'NetworkDriver.CreateNetwork', body: { Options: {}, IPv4Data: [], IPv6Data: [] }, err: /lacks the field NetworkID/ },
  { name: 'NetworkID a number', method: 'NetworkDriver.CreateNetwork', body: network({ NetworkID: 4242 }), err: /NetworkID.*string/ },
  { name: 'NetworkID empty', method: 'NetworkDriver.CreateNetwork', body: network({ NetworkID: '' }), err: /NetworkID/ },
  { name: 'NetworkID of 65 characters', method: 'NetworkDriver.CreateNetwork', body: network({ NetworkID: 'a'.repeat(65) }), err: /NetworkID.*64/ },
  { name: 'NetworkID with "/"', method: 'NetworkDriver.CreateNetwork', body: network({ NetworkID: `ab/cd${'0'.repeat(59)}` }), err: /NetworkID|ID/ },
  { name: 'NetworkID ".."', method: 'NetworkDriver.CreateNetwork', body: network({ NetworkID: '..' }), err: /NetworkID|ID/ },
  { name: 'NetworkID "../../etc"', method: 'NetworkDriver.CreateNetwork', body: network({ NetworkID: '../../etc' }), err: /NetworkID|ID/ },
  { name: 'EndpointID with "/"', method: 'NetworkDriver.CreateEndpoint', body: endpoint({ EndpointID: `ab/cd${'0'.repeat(59)}` }), err: /EndpointID|ID/ },
  { name: 'EndpointID a number', method: 'NetworkDriver.CreateEndpoint', body: endpoint({ EndpointID: 7 }), err: /EndpointID.*string/ },
  // ---- CreateNetwork ----
  { name: 'Options a string', method: 'NetworkDriver.CreateNetwork', body: network({ Options: 'x' }), err: /Options/ },
  { name: 'Options a list', method: 'NetworkDriver.CreateNetwork', body: network({ Options: [] }), err: /Options/ },
  { name: 'generic options not a map', method: 'NetworkDriver.CreateNetwork', body: network({ Options: { 'com.docker.network.generic': 'mtu=1400' } }), err: /options/ },
  { name: 'IPv4Data an object', method: 'NetworkDriver.CreateNetwork', body: network({ IPv4Data: {} }), err: /IPv4Data/ },
  { name: 'IPv4Data a string', method: 'NetworkDriver.CreateNetwork', body: network({ IPv4Data: '10.19.0.0/24' }), err: /IPv4Data/ },
  { name: 'IPv6Data an object', method: 'NetworkDriver.CreateNetwork', body: network({ IPv6Data: {} }), err: /IPv6Data/ },
  { name: 'invalid CIDR pool (/33)', method: 'NetworkDriver.CreateNetwork', body: network({ IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.19.0.0/33', Gateway: '10.19.0.1/24' }] }), err: /pool "10\.19\.0\.0\/33"/ },
  { name: 'invalid CIDR pool (not an address)', method: 'NetworkDriver.CreateNetwork', body: network({ IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: 'not-a-cidr' }] }), err: /pool "not-a-cidr"/ },
  { name: 'IPv6 pool in IPv4Data', method: 'NetworkDriver.CreateNetwork', body: network({ IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: 'fd00:1::/64' }] }), err: /fd00:1::\/64/ },
  { name: 'gateway outside its pool', method: 'NetworkDriver.CreateNetwork', body: network({ IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.19.0.0/24', Gateway: '10.18.0.1/24' }] }), err: /gateway "10\.18\.0\.1\/24".*10\.19\.0\.0\/24/ },
  { name: 'aux address outside its pool', method: 'NetworkDriver.CreateNetwork', body: network({ IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.19.0.0/24', Gateway: '10.19.0.1/24', AuxAddresses: { r: '10.18.0.5/24' } }] }), err: /aux address r/ },
  { name: 'unknown -o option', method: 'NetworkDriver.CreateNetwork', body: withGeneric({ 'com.example.vlan': '42' }), err: /unknown network option com\.example\.vlan/ },
  { name: 'bridge name of 16 characters', method: 'NetworkDriver.CreateNetwork', body: withGeneric({ 'com.docker.network.bridge.name': 'abcdefghijklmnop' }), err: /bridge name.*"abcdefghijklmnop"/ },
  { name: 'bridge name with a space', method: 'NetworkDriver.CreateNetwork', body: withGeneric({ 'com.docker.network.bridge.name': 'br 0' }), err: /bridge name.*"br 0"/ },
  { name: 'bridge name with "/"', method: 'NetworkDriver.CreateNetwork', body: withGeneric({ 'com.docker.network.bridge.name': 'br/0' }), err: /bridge name.*"br\/0"/ },
  { name: 'bridge name ".."', method: 'NetworkDriver.CreateNetwork', body: withGeneric({ 'com.docker.network.bridge.name': '..' }), err: /bridge name.*"\.\."/ },
  { name: 'bridge name of another network', method: 'NetworkDriver.CreateNetwork', body: withGeneric({ 'com.docker.network.bridge.name': 'tsbr-1d1d1d1d1d' }), err: /tsbr-1d1d1d1d1d.*(already used|reserves)/ },
  { name: 'MTU 0', method: 'NetworkDriver.CreateNetwork', body: withGeneric({ 'com.docker.network.driver.mtu': '0' }), err: /mtu="0".*68.*65535/ },
  { name: 'MTU 67', method: 'NetworkDriver.CreateNetwork', body: withGeneric({ 'com.docker.network.driver.mtu': '67' }), err: /mtu="67"/ },
  { name: 'MTU 65536', method: 'NetworkDriver.CreateNetwork', body: withGeneric({ 'com.docker.network.driver.mtu': '65536' }), err: /mtu="65536"/ },
  { name: 'MTU "abc"', method: 'NetworkDriver.CreateNetwork', body: withGeneric({ 'com.docker.network.driver.mtu': 'abc' }), err: /mtu="abc".*whole number/ },
  { name: 'MTU "-1500"', method: 'NetworkDriver.CreateNetwork', body: withGeneric({ 'com.docker.network.driver.mtu': '-1500' }), err: /mtu="-1500"/ },
  { name: 'option value not a string', method: 'NetworkDriver.CreateNetwork', body: network({ Options: { 'com.docker.network.generic': { 'com.docker.network.driver.mtu': 1400 } } }), err: /com\.docker\.network\.driver\.mtu.*string/ },
  { name: 'the same NetworkID with other settings', method: 'NetworkDriver.CreateNetwork', body: { ...(network() as object), NetworkID: N }, err: /network 1d1d1d1d1d1d already exists.*different/ },
  { name: 'host_binding_ipv4 not an address', method: 'NetworkDriver.CreateNetwork', body: withGeneric({ 'com.docker.network.bridge.host_binding_ipv4': 'eth0' }), err: /com\.docker\.network\.bridge\.host_binding_ipv4="eth0" is not an IP address/ },
  { name: 'host_binding_ipv4 a CIDR', method: 'NetworkDriver.CreateNetwork', body: withGeneric({ 'com.docker.network.bridge.host_binding_ipv4': '192.0.2.10/24' }), err: /host_binding_ipv4="192\.0\.2\.10\/24" is not an IP address/ },
  { name: 'host_binding_ipv4 empty', method: 'NetworkDriver.CreateNetwork', body: withGeneric({ 'com.docker.network.bridge.host_binding_ipv4': '' }), err: /host_binding_ipv4="" is not an IP address/ },
  { name: 'a subnet inside another tsnet network\'s', method: 'NetworkDriver.CreateNetwork', body: network({ IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.9.0.128/25', Gateway: '10.9.0.129/25' }] }), err: /^subnet 10\.9\.0\.128\/25 of network 4a4a4a4a4a4a overlaps subnet 10\.9\.0\.0\/24 of tsnet network 1d1d1d1d1d1d: tsnet networks may not share addresses/ },
  { name: 'a subnet around another tsnet network\'s', method: 'NetworkDriver.CreateNetwork', body: network({ IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.0.0.0/8', Gateway: '10.0.0.1/8' }] }), err: /subnet 10\.0\.0\.0\/8 of network 4a4a4a4a4a4a overlaps subnet 10\.9\.0\.0\/24 of tsnet network 1d1d1d1d1d1d/ },
  // ---- CreateEndpoint ----
  { name: 'CreateEndpoint for an unknown network', method: 'NetworkDriver.CreateEndpoint', body: endpoint({ NetworkID: N2 }), err: /network 4a4a4a4a4a4a is unknown/ },
  { name: 'Interface.Address outside the network\'s subnets', method: 'NetworkDriver.CreateEndpoint', body: endpoint({}, { Address: '10.10.0.2/24' }), err: /10\.10\.0\.2\/24 is outside the subnets.*10\.9\.0\.0\/24/ },
  { name: 'Interface.Address not a CIDR', method: 'NetworkDriver.CreateEndpoint', body: endpoint({}, { Address: '10.9.0.3' }), err: /"10\.9\.0\.3"/ },
  { name: 'Interface.AddressIPv6 on an IPv4-only network', method: 'NetworkDriver.CreateEndpoint', body: endpoint({}, { AddressIPv6: 'fd00:9::3/64' }), err: /fd00:9::3\/64.*outside/ },
  { name: 'MacAddress multicast', method: 'NetworkDriver.CreateEndpoint', body: endpoint({}, { MacAddress: '01:00:5e:00:00:01' }), err: /MAC address 01:00:5e:00:00:01 is a multicast/ },
  { name: 'MacAddress of 5 bytes', method: 'NetworkDriver.CreateEndpoint', body: endpoint({}, { MacAddress: '02:42:0a:09:00' }), err: /MAC address "02:42:0a:09:00"/ },
  { name: 'MacAddress not hex', method: 'NetworkDriver.CreateEndpoint', body: endpoint({}, { MacAddress: 'zz:zz:zz:zz:zz:zz' }), err: /MAC address "zz:zz:zz:zz:zz:zz"/ },
  { name: 'MacAddress with dashes', method: 'NetworkDriver.CreateEndpoint', body: endpoint({}, { MacAddress: '02-42-0a-09-00-03' }), err: /MAC address "02-42-0a-09-00-03"/ },
  { name: 'MacAddress all zero', method: 'NetworkDriver.CreateEndpoint', body: endpoint({}, { MacAddress: '00:00:00:00:00:00' }), err: /MAC address 00:00:00:00:00:00/ },
  { name: 'portmap Proto 99', method: 'NetworkDriver.CreateEndpoint', body: withPortmap({ Proto: 99 }), err: /port mapping #1: protocol number 99/ },
  { name: 'portmap reversed HostPort range', method: 'NetworkDriver.CreateEndpoint', body: withPortmap({ HostPort: 9000, HostPortEnd: 8000 }), err: /port mapping #1: host port range 9000-8000 is reversed/ },
  { name: 'portmap HostIP "not-an-ip"', method: 'NetworkDriver.CreateEndpoint', body: withPortmap({ HostIP: 'not-an-ip' }), err: /port mapping #1: host IP "not-an-ip"/ },
  { name: 'portmap Port 70000', method: 'NetworkDriver.CreateEndpoint', body: withPortmap({ Port: 70000 }), err: /port mapping #1: Port .*70000/ },
  { name: 'portmap HostPort 70000', method: 'NetworkDriver.CreateEndpoint', body: withPortmap({ HostPort: 70000, HostPortEnd: 70000 }), err: /HostPort .*70000/ },
  { name: 'portmap not a list', method: 'NetworkDriver.CreateEndpoint', body: endpoint({ Options: { 'com.docker.network.portmap': { Proto: 6 } } }), err: /port map must be a list/ },
  { name: 'the same EndpointID with another address', method: 'NetworkDriver.CreateEndpoint', body: endpoint({ EndpointID: E }, { Address: '10.9.0.9/24' }), err: /endpoint 2e2e2e2e2e2e already exists.*different/ },
  { name: 'CreateNetwork tsnet.allow with one word', method: 'NetworkDriver.CreateNetwork', body: withPolicy('ui'), err: /tsnet\.allow rule 1 \("ui"\): a rule is SOURCES PORTS/ },
  { name: 'CreateNetwork tsnet.allow with three words', method: 'NetworkDriver.CreateNetwork', body: withPolicy('ui tcp/80 udp/53'), err: /tsnet\.allow rule 1 .*a rule is SOURCES PORTS/ },
  { name: 'CreateNetwork tsnet.allow, the second rule broken', method: 'NetworkDriver.CreateNetwork', body: withPolicy('ui tcp/80; db'), err: /tsnet\.allow rule 2 \("db"\)/ },
  { name: 'CreateNetwork tsnet.allow with an unknown protocol', method: 'NetworkDriver.CreateNetwork', body: withPolicy('ui gre/47'), err: /"gre\/47" is not a port/ },
  { name: 'CreateNetwork tsnet.allow with a port without protocol', method: 'NetworkDriver.CreateNetwork', body: withPolicy('ui 8080'), err: /"8080" is not a port/ },
  { name: 'CreateNetwork tsnet.allow with a reversed range', method: 'NetworkDriver.CreateNetwork', body: withPolicy('ui tcp/9000-8000'), err: /port range "tcp\/9000-8000" is reversed/ },
  { name: 'CreateNetwork tsnet.allow with port 0', method: 'NetworkDriver.CreateNetwork', body: withPolicy('ui tcp/0'), err: /port 0 in "tcp\/0" is out of range/ },
  { name: 'CreateNetwork tsnet.allow with port 70000', method: 'NetworkDriver.CreateNetwork', body: withPolicy('ui udp/70000'), err: /port 70000 in "udp\/70000" is out of range/ },
  { name: 'CreateNetwork tsnet.allow with a range over 1024 ports', method: 'NetworkDriver.CreateNetwork', body: withPolicy('ui tcp/1000-3000'), err: /spans 2001 ports; at most 1024/ },
  { name: 'CreateNetwork tsnet.allow with an invalid CIDR', method: 'NetworkDriver.CreateNetwork', body: withPolicy('10.0.0.0/33 tcp/80'), err: /"10\.0\.0\.0\/33" is not a valid CIDR/ },
  { name: 'CreateNetwork tsnet.allow from everywhere (/0)', method: 'NetworkDriver.CreateNetwork', body: withPolicy('0.0.0.0/0 tcp/80'), err: /"0\.0\.0\.0\/0" would allow every address/ },
  { name: 'CreateNetwork tsnet.allow with a source that is no name', method: 'NetworkDriver.CreateNetwork', body: withPolicy('-ui tcp/80'), err: /"-ui" is neither a network name nor an address/ },
  { name: 'CreateNetwork tsnet.allow on an internal network', method: 'NetworkDriver.CreateNetwork', body: withPolicy('ui tcp/80', { 'com.docker.network.internal': true }), err: /internal network accepts no traffic.*tsnet\.allow/ },
  // ---- ProgramExternalConnectivity ----
  { name: 'Program for an unknown network', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({}, { NetworkID: N2 }), err: /network 4a4a4a4a4a4a is unknown/ },
  { name: 'Program for an unknown endpoint', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({}, { EndpointID: E2 }), err: /endpoint 3f3f3f3f3f3f of network 1d1d1d1d1d1d is unknown/ },
  { name: 'Program with Options a list', method: 'NetworkDriver.ProgramExternalConnectivity', body: { NetworkID: N, EndpointID: E, Options: [] }, err: /Options/ },
  { name: 'Program with the port map not a list', method: 'NetworkDriver.ProgramExternalConnectivity', body: programOptions({ 'com.docker.network.portmap': { Proto: 6, Port: 80 } }), err: /port map must be a list/ },
  { name: 'Program with a port mapping that is not an object', method: 'NetworkDriver.ProgramExternalConnectivity', body: programOptions({ 'com.docker.network.portmap': [8080] }), err: /port mapping #1 is not an object/ },
  { name: 'Program with the second mapping broken', method: 'NetworkDriver.ProgramExternalConnectivity', body: programOptions({ 'com.docker.network.portmap': [{ Proto: 6, Port: 80, HostPort: 8080 }, { Proto: 6, Port: 0 }] }), err: /port mapping #2: Port must be a whole number from 1 to 65535/ },
  { name: 'Program with Proto 99', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ Proto: 99 }), err: /port mapping #1: protocol number 99 is not supported/ },
  { name: 'Program with Proto 1 (icmp)', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ Proto: 1 }), err: /protocol number 1 is not supported/ },
  { name: 'Program with Proto "tcp"', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ Proto: 'tcp' }), err: /port mapping #1: Proto must be a whole number/ },
  { name: 'Program without Port', method: 'NetworkDriver.ProgramExternalConnectivity', body: programOptions({ 'com.docker.network.portmap': [{ Proto: 6, HostPort: 8080 }] }), err: /port mapping #1: Port must be a whole number/ },
  { name: 'Program with Port 70000', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ Port: 70000 }), err: /port mapping #1: Port .*70000/ },
  { name: 'Program with Port 1.5', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ Port: 1.5 }), err: /port mapping #1: Port .*1\.5/ },
  { name: 'Program with HostPort 70000', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ HostPort: 70000, HostPortEnd: 70000 }), err: /port mapping #1: HostPort .*70000/ },
  { name: 'Program with HostPort -1', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ HostPort: -1, HostPortEnd: 0 }), err: /port mapping #1: HostPort .*-1/ },
  { name: 'Program with HostPortEnd 65536', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ HostPortEnd: 65536 }), err: /port mapping #1: HostPortEnd .*65536/ },
  { name: 'Program with a reversed host port range', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ HostPort: 9000, HostPortEnd: 8000 }), err: /port mapping #1: host port range 9000-8000 is reversed/ },
  { name: 'Program with HostIP "not-an-ip"', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ HostIP: 'not-an-ip' }), err: /port mapping #1: host IP "not-an-ip" is not an IP address/ },
  { name: 'Program with HostIP 256.1.1.1', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ HostIP: '256.1.1.1' }), err: /host IP "256\.1\.1\.1" is not an IP address/ },
  { name: 'Program with HostIP a CIDR', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ HostIP: '127.0.0.1/8' }), err: /host IP "127\.0\.0\.1\/8" is not an IP address/ },
  { name: 'Program with HostIP a number', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ HostIP: 127 }), err: /port mapping #1: host IP 127 is not an IP address/ },
  { name: 'Program with an IPv6 HostIP for a container without IPv6', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ HostIP: '::1' }), err: /host IP ::1 is IPv6, but the container has no IPv6 address/ },
  { name: 'Program with exposed port Proto 99', method: 'NetworkDriver.ProgramExternalConnectivity', body: programOptions({ 'com.docker.network.portmap': [], 'com.docker.network.endpoint.exposedports': [{ Proto: 99, Port: 80 }] }), err: /exposed port #1: protocol number 99/ },
  // ---- Join ----
  { name: 'Join for an unknown endpoint', method: 'NetworkDriver.Join', body: { NetworkID: N, EndpointID: E2, SandboxKey: '/var/run/docker/netns/0123456789ab', Options: {} }, err: /endpoint 3f3f3f3f3f3f .*unknown/ },
  { name: 'Join for an unknown network', method: 'NetworkDriver.Join', body: { NetworkID: N2, EndpointID: E, SandboxKey: '/var/run/docker/netns/0123456789ab', Options: {} }, err: /network 4a4a4a4a4a4a is unknown/ },
  { name: 'Join with the endpoint under another network', method: 'NetworkDriver.Join', body: { NetworkID: N2, EndpointID: E, SandboxKey: '/x', Options: {} }, err: /unknown/ },
  { name: 'Join with portmap Proto 99', method: 'NetworkDriver.Join', body: { NetworkID: N, EndpointID: E, SandboxKey: '/var/run/docker/netns/0123456789ab', Options: { 'com.docker.network.portmap': [{ Proto: 99, Port: 80 }] } }, err: /protocol number 99/ },
  { name: 'Join without SandboxKey', method: 'NetworkDriver.Join', body: { NetworkID: N, EndpointID: E, Options: {} }, err: /SandboxKey/ },
  { name: 'Join with an empty SandboxKey', method: 'NetworkDriver.Join', body: { NetworkID: N, EndpointID: E, SandboxKey: '', Options: {} }, err: /SandboxKey/ },
  // ---- IPAM ----
  { name: 'RequestPool overlapping a pool in use', method: 'IpamDriver.RequestPool', body: pool({ Pool: '10.20.0.0/16' }), err: /10\.20\.0\.0\/16 overlaps.*10\.20\.0\.0\/24/ },
  { name: 'RequestPool inside a pool in use', method: 'IpamDriver.RequestPool', body: pool({ Pool: '10.20.0.128/25' }), err: /overlaps/ },
  { name: 'RequestPool with host bits', method: 'IpamDriver.RequestPool', body: pool({ Pool: '10.21.0.1/24' }), err: /10\.21\.0\.1\/24 has host bits/ },
  { name: 'RequestPool with SubPool outside Pool', method: 'IpamDriver.RequestPool', body: pool({ SubPool: '10.22.0.0/25' }), err: /IP range 10\.22\.0\.0\/25 is not inside subnet 10\.21\.0\.0\/24/ },
  { name: 'RequestPool with SubPool larger than Pool', method: 'IpamDriver.RequestPool', body: pool({ SubPool: '10.21.0.0/16' }), err: /IP range/ },
  { name: 'RequestPool with SubPool but no Pool', method: 'IpamDriver.RequestPool', body: pool({ Pool: '', SubPool: '10.21.0.0/25' }), err: /IP range.*explicit subnet/ },
  { name: 'RequestPool in an unknown AddressSpace', method: 'IpamDriver.RequestPool', body: pool({ AddressSpace: 'labnet-local' }), err: /address space "labnet-local" is unknown/ },
  { name: 'RequestPool without AddressSpace', method: 'IpamDriver.RequestPool', body: { Pool: '10.21.0.0/24' }, err: /AddressSpace/ },
  { name: 'RequestPool with an invalid CIDR', method: 'IpamDriver.RequestPool', body: pool({ Pool: '10.21.0.0/40' }), err: /subnet "10\.21\.0\.0\/40"/ },
  { name: 'RequestPool IPv4 subnet with V6 true', method: 'IpamDriver.RequestPool', body: pool({ V6: true }), err: /IPv4.*IPv6/ },
  { name: 'RequestPool with V6 "yes"', method: 'IpamDriver.RequestPool', body: pool({ V6: 'yes' }), err: /V6/ },
  { name: 'RequestAddress for an unknown pool', method: 'IpamDriver.RequestAddress', body: { PoolID: 'LocalDefault/10.99.0.0/24', Address: '', Options: null }, err: /pool LocalDefault\/10\.99\.0\.0\/24 is unknown/ },
  { name: 'RequestAddress preferred outside the pool', method: 'IpamDriver.RequestAddress', body: { PoolID: POOL, Address: '10.21.0.5', Options: null }, err: /10\.21\.0\.5 is outside pool 10\.20\.0\.0\/24/ },
  { name: 'RequestAddress preferred already leased', method: 'IpamDriver.RequestAddress', body: { PoolID: POOL, Address: '10.20.0.1', Options: null }, err: /10\.20\.0\.1 is already in use/ },
  { name: 'RequestAddress of the network address', method: 'IpamDriver.RequestAddress', body: { PoolID: POOL, Address: '10.20.0.0', Options: null }, err: /10\.20\.0\.0 is the network or broadcast/ },
  { name: 'RequestAddress of the broadcast address', method: 'IpamDriver.RequestAddress', body: { PoolID: POOL, Address: '10.20.0.255', Options: null }, err: /10\.20\.0\.255 is the network or broadcast/ },
  { name: 'RequestAddress not an address', method: 'IpamDriver.RequestAddress', body: { PoolID: POOL, Address: 'ten', Options: null }, err: /"ten" is not an IP address/ },
  { name: 'RequestAddress IPv6 in an IPv4 pool', method: 'IpamDriver.RequestAddress', body: { PoolID: POOL, Address: 'fd00::5', Options: null }, err: /fd00::5 is not an IPv4 address/ },
  { name: 'RequestAddress with Options not a string map', method: 'IpamDriver.RequestAddress', body: { PoolID: POOL, Address: '', Options: { RequestAddressType: 1 } }, err: /Options/ },
]

for (const c of cases) {
  t.test(c.name, async (t) => {
    const d = await baseline(t)
    await expectRefused(t, d, c)
  })
}

t.test('an exhausted pool: a /30 gives two addresses, then an error naming the pool', async (t) => {
  const d = await baseline(t)
  const req = { PoolID: TINY, Address: '', Options: null }
  const first = await d.send('IpamDriver.RequestAddress', req)
  t.same(first.json, { Address: '10.30.0.1/30', Data: {} })
  const second = await d.send('IpamDriver.RequestAddress', req)
  t.same(second.json, { Address: '10.30.0.2/30', Data: {} })
  await expectRefused(t, d, { name: 'third address', method: 'IpamDriver.RequestAddress', body: req, err: /10\.30\.0\.0\/30.*no free address/ })
  t.test('after a release the pool hands out the freed address again', async (t) => {
    t.equal((await d.send('IpamDriver.ReleaseAddress', { PoolID: TINY, Address: '10.30.0.1' })).status, 200)
    t.same((await d.send('IpamDriver.RequestAddress', req)).json, { Address: '10.30.0.1/30', Data: {} })
  })
})

t.test('host_binding_ipv4 with an address that is not the host\'s: Program is refused naming it; a host address works', async (t) => {
  const d = await baseline(t)
  d.host.localAddresses = new Set(['127.0.0.1', '10.19.0.1'])
  const ok = async (method: string, body: Json) => t.equal((await d.send(method, body)).status, 200, method)
  await ok('NetworkDriver.CreateNetwork', withGeneric({ 'com.docker.network.bridge.host_binding_ipv4': '192.0.2.99' }))
  await ok('NetworkDriver.CreateEndpoint', endpoint({ NetworkID: N2 }, { Address: '10.19.0.3/24' }))
  await ok('NetworkDriver.Join', { NetworkID: N2, EndpointID: E2, SandboxKey: '/var/run/docker/netns/0123456789ac', Options: {} })
  await expectRefused(t, d, {
    name: 'Program -p 8080:80 on a network whose default host address is not the host\'s', method: 'NetworkDriver.ProgramExternalConnectivity',
    body: program({}, { NetworkID: N2, EndpointID: E2 }), err: /192\.0\.2\.99 \(com\.docker\.network\.bridge\.host_binding_ipv4\): .*host IP 192\.0\.2\.99 is not an address of this host/,
  })
  await ok('NetworkDriver.ProgramExternalConnectivity', program({ HostIP: '127.0.0.1' }, { NetworkID: N2, EndpointID: E2 }))
})

t.test('a foreign link with the bridge name: refused, and the foreign link is left alone', async (t) => {
  const d = await baseline(t)
  // Docker's own bridge: no tsnet alias, a name tsnet does not reserve.
  d.host.objects.set('link docker0', { kind: 'link', name: 'docker0', type: 'bridge', alias: '', mtu: 1500, up: true, recreate: false })
  d.host.objects.set('addr docker0 172.17.0.1/16', { kind: 'addr', link: 'docker0', cidr: '172.17.0.1/16' })
  await expectRefused(t, d, { name: 'bridge named docker0', method: 'NetworkDriver.CreateNetwork', body: withGeneric({ 'com.docker.network.bridge.name': 'docker0' }), err: /docker0.*not tsnet's/ })
  t.same(d.link('docker0'), { kind: 'link', name: 'docker0', type: 'bridge', alias: '', mtu: 1500, up: true, recreate: false, addresses: ['172.17.0.1/16'] }, 'docker0 is exactly as it was')
})

// FakeHost fails the next change of a kind (`kind`) or of a kind and operation (`kind:op`).
// Every failure after a host change is undone, and the Err says so in one format.
const ROLLED_BACK = '\\(rolled back: the host is as it was\\)'

t.test('a host failure is an {Err} and is rolled back', async (t) => {
  // The baseline already made tsnet's chains and the host-wide settings: a second network adds its bridge, its settings and its set members.
  for (const op of ['sysctl', 'link:create', 'addr:create', 'setEntry:create'] as const) {
    const d = await baseline(t)
    d.host.failNext.add(op)
    await expectRefused(t, d, { name: `CreateNetwork with ${op} failing`, method: 'NetworkDriver.CreateNetwork', body: network(), err: new RegExp(`^creating network 4a4a4a4a4a4a ${ROLLED_BACK}: injected failure in ${op}`) })
  }
  for (const op of ['chains', 'sysctl', 'link:create', 'setEntry:create'] as const) {
    const first = await Driver.start(t) // tsnet's chains come with the first network
    first.host.failNext.add(op)
    await expectRefused(t, first, { name: `the first CreateNetwork with ${op} failing`, method: 'NetworkDriver.CreateNetwork', body: network(), err: new RegExp(`^creating network 4a4a4a4a4a4a ${ROLLED_BACK}: injected failure in ${op}`) })
    t.equal(first.host.edge, false, `the first CreateNetwork with ${op} failing: tsnet's chains are not left behind`)
  }
  const d = await baseline(t)
  d.host.failNext.add('link:create')
  await expectRefused(t, d, { name: 'CreateEndpoint with link:create failing', method: 'NetworkDriver.CreateEndpoint', body: endpoint(), err: new RegExp(`^creating endpoint 3f3f3f3f3f3f ${ROLLED_BACK}: injected failure in link:create`) })
  for (const op of ['reservePort', 'dnat:create'] as const) {
    const d = await baseline(t)
    d.host.failNext.add(op)
    await expectRefused(t, d, { name: `Program with ${op} failing`, method: 'NetworkDriver.ProgramExternalConnectivity', body: program({}), err: new RegExp(`^publishing ports of endpoint 2e2e2e2e2e2e ${ROLLED_BACK}: injected failure in ${op}`) })
    t.same([...d.host.heldPorts], [], `Program with ${op} failing: no host port stays held`)
  }
  await t.test('loopback publishing turns route_localnet on: a failure there is rolled back too', async (t) => {
    const d = await baseline(t)
    d.host.failNext.add('sysctl:update')
    await expectRefused(t, d, { name: 'Program -p 127.0.0.1:8080:80 with sysctl:update failing', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ HostIP: '127.0.0.1' }), err: new RegExp(`^publishing ports of endpoint 2e2e2e2e2e2e ${ROLLED_BACK}: injected failure in sysctl:update`) })
  })
  await t.test('a rollback that cannot finish says so', async (t) => {
    const d = await baseline(t)
    d.host.failNext.add('setEntry:create')
    d.host.failNext.add('link:delete') // the undo cannot remove the new bridge
    const before = await d.state()
    const a = await d.send('NetworkDriver.CreateNetwork', network())
    t.not(a.status, 200)
    t.match(a.json?.Err, /^creating network 4a4a4a4a4a4a \(rollback incomplete: 1 change\(s\) could not be undone, see the tsnet log\): injected failure in setEntry:create/)
    t.same(await d.storeFiles(), before.store, 'the store is unchanged')
    t.ok(d.link('tsbr-4a4a4a4a4a'), 'the bridge the undo could not remove is still there')
    t.equal((await d.send('Tsnet.Reconcile', {})).status, 200)
    t.same(d.host.state(), before.host, 'the next reconcile removes it: the host is as before the request')
  })
})

t.test('a host port already taken: refused naming it, nothing is published', async (t) => {
  await t.test('by another process', async (t) => {
    const d = await baseline(t)
    d.host.heldPorts.add('tcp/8080')
    await expectRefused(t, d, { name: 'Program -p 8080:80', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({}), err: /host port tcp\/8080 is already in use/ })
  })
  await t.test('by another endpoint', async (t) => {
    const d = await baseline(t)
    const other = { ...(endpoint() as object), EndpointID: E2, Interface: { Address: '10.9.0.3/24', AddressIPv6: '', MacAddress: '' } }
    t.equal((await d.send('NetworkDriver.CreateEndpoint', other)).status, 200)
    t.equal((await d.send('NetworkDriver.ProgramExternalConnectivity', program({}, { EndpointID: E2 }))).status, 200, 'the other endpoint publishes 8080')
    await expectRefused(t, d, { name: 'Program -p 8080:80 again', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({}), err: /host port tcp\/8080 is already published by endpoint 3f3f3f3f3f3f/ })
  })
  await t.test('a range whose every port is taken', async (t) => {
    const d = await baseline(t)
    for (const p of [8080, 8081, 8082]) d.host.heldPorts.add(`tcp/${p}`)
    await expectRefused(t, d, { name: 'Program -p 8080-8082:80', method: 'NetworkDriver.ProgramExternalConnectivity', body: program({ HostPortEnd: 8082 }), err: /host port tcp\/8080.* is already in use/ })
  })
})

t.test('deletes and releases of unknown objects answer 200 {} and change nothing', async (t) => {
  const d = await baseline(t)
  const unknown: Array<[string, Json]> = [
    ['NetworkDriver.DeleteNetwork', { NetworkID: N2 }],
    ['NetworkDriver.DeleteEndpoint', { NetworkID: N, EndpointID: E2 }],
    ['NetworkDriver.DeleteEndpoint', { NetworkID: N2, EndpointID: E2 }],
    ['NetworkDriver.DeleteEndpoint', { NetworkID: N2, EndpointID: E }], // known endpoint, other network
    ['NetworkDriver.Leave', { NetworkID: N, EndpointID: E2 }],
    ['NetworkDriver.Leave', { NetworkID: N2, EndpointID: E2 }],
    ['NetworkDriver.RevokeExternalConnectivity', { NetworkID: N2, EndpointID: E2 }],
    ['NetworkDriver.FreeNetwork', { NetworkID: N2 }],
    ['NetworkDriver.EndpointOperInfo', { NetworkID: N2, EndpointID: E2 }],
    ['IpamDriver.ReleaseAddress', { PoolID: 'LocalDefault/10.99.0.0/24', Address: '10.99.0.2' }],
    ['IpamDriver.ReleaseAddress', { PoolID: POOL, Address: '10.20.0.77' }], // known pool, address not leased
    ['IpamDriver.ReleaseAddress', { PoolID: POOL, Address: 'not-an-ip' }],
    ['IpamDriver.ReleasePool', { PoolID: 'LocalDefault/10.99.0.0/24' }],
    ['IpamDriver.ReleasePool', { PoolID: 'pool-10.81.0.0/24' }],
  ]
  for (const [method, body] of unknown) {
    const before = await d.state()
    const a = await d.send(method, body)
    const what = `${method} ${JSON.stringify(body)}`
    t.equal(a.status, 200, `${what}: 200`)
    if (method === 'NetworkDriver.EndpointOperInfo') t.same(a.json, { Value: {} }, `${what}: {Value:{}}`)
    else t.same(a.json, {}, `${what}: {}`)
    t.same(await d.state(), before, `${what}: nothing changes`)
  }
  t.test('twice in a row, too (Docker may retry a delete)', async (t) => {
    for (let i = 0; i < 2; i++) {
      t.same((await d.send('NetworkDriver.DeleteNetwork', { NetworkID: N2 })).json, {})
      t.same((await d.send('IpamDriver.ReleasePool', { PoolID: 'LocalDefault/10.99.0.0/24' })).json, {})
    }
  })
})

// IDs with control characters or spaces are refused by the protocol layer. The last test drives
// a LinuxHost whose netlink socket and tools only record what they are asked (nothing reaches a
// kernel), to see that such IDs never get as far as the host.
const INJECTED_ID = `${'a'.repeat(10)}\nlink del dev eth0`

for (const [name, method, body] of [
  ['NetworkID with a newline', 'NetworkDriver.CreateNetwork', network({ NetworkID: INJECTED_ID })],
  ['NetworkID with a space', 'NetworkDriver.CreateNetwork', network({ NetworkID: 'abc def' })],
  ['EndpointID with a newline', 'NetworkDriver.CreateEndpoint', endpoint({ EndpointID: `${'b'.repeat(12)}\nlink del dev eth0` })],
] as const) {
  t.test(name, async (t) => {
    const d = await baseline(t)
    await expectRefused(t, d, { name, method, body, err: /ID/ })
  })
}

/** An rtnetlink client that records every request and answers as an empty kernel would. */
class RecordingRtnl extends Rtnl {
  readonly sent: Array<{ type: number; doing: string; bytes: string }> = []

  override async request(type: number, _flags: number, body: readonly Buffer[], doing: string): Promise<NlMessage[]> {
    this.sent.push({ type, doing, bytes: Buffer.concat(body).toString('latin1') })
    return []
  }

  override async dump(): Promise<NlMessage[]> {
    return []
  }
}

t.test('on a real host (LinuxHost, netlink and tools recorded, nothing run)', async (t) => {
  const commands: string[] = []
  const runner: Runner = {
    async run(cmd: string, args: readonly string[], opts: { input?: string } = {}) {
      commands.push([cmd, ...args, opts.input ?? ''].join(' '))
      return { code: 0, stdout: '', stderr: '' }
    },
  }
  const rtnl = new RecordingRtnl()
  const dir = await mkdtemp(join(tmpdir(), 'tsnet-contract-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const logger = pino({ level: 'silent' })
  const config = {
    socket: join(dir, 'tsnet.sock'), stateDir: dir, logLevel: 'silent', defaultPools: parseDefaultPools(DOCKER_DEFAULT_POOLS_TEXT),
    gcIntervalSec: 0, procSys: '/proc/sys', reconcileIntervalSec: 0,
  }
  const services = await openServices(config, linuxHostVia(runner, rtnl), logger)
  // As main.ts: requests wait for the boot reconcile, whose failure is only logged.
  const app = buildApp({ logger, services, ready: services.reconciler.boot().then(() => undefined, () => undefined) })
  t.teardown(() => app.close())
  const create = (id: string) => app.inject({ method: 'POST', url: '/NetworkDriver.CreateNetwork', payload: wireText(network({ NetworkID: id })), headers: {} })
  await app.ready()
  await create('') // waits for the boot reconcile, so that only the requests below are recorded
  const reached = () => ({ netlink: rtnl.sent.length, tools: commands.length })
  const nothing = reached()

  const injected = await create(INJECTED_ID)
  t.not(injected.statusCode, 200, `a NetworkID with a newline is refused (${injected.body})`)
  t.same(Object.keys(JSON.parse(injected.body)), ['Err'])
  t.same(reached(), nothing, 'the request never reached the host: no netlink request, no tool run')

  const dots = await create('..')
  t.not(dots.statusCode, 200, `NetworkID ".." is refused (got ${dots.statusCode} ${dots.body})`)
  t.same(reached(), nothing, 'nor did this one')

  // Positive control: a valid NetworkID reaches the host through the same recorders.
  const valid = 'ab'.repeat(32)
  await create(valid)
  t.ok(rtnl.sent.some((m) => m.bytes.includes(`tsbr-${valid.slice(0, 10)}`)), 'a valid CreateNetwork sends netlink requests naming its bridge')
  t.notOk([...rtnl.sent.map((m) => m.bytes), ...commands].some((x) => x.includes('link del dev eth0') || x.includes('tsbr-..')), 'nothing sent to the host carries the hostile IDs')
})
