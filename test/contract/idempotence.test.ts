// Docker re-sends a request only on transport errors (the same bytes, protocol.md §1), and swarm
// sends CreateNetwork again for dynamic networks: sending CreateNetwork, CreateEndpoint and Join a
// second time must give the same answers and leave the store and the host exactly as one send did.
// And after every request the host is exactly what the records want: a dry-run reconcile (what
// `tsnet doctor` runs) plans no change.
import t, { type Test } from 'tap'
import { loadScenario, loadScenarios, type RecordedCall } from '../fixtures/wire/loader.js'
import { Driver } from './fixtures/driver.js'

// The package's 60 s file timeout is too short on a loaded machine; this limit only catches hangs (issue 11).
t.setTimeout(600_000)

const REPEATED = new Set(['NetworkDriver.CreateNetwork', 'NetworkDriver.CreateEndpoint', 'NetworkDriver.Join'])

/** Strips what legitimately differs between two fresh drivers: timestamps and the random ULA /48. */
function normalise(files: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [path, text] of Object.entries(files)) {
    if (path === 'store/meta/ipam.json') continue
    out[path] = JSON.parse(text, (k, v) => (k === 'createdAt' ? '<time>' : v))
  }
  return out
}

/** A dry-run reconcile over the plugin socket plans nothing: no change, no failure, nothing missing or foreign. */
async function plansNothing(t: Test, d: Driver, what: string): Promise<void> {
  const a = await d.send('Tsnet.Reconcile', { DryRun: true })
  t.equal(a.status, 200, `${what}: the dry-run reconcile answers 200 (${a.text.slice(0, 200)})`)
  const { Changes, Failed, Missing, Foreign } = a.json ?? {}
  t.same({ Changes, Failed, Missing, Foreign }, { Changes: [], Failed: [], Missing: [], Foreign: [] }, `${what}: a reconcile right after plans nothing`)
}

function scenario(name: string, calls: RecordedCall[]) {
  return t.test(name, async (t) => {
    const once = await Driver.start(t)
    const twice = await Driver.start(t)
    for (const c of calls) {
      const a1 = await once.send(c.method, c.body)
      const b1 = await twice.send(c.method, c.body)
      t.equal(a1.status, 200, `${c.source} ${c.method}: 200`)
      t.same(b1.json, a1.json, `${c.source}: same first answer on both drivers`)
      await plansNothing(t, once, `${c.source} ${c.method}`)
      await plansNothing(t, twice, `${c.source} ${c.method} (second driver)`)
      if (!REPEATED.has(c.method)) continue
      const stateAfterOne = await twice.state()
      const b2 = await twice.send(c.method, c.body)
      t.equal(b2.status, 200, `${c.source} ${c.method} again: 200`)
      t.same(b2.json, b1.json, `${c.source} ${c.method} again: the same answer`)
      t.same(await twice.state(), stateAfterOne, `${c.source} ${c.method} again: store files and host exactly as after one`)
      await plansNothing(t, twice, `${c.source} ${c.method} again`)
      t.same(twice.host.state(), once.host.state(), `${c.source}: host state equals the driver that got it once`)
      t.same(normalise(await twice.storeFiles()), normalise(await once.storeFiles()), `${c.source}: store equals the driver that got it once (timestamps aside)`)
    }
    t.same(twice.host.state(), once.host.state(), 'the same host state at the end')
  })
}

t.test('the dry run sees drift, and only reports it (positive control for plansNothing)', async (t) => {
  const d = await Driver.start(t)
  for (const c of loadScenarios('legacy/01-network-create', 'legacy/02-run-c1')) t.equal((await d.send(c.method, c.body)).status, 200)
  await plansNothing(t, d, 'after network create and run')
  const member = [...d.host.objects.keys()].find((k) => k.startsWith('set '))
  t.ok(member, `the network has an ipset member (${member})`)
  d.host.objects.delete(member as string)
  const before = await d.state()
  const a = await d.send('Tsnet.Reconcile', { DryRun: true })
  t.equal(a.status, 200)
  t.same(a.json?.Changes, [`create ${member}`], 'the lost set member is the one change planned')
  t.same(await d.state(), before, 'a dry run changes neither store nor host')
  const repaired = await d.send('Tsnet.Reconcile', {})
  t.same(repaired.json?.Changes, [`create ${member}`], 'a real reconcile makes it')
  await plansNothing(t, d, 'after the repair')
})

await scenario('01-03: network, two containers', loadScenarios('legacy/01-network-create', 'legacy/02-run-c1', 'legacy/03-run-c2'))
await scenario('12: --mac-address (Docker sends the MAC; the answer is empty)', [...loadScenario('legacy/10-run-publish-p8080').slice(0, 1), ...loadScenario('legacy/12-run-mac-address')])
await scenario('20: internal network', loadScenario('legacy/20-net-internal'))
await scenario('21: IPv6 network', loadScenario('legacy/21-net-ipv6'))
await scenario('51: swarm network (25-character NetworkID)', loadScenario('managed/51-managed-swarm'))

t.test('Join twice with another SandboxKey (a retried start) answers the same and records the new sandbox', async (t) => {
  const d = await Driver.start(t)
  const calls = loadScenarios('legacy/01-network-create', 'legacy/02-run-c1')
  for (const c of calls.slice(0, 3)) t.equal((await d.send(c.method, c.body)).status, 200)
  const join = calls[2] as RecordedCall
  const first = await d.send(join.method, join.body)
  const other = { ...(join.body as object), SandboxKey: '/var/run/docker/netns/ffffffffffff' }
  await plansNothing(t, d, 'after the first Join')
  const second = await d.send(join.method, other)
  t.same(second.json, first.json, 'the same interface and gateway')
  await plansNothing(t, d, 'after the second Join')
  const ep = Object.values(await d.records('endpoints'))[0] as any
  t.equal(ep.sandboxKey, '/var/run/docker/netns/ffffffffffff')
})

t.test('CreateNetwork again after a restart (swarm re-creates dynamic networks) changes nothing', async (t) => {
  const d = await Driver.start(t)
  const calls = loadScenarios('legacy/01-network-create', 'legacy/02-run-c1')
  for (const c of calls) t.equal((await d.send(c.method, c.body)).status, 200)
  const before = await d.state()
  await d.restart()
  const again = await d.send('NetworkDriver.CreateNetwork', (calls[0] as RecordedCall).body)
  t.equal(again.status, 200)
  t.same(again.json, {})
  t.same(await d.state(), before, 'store and host are exactly as before')
  await plansNothing(t, d, 'after CreateNetwork again')
})
