// The HTTP side of the protocol (protocol.md §1): POST without Content-Type, JSON + "\n" or an
// empty body, 200 + JSON for success, non-200 + {"Err"} for failure; and once over a real socket.
import { request } from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { type Json, loadScenario, wireText } from '../fixtures/wire/loader.js'
import { DOCKER_HEADERS, Driver } from './fixtures/driver.js'

// The package's 60 s file timeout is too short on a loaded machine; this limit only catches hangs (issue 11).
t.setTimeout(600_000)

const NET = {
  NetworkID: '7e57'.repeat(16),
  Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': {} },
  IPv4Data: [{ AddressSpace: 'LocalDefault', Gateway: '10.93.0.1/24', Pool: '10.93.0.0/24' }],
  IPv6Data: [],
}

t.test('Plugin.Activate with an empty body (Content-Length: 0, no Content-Type)', async (t) => {
  const d = await Driver.start(t)
  const a = await d.raw('Plugin.Activate', '')
  t.equal(a.status, 200)
  t.same(a.json, { Implements: ['NetworkDriver', 'IpamDriver'] })
  t.equal(a.text, '{"Implements":["NetworkDriver","IpamDriver"]}', 'exactly the manifest')
})

t.test('NetworkDriver.GetCapabilities: Scope local', async (t) => {
  const d = await Driver.start(t)
  const a = await d.raw('NetworkDriver.GetCapabilities', '')
  t.equal(a.status, 200)
  t.equal(a.json?.Scope, 'local', 'a Scope other than local/global would leave the driver unregistered')
  t.ok(a.json?.ConnectivityScope === undefined || a.json.ConnectivityScope === 'local')
  t.notOk(a.json?.GwAllocChecker, 'no GwAllocCheck calls are asked for')
})

t.test('IpamDriver.GetCapabilities and GetDefaultAddressSpaces with empty bodies', async (t) => {
  const d = await Driver.start(t)
  const caps = await d.raw('IpamDriver.GetCapabilities', '')
  t.equal(caps.status, 200)
  t.equal(caps.json?.RequiresMACAddress, false)
  const spaces = await d.raw('IpamDriver.GetDefaultAddressSpaces', '')
  t.equal(spaces.status, 200)
  t.same(spaces.json, { LocalDefaultAddressSpace: 'LocalDefault', GlobalDefaultAddressSpace: 'GlobalDefault' })
  const pool = await d.send('IpamDriver.RequestPool', { AddressSpace: spaces.json.LocalDefaultAddressSpace, Pool: '10.94.0.0/24', SubPool: '', Options: null, V6: false })
  t.equal(pool.status, 200, 'the local space it names is one RequestPool accepts')
})

t.test('the recorded activation sequence answers 200 with JSON for each call', async (t) => {
  const d = await Driver.start(t)
  for (const c of loadScenario('restart/44-dockerd-restart-plugin-down').slice(0, 4)) {
    t.equal(c.body, null, `${c.method}: Docker sent no body`)
    const a = await d.send(c.method, c.body)
    t.equal(a.status, 200, c.method)
    t.type(a.json, 'object', `${c.method}: JSON object`)
  }
})

t.test('a body is accepted with Content-Type text/plain, application/json, anything, or none', async (t) => {
  for (const ct of [undefined, 'text/plain', 'application/json', 'application/octet-stream', 'application/x-www-form-urlencoded']) {
    const d = await Driver.start(t)
    const a = await d.raw('NetworkDriver.CreateNetwork', wireText(NET), ct ? { 'content-type': ct } : {})
    t.equal(a.status, 200, `Content-Type ${ct ?? '(none)'}: 200`)
    t.same(a.json, {}, `Content-Type ${ct ?? '(none)'}: {}`)
    t.ok(d.link('tsbr-7e577e577e'), `Content-Type ${ct ?? '(none)'}: the network was created`)
  }
})

t.test('a body without the trailing newline, and one with surrounding whitespace, are the same request', async (t) => {
  for (const text of [JSON.stringify(NET), `  ${JSON.stringify(NET)}\r\n\n`]) {
    const d = await Driver.start(t)
    const a = await d.raw('NetworkDriver.CreateNetwork', text)
    t.equal(a.status, 200)
    t.same(a.json, {})
  }
})

