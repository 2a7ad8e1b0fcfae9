// The cluster store's settings (--etcd-*, --advertise-address) and the VTEP address default.
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SERVE_USAGE, loadConfig } from '../../src/config.js'
import { endpointHost, parseEtcdEndpoints } from '../../src/core/etcd-endpoints.js'
import { type RouteProbe, sourceAddressToward, vtepAddress } from '../../src/host/vtep-address.js'
import { expectTsnetError, tempDir } from './fixtures/util.js'

t.test('without --etcd-endpoints nothing changes', async (t) => {
  const c = loadConfig([], {})
  t.notOk('etcd' in c, 'no etcd key')
  t.notOk('advertiseAddress' in c, 'no advertise address')
  t.notOk('etcd' in loadConfig([], { TSNET_ETCD_ENDPOINTS: '' }), 'an empty variable is unset')
})

t.test('endpoints from the flag or the environment, canonical', async (t) => {
  t.same(loadConfig(['--etcd-endpoints', 'http://10.250.0.10:2379,http://10.250.0.11'], {}).etcd, { endpoints: ['http://10.250.0.10:2379', 'http://10.250.0.11:2379'] }, 'the default port is 2379')
  t.same(loadConfig([], { TSNET_ETCD_ENDPOINTS: ' http://etcd-a:2379/ , http://[fd00::1]:4001' }).etcd?.endpoints, ['http://etcd-a:2379', 'http://[fd00::1]:4001'], 'names, IPv6, spaces and a trailing slash')
  t.same(loadConfig(['--etcd-endpoints', 'http://a:1'], { TSNET_ETCD_ENDPOINTS: 'http://b:2' }).etcd?.endpoints, ['http://a:1'], 'the flag wins')
  t.ok(Object.isFrozen(loadConfig(['--etcd-endpoints', 'http://a:1'], {}).etcd), 'frozen')
  t.equal(endpointHost('http://[fd00::1]:4001'), 'fd00::1')
  t.equal(endpointHost('https://etcd-a:2379'), 'etcd-a')
})

t.test('bad endpoints are refused with a sentence naming the setting', async (t) => {
  const bad: Array<[string, RegExp]> = [
    ['10.0.0.1:2379', /is not a URL|not http/],
    ['ftp://10.0.0.1:2379', /http:\/\/ or https:\/\/, not ftp:/],
    ['unix:///run/etcd.sock', /not unix:/],
    ['http://10.0.0.1:2379/v3', /no path/],
    ['http://user:pw@10.0.0.1:2379', /credentials/],
    ['http://a:1,,http://b:2', /empty endpoint/],
    ['http://a:1,https://b:2', /mixes http and https/],
    ['http://a:1,http://a:1', /twice/],
    ['http://a:99999', /is not a URL/],
    [Array.from({ length: 17 }, (_, i) => `http://h${i}:1`).join(','), /at most 16/],
  ]
  for (const [text, why] of bad) {
    const err = await expectTsnetError(() => loadConfig(['--etcd-endpoints', text], {}), 'invalid')
    t.match(err.message, /^setting --etcd-endpoints \(env TSNET_ETCD_ENDPOINTS\): /, `${text.slice(0, 40)}: names the setting`)
    t.match(err.message, why, `${text.slice(0, 40)}: ${err.message}`)
  }
  t.throws(() => parseEtcdEndpoints('http://ok:1,nope'), /"nope" is not a URL/, 'the parser names the bad part')
})

t.test('TLS files: must exist, cert and key together, https endpoints', async (t) => {
  const dir = await tempDir(t)
  const ca = join(dir, 'ca.pem')
  const cert = join(dir, 'client.pem')
  const key = join(dir, 'client-key.pem')
  for (const f of [ca, cert, key]) await writeFile(f, 'PEM')
  const https = ['--etcd-endpoints', 'https://10.0.0.1:2379']
  t.same(loadConfig([...https, '--etcd-cafile', ca, '--etcd-certfile', cert, '--etcd-keyfile', key], {}).etcd, { endpoints: ['https://10.0.0.1:2379'], caFile: ca, certFile: cert, keyFile: key }, 'positive control: all three')
  t.same(loadConfig(https, { TSNET_ETCD_CAFILE: ca }).etcd, { endpoints: ['https://10.0.0.1:2379'], caFile: ca }, 'a CA alone, from the environment')
  const cases: Array<[string, string[], RegExp]> = [
    ['a missing CA file', [...https, '--etcd-cafile', join(dir, 'absent.pem')], /^setting --etcd-cafile \(env TSNET_ETCD_CAFILE\): cannot read .*absent\.pem/],
    ['a missing cert file', [...https, '--etcd-certfile', join(dir, 'nope.pem'), '--etcd-keyfile', key], /^setting --etcd-certfile .*cannot read .*nope\.pem/],
    ['a directory as key', [...https, '--etcd-certfile', cert, '--etcd-keyfile', dir], /^setting --etcd-keyfile .* is not a file/],
    ['a cert without its key', [...https, '--etcd-certfile', cert], /^setting --etcd-keyfile .*needs both/],
    ['a key without its cert', [...https, '--etcd-keyfile', key], /^setting --etcd-certfile .*needs both/],
    ['TLS with http endpoints', ['--etcd-endpoints', 'http://10.0.0.1:2379', '--etcd-cafile', ca], /must be https/],
    ['TLS without endpoints', ['--etcd-cafile', ca], /^setting --etcd-cafile .*needs --etcd-endpoints/],
  ]
  for (const [what, argv, why] of cases) {
    const err = await expectTsnetError(() => loadConfig(argv, {}), 'invalid')
    t.match(err.message, why, `${what}: ${err.message}`)
  }
})

