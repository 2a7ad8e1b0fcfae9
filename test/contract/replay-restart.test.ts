// Replays the restart recordings. Docker never replays CreateNetwork/CreateEndpoint: after a tsnet
// restart it goes on calling CreateEndpoint/Join/Leave/DeleteEndpoint/DeleteNetwork for objects the
// previous process created, so tsnet must know them from its store. A tsnet restart here is a new
// app and new services over the same state directory and the same (fake) host, whose links survive.
import t from 'tap'
import { cloneBody, loadScenario, type RecordedCall } from '../fixtures/wire/loader.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { Driver } from './fixtures/driver.js'
import { Replayer, assertNoEdge } from './fixtures/replay.js'

// The package's 60 s file timeout is too short on a loaded machine; this limit only catches hangs (issue 11).
t.setTimeout(600_000)

const NET = '0fd15d6c35e7589ba47a5b80d5488615d7e2676c7de22e93eb50eb6f4d6a1435'
const veths = (d: Driver) => [...d.host.links.values()].filter((l) => l.type === 'veth').length

t.test('40 → plugin killed → 42 restarted → 43 dockerd restart → 44 dockerd restart while tsnet is down → 45 cleanup', async (t) => {
  const d = await Driver.start(t)
  const r = new Replayer(t, d)

  await r.replay(loadScenario('restart/40-setup'))
  t.equal(veths(d), 4, '40: two containers attached')

  // 41: tsnet dies. Docker's calls fail (nothing reaches tsnet) and `docker rm -f` of the second
  // container succeeds anyway, so its endpoint e8e17d32… is never deleted here: it leaks.
  const beforeRestart = await d.state()
  await d.restart()
  t.same(await d.state(), beforeRestart, 'a restart by itself changes neither the store nor the host')

  await r.replay(loadScenario('restart/42-plugin-restarted'), {
    after: (call, _body, answer) => {
      if (call.method === 'NetworkDriver.CreateEndpoint') t.equal(answer.status, 200, '42: CreateEndpoint on a network the previous process created')
      if (call.method === 'NetworkDriver.Join') t.equal(answer.json.Gateway, '10.66.0.1', '42: the gateway is known from the store')
    },
  })

  // 43: dockerd stops its containers (including ce62d2a6…, created by the first tsnet process) and
  // starts them again; tsnet keeps running.
  await r.replay(loadScenario('restart/43-dockerd-restart'), {
    after: (call, body) => {
      if (call.method === 'NetworkDriver.DeleteEndpoint' && (body as any).EndpointID.startsWith('ce62d2a6')) {
        t.notOk([...d.host.links.values()].some((l) => l.alias?.includes('ce62d2a6')), '43: the first process\'s endpoint is removed from the host')
      }
    },
  })

  // 44: dockerd restarts while tsnet is down (the stops of 43's containers never reach tsnet), then
  // tsnet starts again before Docker gives up.
  await d.restart()
  await r.replay(loadScenario('restart/44-dockerd-restart-plugin-down'), {
    after: (call, _body, answer) => {
      if (call.method === 'NetworkDriver.CreateEndpoint') {
        t.same(answer.json, { Interface: { MacAddress: '02:42:0a:42:00:02' } }, '44: 10.66.0.2 is handed out again (its old endpoint leaked) and gets its MAC')
      }
    },
  })

  await r.replay(loadScenario('restart/45-cleanup'))
  t.same([...d.host.links.keys()], [], '45: DeleteNetwork removed the bridge and every veth, leaked ones included')
  assertNoEdge(t, d, '45')
  t.same(await d.records('networks'), {}, '45: no network is left in the store')
  t.same(await d.records('endpoints'), {}, '45: no endpoint is left in the store')
})