t.test('an empty body on a call that needs arguments is refused with {Err}', async (t) => {
  const d = await Driver.start(t)
  const before = await d.state()
  const a = await d.raw('NetworkDriver.CreateNetwork', '')
  t.not(a.status, 200)
  t.same(Object.keys(a.json ?? {}), ['Err'])
  t.match(a.json?.Err, /NetworkID/)
  t.same(await d.state(), before)
})

t.test('an unknown route answers non-200 with {Err} naming it', async (t) => {
  const d = await Driver.start(t)
  for (const m of ['NetworkDriver.Nope', 'VolumeDriver.Create', 'Plugin.Nope']) {
    const a = await d.raw(m, '{}\n')
    t.not(a.status, 200, `${m}: not 200`)
    t.same(Object.keys(a.json ?? {}), ['Err'], `${m}: {Err}`)
    t.match(a.json?.Err, m, `${m}: the error names the call`)
  }
})

t.test('ProgramExternalConnectivity/RevokeExternalConnectivity are implemented (200, not 404)', async (t) => {
  const d = await Driver.start(t)
  const net = 'a'.repeat(64)
  const ep = 'b'.repeat(64)
  const ok = async (m: string, body: Json) => {
    const a = await d.send(m, body)
    t.equal(a.status, 200, `${m}: 200 (${a.text.slice(0, 160)})`)
    return a
  }
  await ok('NetworkDriver.CreateNetwork', { NetworkID: net, Options: {}, IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.44.0.0/24', Gateway: '10.44.0.1/24' }], IPv6Data: [] })
  await ok('NetworkDriver.CreateEndpoint', { NetworkID: net, EndpointID: ep, Interface: { Address: '10.44.0.2/24', AddressIPv6: '', MacAddress: '' }, Options: {} })
  for (const m of ['NetworkDriver.ProgramExternalConnectivity', 'NetworkDriver.RevokeExternalConnectivity']) {
    t.same((await ok(m, { NetworkID: net, EndpointID: ep, Options: {} })).json, {}, `${m}: {}`)
  }
  const unknown = await d.send('NetworkDriver.ProgramExternalConnectivity', { NetworkID: 'c'.repeat(64), EndpointID: ep, Options: {} })
  t.same(Object.keys(unknown.json ?? {}), ['Err'], 'Program for a network tsnet does not know: {Err}, not a missing route')
  t.match(unknown.json?.Err, /network cccccccccccc is unknown/, 'naming the network')
  t.same((await ok('NetworkDriver.RevokeExternalConnectivity', { NetworkID: 'c'.repeat(64), EndpointID: ep, Options: {} })).json, {}, 'Revoke for an unknown network: {} (nothing to undo)')
})

function post(socketPath: string, path: string, body: string): Promise<{ status: number; text: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({
      socketPath,
      method: 'POST',
      path,
      // Exactly Docker's headers: Host, Accept, Content-Length; no Content-Type.
      headers: { ...DOCKER_HEADERS, 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), headers: res.headers }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

t.test('over a real unix socket, as Docker connects', async (t) => {
  const d = await Driver.start(t)
  const socket = join(d.dir, 'tsnet.sock')
  await d.app.listen({ path: socket })

  const activate = await post(socket, '/Plugin.Activate', '')
  t.equal(activate.status, 200)
  t.same(JSON.parse(activate.text), { Implements: ['NetworkDriver', 'IpamDriver'] })

  const caps = await post(socket, '/NetworkDriver.GetCapabilities', '')
  t.equal(JSON.parse(caps.text).Scope, 'local')

  const calls = loadScenario('legacy/01-network-create')
  const create = await post(socket, '/NetworkDriver.CreateNetwork', wireText(calls[0]?.body ?? null))
  t.equal(create.status, 200, 'CreateNetwork with JSON + "\\n" and no Content-Type')
  t.same(JSON.parse(create.text), {})

  const bad = await post(socket, '/NetworkDriver.CreateNetwork', '{"NetworkID":\n')
  t.not(bad.status, 200)
  t.match(JSON.parse(bad.text), { Err: /JSON/ }, 'a failure is {Err} over the socket too')

  const del = await post(socket, '/NetworkDriver.DeleteNetwork', wireText({ NetworkID: (calls[0]?.body as any).NetworkID }))
  t.equal(del.status, 200)
  t.same(JSON.parse(del.text), {})
  t.same([...d.host.links.keys()], [], 'the network came and went')
})
