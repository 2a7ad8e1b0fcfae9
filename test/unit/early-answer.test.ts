// DeleteEndpoint and Leave over HTTP answer early. DeleteEndpoint answers Docker once the
// endpoint's record is durably gone, and the kernel's removal of its links (some 20 ms, mostly RCU) follows under the network's lock: the
// next call on that network waits for it, a failure after the answer is logged and left to the
// reconcile, and a failure before it (the record could not be removed) is still answered as Err.
import t, { type Test } from 'tap'
import type { Logger } from 'pino'
import type { Op } from '../../src/core/objects.js'
import { hostVethFor } from '../../src/core/names.js'
import { buildApp } from '../../src/server/app.js'
import { captureLog } from './fixtures/gc-fakes.js'
import { TestHost, epReq, netReq, openUnit } from './fixtures/services.js'
import { dockerId } from './fixtures/util.js'

const NET = dockerId('0d')
const EP = dockerId('d1')
const EP2 = dockerId('d2')

/** A host whose link removals wait until the test lets them go. */
class GatedHost extends TestHost {
  gate: Promise<void> | undefined
  override async apply(ops: readonly Op[], l: Logger): Promise<void> {
    if (this.gate && ops.some((o) => o.op === 'delete' && o.obj.kind === 'link')) await this.gate
    return super.apply(ops, l)
  }
}

async function setup(t: Test) {
  const host = new GatedHost()
  const { logger, entries } = captureLog('info')
  const u = await openUnit(t, { host, logger })
  const app = buildApp({ logger, services: u.services })
  t.teardown(() => app.close())
  const call = (method: string, body: unknown) => app.inject({ method: 'POST', url: `/NetworkDriver.${method}`, payload: JSON.stringify(body) })
  t.equal((await call('CreateNetwork', netReq(NET))).statusCode, 200)
  t.equal((await call('CreateEndpoint', epReq(NET, EP))).statusCode, 200)
  return { u, host, call, entries }
}

t.test('the answer goes when the record is gone; the link follows, before the next call on the network', async (t) => {
  const { u, host, call } = await setup(t)
  let open!: () => void
  host.gate = new Promise((r) => { open = r })
  const deleted = await call('DeleteEndpoint', { NetworkID: NET, EndpointID: EP })
  t.equal(deleted.statusCode, 200)
  t.same(deleted.json(), {}, 'Docker has its answer')
  t.ok(host.links.has(hostVethFor(EP)), 'while the link is still being removed')
  t.same(await u.services.store.list('endpoints'), [], 'and the record is durably gone already')

  let nextDone = false
  const next = call('CreateEndpoint', epReq(NET, EP2)).then((r) => { nextDone = true; return r })
  await new Promise((r) => setTimeout(r, 20))
  t.notOk(nextDone, 'the next call on the same network waits for the removal')
  open()
  t.equal((await next).statusCode, 200, 'and is answered once it is done')
  t.notOk(host.links.has(hostVethFor(EP)), 'the link is gone')
  t.ok(host.links.has(hostVethFor(EP2)), 'the next endpoint is there')
  t.same((await u.dryRun()).changes, [], 'a reconcile plans nothing')
})

t.test('a removal that fails after the answer is logged, and the reconcile finishes it', async (t) => {
  const { u, host, call, entries } = await setup(t)
  host.failNext.add('link:delete')
  const deleted = await call('DeleteEndpoint', { NetworkID: NET, EndpointID: EP })
  t.same([deleted.statusCode, deleted.json()], [200, {}], 'answered before the failure')
  await u.services.driver.lock.idle()
  t.ok(entries.some((e) => e.msg === 'failed after the answer was sent (the reconcile finishes the work)' && e.level === 50), 'the failure is logged as an error')
  t.ok(host.links.has(hostVethFor(EP)), 'the link is left over')
  await u.services.reconciler.pass('event')
  t.notOk(host.links.has(hostVethFor(EP)), 'and the reconcile removes it')
})

t.test('a record that cannot be removed is still answered as an error, and changes nothing', async (t) => {
  const { u, host, call } = await setup(t)
  const before = host.state()
  u.failNextDelete()
  const r = await call('DeleteEndpoint', { NetworkID: NET, EndpointID: EP })
  t.equal(r.statusCode, 500)
  t.match(r.json(), { Err: /nothing was changed, because its record could not be removed/ })
  t.equal(host.state(), before, 'the host is as it was')
  t.equal((await u.services.store.list('endpoints')).length, 1, 'the record is still there')
})

t.test('Leave answers before its record is written; a write that fails then leaves the endpoint joined, which is safe', async (t) => {
  const { u, call, entries } = await setup(t)
  const SANDBOX = '/var/run/docker/netns/0123456789ab'
  t.equal((await call('Join', { NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX })).statusCode, 200)
  t.equal((await call('Leave', { NetworkID: NET, EndpointID: EP })).statusCode, 200)
  await u.services.driver.lock.idle()
  t.equal((await u.storedEndpoint(EP)).joined, false, 'the record is written after the answer (positive control)')

  t.equal((await call('Join', { NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX })).statusCode, 200)
  u.failNextPut()
  const left = await call('Leave', { NetworkID: NET, EndpointID: EP })
  t.same([left.statusCode, left.json()], [200, {}], 'answered before the write failed')
  await u.services.driver.lock.idle()
  t.ok(entries.some((e) => e.msg === 'failed after the answer was sent (the reconcile finishes the work)'), 'the failure is logged')
  t.match(await u.storedEndpoint(EP), { joined: true, sandboxKey: SANDBOX }, 'the record still says joined')
  t.same((await u.dryRun()).changes, [], 'which the reconcile accepts')
  t.same((await call('DeleteEndpoint', { NetworkID: NET, EndpointID: EP })).json(), {}, 'and DeleteEndpoint still removes the endpoint')
  await u.services.driver.lock.idle()
  t.same(await u.services.store.list('endpoints'), [])
})