t.test('41: recorded in an earlier run, on a network created before the recording', async (t) => {
  const d = await Driver.start(t)
  const r = new Replayer(t, d)
  const calls = loadScenario('restart/41-plugin-killed')
  const net = (calls[0]?.body as any).NetworkID as string
  t.not(net, NET, '41 uses another NetworkID than 40')

  // Synthesised setup: the network as 40 created its twin (10.66.0.0/24, gateway .1), and the
  // endpoint e33a4d75… that 41 removes without having created it.
  const create = cloneBody(loadScenario('restart/40-setup')[0]?.body as any)
  create.NetworkID = net
  const removedId = (calls.find((c) => c.method === 'NetworkDriver.DeleteEndpoint' && !calls.some((x) => x.method === 'NetworkDriver.CreateEndpoint' && (x.body as any).EndpointID === (c.body as any).EndpointID))?.body as any).EndpointID as string
  const setup: RecordedCall[] = [
    { method: 'NetworkDriver.CreateNetwork', body: create, recorded: {}, source: 'synthetic-41#0' },
    { method: 'NetworkDriver.CreateEndpoint', body: { NetworkID: net, EndpointID: removedId, Interface: { Address: '10.66.0.2/24', AddressIPv6: '', MacAddress: '' }, Options: { 'com.docker.network.endpoint.exposedports': [], 'com.docker.network.portmap': [] } }, recorded: {}, source: 'synthetic-41#1' },
    { method: 'NetworkDriver.Join', body: { NetworkID: net, EndpointID: removedId, SandboxKey: '/tmp/lab/eng/exec/netns/000000000000', Options: { 'com.docker.network.endpoint.exposedports': [], 'com.docker.network.portmap': [] } }, recorded: {}, source: 'synthetic-41#2' },
  ]
  await r.replay(setup)
  await r.replay(calls)
  t.equal(veths(d), 0, 'every endpoint of 41 is gone')
  t.same(await d.records('endpoints'), {}, 'no endpoint is left in the store')
  await r.replay([{ method: 'NetworkDriver.DeleteNetwork', body: { NetworkID: net }, recorded: {}, source: 'cleanup' }])
  t.same([...d.host.links.keys()], [], 'nothing is left on the host')
})

t.test('42 without a restart-safe store would fail: tsnet refuses endpoints on networks it does not know', async (t) => {
  // The same 42 CreateEndpoint sent to a tsnet whose state directory is new (not the one 40 wrote).
  const d = await Driver.start(t)
  const before = await d.state()
  const ce = loadScenario('restart/42-plugin-restarted')[0] as RecordedCall
  const a = await d.send(ce.method, ce.body)
  t.not(a.status, 200)
  t.match(a.json?.Err, /network 0fd15d6c35e7 is unknown/, 'the error names the network')
  t.same(await d.state(), before, 'nothing changes')
})

t.test('43 after a host reboot: the store survives, the kernel state does not, Docker replays nothing', async (t) => {
  // A reboot is a dockerd restart (43) where the bridge and veths are gone too: /var/lib/tsnet is
  // kept, Docker sends no CreateNetwork, and containers with a restart policy get CreateEndpoint
  // and Join on the network tsnet knows from its store.
  const first = await Driver.start(t)
  const r = new Replayer(t, first)
  await r.replay(loadScenario('restart/40-setup'))
  await first.app.close()

  const rebooted = await Driver.start(t, { dir: first.dir, host: new FakeHost() })
  const calls = loadScenario('restart/43-dockerd-restart')
  const startIndex = calls.findIndex((c) => c.method === 'Plugin.Activate')
  for (const c of calls.slice(startIndex)) {
    const a = await rebooted.send(c.method, c.body)
    t.equal(a.status, 200, `${c.source} ${c.method}: 200 (${a.text.slice(0, 160)})`)
    if (c.method === 'NetworkDriver.Join') t.equal(a.json?.Gateway, '10.66.0.1', `${c.source}: the gateway`)
  }
  t.ok(rebooted.link('tsbr-0fd15d6c35') ?? [...rebooted.host.links.values()].some((l) => l.type === 'bridge'), 'the network\'s bridge exists again')
})

t.test('a published port survives a tsnet restart: held again, its rule kept, and revocable', async (t) => {
  const d = await Driver.start(t)
  const r = new Replayer(t, d)
  const calls = loadScenario('legacy/10-run-publish-p8080')
  const upToProgram = calls.slice(0, calls.findIndex((c) => c.method === 'NetworkDriver.ProgramExternalConnectivity') + 1)
  await r.replay(upToProgram)
  t.same([...d.host.heldPorts], ['tcp/8080'], 'precondition: 8080 is published')
  const before = await d.state()
  await d.restart()
  t.same(await d.state(), before, 'after the restart the same port is held and the same DNAT rule is in place')
  await r.replay(calls.slice(upToProgram.length))
  t.same([...d.host.heldPorts], [], 'Revoke and DeleteEndpoint after the restart release the port')
  t.same([...d.host.portRules], [], 'and remove the rule')
  await r.replay([{ method: 'NetworkDriver.DeleteNetwork', body: { NetworkID: (calls[0]?.body as any).NetworkID }, recorded: {}, source: 'cleanup' }])
  assertNoEdge(t, d, 'after cleanup')
})
