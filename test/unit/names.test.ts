// core/names: kernel names, validation of names, MACs and IDs.
import t from 'tap'
import {
  IFNAME_MAX, bridgeNameFor, checkId, checkIfName, checkMac, containerVethFor, endpointAlias, hostVethFor, macFromIpv4,
  macFromSeed, networkAlias, networkTag,
} from '../../src/core/names.js'
import { dockerId, ip } from './fixtures/util.js'

t.test('bridge and veth names are at most 15 characters, valid and deterministic', async (t) => {
  const netA = dockerId('a1b2c3d4e5f6')
  const netB = dockerId('a1b2c3d4e5f7')
  for (const [fn, prefix] of [[bridgeNameFor, 'tsbr-'], [hostVethFor, 'tsv'], [containerVethFor, 'tsc']] as const) {
    const name = fn(netA)
    t.ok(name.length <= IFNAME_MAX, `${name} fits in ${IFNAME_MAX} characters`)
    t.equal(name.length, 15, `${name} uses all 15 characters`)
    t.ok(name.startsWith(prefix), `${name} starts with ${prefix}`)
    t.equal(checkIfName(name), name, `${name} passes checkIfName`)
    t.equal(fn(netA), name, 'same ID, same name')
    t.equal(fn(netA.toUpperCase()), name, 'case does not matter')
    t.ok(netA.toLowerCase().startsWith(name.slice(prefix.length)), 'made from the start of the ID')
  }
  t.equal(bridgeNameFor(netA), 'tsbr-a1b2c3d4e5')
  t.equal(hostVethFor(netA), 'tsva1b2c3d4e5f6')
  t.equal(containerVethFor(netA), 'tsca1b2c3d4e5f6')
  t.not(hostVethFor(netA), hostVethFor(netB), '12 ID characters tell veths apart')
  t.not(hostVethFor(netA), containerVethFor(netA), 'host and container ends differ')
  t.equal(bridgeNameFor('abc'), 'tsbr-abc', 'short IDs give short names')
})

t.test('aliases and tags', async (t) => {
  const id = dockerId('feed')
  t.equal(networkAlias(id), `tsnet:net:${id}`)
  t.equal(endpointAlias(id), `tsnet:ep:${id}`)
  t.equal(networkTag(id), `tsnet:net:${id.slice(0, 12)}`)
})

t.test('checkIfName', async (t) => {
  for (const good of ['eth0', 'br-x', 'my_bridge', 'a', 'a.b', '...', 'a'.repeat(15)]) t.equal(checkIfName(good), good, `accepts ${good}`)
  for (const bad of ['', 'a'.repeat(16), 'a/b', '/', 'a b', ' ', 'tab\t', '.', '..', 'a:b', 'é', 'x\n']) {
    t.throws(() => checkIfName(bad), { name: 'TsnetError', kind: 'invalid', message: /is not usable/ }, `rejects ${JSON.stringify(bad)}`)
  }
  t.throws(() => checkIfName('a'.repeat(16), 'bridge name (x)'), { message: /^bridge name \(x\) "a{16}" is not usable: it must be 1 to 15 characters/ },
    'the message names what was checked')
})

t.test('checkMac', async (t) => {
  t.equal(checkMac('02:42:0a:00:00:02'), '02:42:0a:00:00:02')
  t.equal(checkMac('02:42:0A:00:00:0B'), '02:42:0a:00:00:0b', 'normalised to lower case')
  t.equal(checkMac('00:11:22:33:44:55'), '00:11:22:33:44:55', 'globally administered unicast is fine')
  for (const bad of ['02:42:0a:00:00', '02:42:0a:00:00:02:03', '02-42-0a-00-00-02', '0242.0a00.0002', '02:42:0a:00:00:0g', '2:42:a:0:0:2', '', ' 02:42:0a:00:00:02']) {
    t.throws(() => checkMac(bad), { name: 'TsnetError', kind: 'invalid', message: /is not of the form xx:xx:xx:xx:xx:xx/ }, `rejects ${JSON.stringify(bad)}`)
  }
  t.throws(() => checkMac('01:00:5e:00:00:01'), { name: 'TsnetError', kind: 'invalid', message: /multicast/ })
  t.throws(() => checkMac('ff:ff:ff:ff:ff:ff'), { name: 'TsnetError', kind: 'invalid', message: /multicast/ }, 'broadcast')
  t.throws(() => checkMac('03:00:00:00:00:00'), { name: 'TsnetError', kind: 'invalid', message: /multicast/ }, 'group bit set')
  t.throws(() => checkMac('00:00:00:00:00:00'), { name: 'TsnetError', kind: 'invalid', message: /00:00:00:00:00:00 cannot be given/ })
})

t.test('macFromIpv4 follows Docker (02:42 + the address)', async (t) => {
  t.equal(macFromIpv4(ip('10.0.0.2')), '02:42:0a:00:00:02')
  t.equal(macFromIpv4(ip('172.18.0.2')), '02:42:ac:12:00:02')
  t.equal(macFromIpv4(ip('192.168.255.254')), '02:42:c0:a8:ff:fe')
  t.equal(macFromIpv4(ip('255.255.255.255')), '02:42:ff:ff:ff:ff', 'high bit does not go negative')
  t.equal(checkMac(macFromIpv4(ip('10.0.0.2'))), '02:42:0a:00:00:02', 'a valid unicast MAC')
})

t.test('macFromSeed is stable, unicast and locally administered', async (t) => {
  const a = macFromSeed('seed-a')
  t.equal(macFromSeed('seed-a'), a)
  t.not(macFromSeed('seed-b'), a)
  t.match(a, /^02(:[0-9a-f]{2}){5}$/)
  t.equal(checkMac(a), a)
})

t.test('checkId', async (t) => {
  const hex = dockerId('ab')
  t.equal(checkId('network', hex), hex, '64 hex characters')
  t.equal(checkId('network', 'k3l2m1n0o9p8q7r6s5t4u3v2w'), 'k3l2m1n0o9p8q7r6s5t4u3v2w', 'a Swarm ID')
  t.equal(checkId('network', 'A'), 'A', 'one character')
  for (const bad of ['', hex + 'a', 'abc/def', '../etc', 'a b', 'a.b', 'a-b', 'a:b', 'abc\n', 5, null, undefined, {}]) {
    t.throws(() => checkId('network', bad), { name: 'TsnetError', kind: 'invalid', message: /^network .* is not a valid ID \(1 to 64 letters and digits\)$/ }, `rejects ${JSON.stringify(bad)}`)
  }
  t.throws(() => checkId('endpoint', 'x/y'), { message: /^endpoint "x\/y"/ }, 'the message names what was checked')
})
