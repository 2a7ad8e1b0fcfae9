// Replays what Docker 20.10 sent to a managed (v2) plugin, locally and with a swarm-scoped
// network, and the swarm-scope activation sequences.
import t from 'tap'
import { loadScenario } from '../fixtures/wire/loader.js'
import { Driver } from './fixtures/driver.js'
import { Replayer, assertNoEdge } from './fixtures/replay.js'

// The package's 60 s file timeout is too short on a loaded machine; this limit only catches hangs (issue 11).
t.setTimeout(600_000)

t.test('00: a managed plugin gets GetCapabilities with an empty body, never Plugin.Activate', async (t) => {
  const d = await Driver.start(t)
  const r = new Replayer(t, d)
  const calls = loadScenario('managed/00-activate')
  t.ok(calls.every((c) => c.body === null), 'every recorded body is empty')
  await r.replay(calls)
  t.ok(r.answers.every((x) => x.answer.json.Scope === 'local'), 'the driver registers as local scope each time')
})

t.test('50: managed plugin, local network, two containers', async (t) => {
  const d = await Driver.start(t)
  const r = new Replayer(t, d)
  await r.replay(loadScenario('managed/50-managed-local'))
  t.same([...d.host.links.keys()], [], 'no links are left')
  assertNoEdge(t, d, 'at the end')
  t.same(await d.records('networks'), {}, 'no networks are left in the store')
  t.same(await d.records('endpoints'), {}, 'no endpoints are left in the store')
})

t.test('51: managed plugin, swarm-scoped attachable network (25-character swarm NetworkID)', async (t) => {
  const d = await Driver.start(t)
  const r = new Replayer(t, d)
  const calls = loadScenario('managed/51-managed-swarm')
  await r.replay(calls, {
    after: async (call, body, answer) => {
      if (call.method === 'NetworkDriver.AllocateNetwork') {
        t.same(answer.json, { Options: {} }, 'AllocateNetwork echoes the (empty) options')
        t.same(await d.records('networks'), {}, 'AllocateNetwork (manager bookkeeping) creates nothing locally')
        t.same([...d.host.links.keys()], [], 'and touches nothing on the host')
      }
      if (call.method === 'NetworkDriver.FreeNetwork') {
        t.ok((await d.records('networks'))[(body as any).NetworkID], 'FreeNetwork leaves the node-local network to DeleteNetwork')
      }
    },
  })
  t.equal(r.answers.filter((x) => x.call.method === 'NetworkDriver.Join').length, 2)
  t.same([...d.host.links.keys()], [], 'no links are left')
  assertNoEdge(t, d, 'at the end')
  t.same(await d.records('networks'), {}, 'no networks are left in the store')
})

for (const name of ['swarm-scope/60-scope-local', 'swarm-scope/60-scope-global']) {
  t.test(`${name.split('/')[1]}: activation in a swarm node, with DiscoverNew`, async (t) => {
    const d = await Driver.start(t)
    const before = await d.state()
    const r = new Replayer(t, d)
    await r.replay(loadScenario(name))
    t.same(await d.state(), before, 'handshake, capabilities and discovery change nothing')
  })
}