t.test('--advertise-address: an IP, with --etcd-endpoints', async (t) => {
  const etcd = ['--etcd-endpoints', 'http://10.0.0.1:2379']
  t.equal(loadConfig([...etcd, '--advertise-address', '192.0.2.7'], {}).advertiseAddress, '192.0.2.7', 'positive control: IPv4')
  t.equal(loadConfig(etcd, { TSNET_ADVERTISE_ADDRESS: 'FD00:0::7' }).advertiseAddress, 'fd00::7', 'IPv6, canonical, from the environment')
  for (const bad of ['192.0.2.300', 'host.example', '10.0.0.1/24']) {
    const err = await expectTsnetError(() => loadConfig([...etcd, '--advertise-address', bad], {}), 'invalid')
    t.match(err.message, /^setting --advertise-address \(env TSNET_ADVERTISE_ADDRESS\): ".*" is not an IPv4 or IPv6 address$/, `${bad}: ${err.message}`)
  }
  const alone = await expectTsnetError(() => loadConfig(['--advertise-address', '192.0.2.7'], {}), 'invalid')
  t.match(alone.message, /need --etcd-endpoints/, 'without etcd it is refused')
})

t.test('tsnet serve --help lists the settings', async (t) => {
  for (const flag of ['--etcd-endpoints', '--etcd-cafile', '--etcd-certfile', '--etcd-keyfile', '--advertise-address', 'TSNET_ETCD_ENDPOINTS', 'TSNET_ADVERTISE_ADDRESS']) {
    t.match(SERVE_USAGE, flag, flag)
  }
})

/** A route probe that answers from a table, recording the calls. */
function fakeRoutes(answers: Record<string, string>) {
  const calls: string[] = []
  const probe: RouteProbe = async (ip) => {
    calls.push(ip)
    const a = answers[ip]
    if (a === undefined) throw Object.assign(new Error('connect ENETUNREACH'), { code: 'ENETUNREACH' })
    return a
  }
  return { probe, calls }
}

t.test('the VTEP address: --advertise-address, else the route toward the first endpoint', async (t) => {
  const ip = fakeRoutes({ '10.250.0.10': '10.250.0.21' })
  t.same(await vtepAddress({ endpoints: ['http://10.250.0.10:2379', 'http://10.250.0.11:2379'] }, ip.probe), { address: '10.250.0.21', source: 'route' }, 'the source toward the first endpoint')
  t.same(ip.calls, ['10.250.0.10'], 'one route lookup')
  t.same(await vtepAddress({ endpoints: ['http://10.250.0.10:2379'], advertiseAddress: '192.0.2.9' }, ip.probe), { address: '192.0.2.9', source: 'advertise-address' }, 'the setting overrides')
  t.equal(ip.calls.length, 1, 'and looks nothing up')
  const v6 = fakeRoutes({ 'fd00::10': 'fd00:0::21' })
  t.equal((await vtepAddress({ endpoints: ['http://[fd00::10]:2379'] }, v6.probe)).address, 'fd00::21', 'an IPv6 endpoint, canonical')
  const err = await expectTsnetError(() => sourceAddressToward('10.99.0.1', fakeRoutes({}).probe), 'host')
  t.match(err.message, /cannot find this host's address toward etcd host 10\.99\.0\.1 .*ENETUNREACH; give --advertise-address/, err.message)
  const none = await expectTsnetError(() => sourceAddressToward('10.99.0.1', fakeRoutes({ '10.99.0.1': '0.0.0.0' }).probe), 'host')
  t.match(none.message, /names no source address/)
})

t.test('the VTEP address on this machine: the real route to loopback', async (t) => {
  t.equal(await sourceAddressToward('127.0.0.1'), '127.0.0.1', 'a UDP socket connected to 127.0.0.1 (a route lookup; nothing is sent)')
  t.equal(await sourceAddressToward('localhost').catch(() => 'unresolved'), '127.0.0.1', 'a name is resolved first')
})
