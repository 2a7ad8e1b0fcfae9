// What the daemon says about its health (/Tsnet.Status): Docker's API silence warned about once
// after five minutes, garbage collection's state with since-when, and the pass `tsnet doctor
// --fix` asks for (only records Docker does not explain and that are at least a minute old).
import t, { type Test } from 'tap'
import { ManualClock } from '../../src/engine/clock.js'
import { DockerContact, SILENCE_WARN_MS, watchedView } from '../../src/services/docker-contact.js'
import { ASKED_MIN_AGE_MS, GcService } from '../../src/services/gc-service.js'
import { Driver } from '../contract/fixtures/driver.js'
import { FakeDocker, captureLog } from './fixtures/gc-fakes.js'

const WARN = 40

t.test("Docker's API silent for five minutes: one warning, then again only after it answered and went silent again", async (t) => {
  const clock = new ManualClock()
  const { logger, entries } = captureLog()
  const contact = new DockerContact('unix:///wrong.sock', clock, logger)
  const docker = new FakeDocker('ENGINE')
  docker.fail = new Error('connect ENOENT /wrong.sock')
  const view = watchedView(docker, contact)
  const warnings = () => entries.filter((e) => e.level === WARN)
  for (let s = 0; s < SILENCE_WARN_MS / 1000; s += 30) {
    await t.rejects(view.listNetworks())
    clock.advance(30_000)
  }
  t.equal(warnings().length, 0, 'nothing in the first five minutes (it is not yet five minutes at the last failure)')
  t.match(contact.status(), { state: 'silent', dockerHost: 'unix:///wrong.sock', reason: 'connect ENOENT /wrong.sock' })
  await t.rejects(view.snapshot(() => false))
  t.equal(warnings().length, 1, 'at five minutes: one warning')
  t.match(warnings()[0], { dockerHost: 'unix:///wrong.sock', reason: 'connect ENOENT /wrong.sock', msg: /has not answered for 5 minutes: garbage collection and policies that name networks are on hold \(is --docker-host right/ })
  for (let i = 0; i < 5; i++) {
    clock.advance(60_000)
    await t.rejects(view.listNetworks())
  }
  t.equal(warnings().length, 1, 'still one, however long it lasts')
  docker.fail = undefined
  await view.listNetworks()
  t.match(contact.status(), { state: 'answering', lastAnswer: clock.iso() })
  t.ok(entries.some((e) => e.msg?.includes('answers again')), 'its return is logged')
  docker.fail = new Error('timeout')
  await t.rejects(view.listNetworks())
  clock.advance(SILENCE_WARN_MS)
  await t.rejects(view.listNetworks())
  t.equal(warnings().length, 2, 'a new silence of five minutes is warned about again')
})

t.test('the silence counts from the start when Docker never answered', async (t) => {
  const clock = new ManualClock()
  const { logger, entries } = captureLog()
  const contact = new DockerContact('unix:///x.sock', clock, logger)
  t.match(contact.status(), { state: 'silent', since: clock.iso() }, 'silent from the start')
  clock.advance(SILENCE_WARN_MS)
  contact.failed(new Error('ENOENT'))
  t.equal(entries.filter((e) => e.level === WARN).length, 1, 'the first failure after five minutes warns')
})

/** tsnet's records as Docker made them: pool 10.77.0.0/24, network, a gateway lease, two endpoint leases. */
async function withLeases(t: Test) {
  const d = await Driver.start(t)
  const ok = async (method: string, body: unknown) => {
    const a = await d.send(method, body as never)
    t.equal(a.status, 200, `${method}: ${a.text}`)
    return a.json
  }
  const { PoolID } = await ok('IpamDriver.RequestPool', { AddressSpace: 'LocalDefault', Pool: '10.77.0.0/24', SubPool: '', Options: {}, V6: false })
  await ok('IpamDriver.RequestAddress', { PoolID, Address: '10.77.0.1', Options: { RequestAddressType: 'com.docker.network.gateway' } })
  await ok('IpamDriver.RequestAddress', { PoolID, Address: '10.77.0.5', Options: {} })
  await ok('IpamDriver.RequestAddress', { PoolID, Address: '10.77.0.6', Options: {} })
  const docker = new FakeDocker('ENGINE')
  // Docker knows the pool's network with one container (10.77.0.5): 10.77.0.6 is stale.
  docker.networks = [{ id: 'f'.repeat(64), scope: 'local', ipam: [{ subnet: '10.77.0.0/24', gateway: '10.77.0.1', auxAddresses: [] }], endpoints: [{ endpointId: 'e'.repeat(64), ipv4: '10.77.0.5/24' }] }]
  const clock = new ManualClock(Date.now())
  const { logger } = captureLog()
  const gc = new GcService(d.services.store, docker, d.services.driver, d.services.ipam, { intervalMs: 3_600_000, minAgeMs: 3_600_000 }, logger, clock)
  await gc.load()
  const leased = () => d.services.ipam.poolsWithLeases().flatMap((p) => p.leases.map((l) => l.address)).sort()
  return { d, docker, clock, gc, leased }
}

t.test('garbage collection says its state, and since when', async (t) => {
  const { docker, clock, gc } = await withLeases(t)
  const started = clock.iso()
  t.same(gc.status(), { state: 'starting', since: started })
  docker.fail = new Error('connect ENOENT')
  await gc.pass()
  const waitingSince = clock.iso()
  t.same(gc.status(), { state: 'waiting', since: waitingSince, reason: 'Docker does not answer: connect ENOENT' })
  clock.advance(10_000)
  docker.fail = new Error('timeout')
  await gc.pass()
  t.same(gc.status(), { state: 'waiting', since: waitingSince, reason: 'Docker does not answer: timeout' }, 'still waiting since the first failure')
  docker.fail = undefined
  clock.advance(10_000)
  await gc.pass()
  t.match(gc.status(), { state: 'running', since: clock.iso(), lastPass: { at: clock.iso(), unexplained: 1, collected: 0 } }, 'running: one suspect, nothing collected before two passes an hour apart')
  const runningSince = clock.iso()
  clock.advance(10_000)
  docker.engineId = 'ANOTHER'
  await gc.pass()
  t.match(gc.status(), { state: 'refused', since: clock.iso(), reason: /the store belongs to Docker engine ENGINE, but the engine at the Docker host is ANOTHER/ })
  docker.engineId = 'ENGINE'
  await gc.pass()
  t.match(gc.status(), { state: 'running', lastPass: { unexplained: 1 } })
  t.not((gc.status() as { since: string }).since, runningSince, 'a new run after the refusal')
})

t.test('doctor --fix: a pass now collects only what Docker does not explain and is at least a minute old', async (t) => {
  const { clock, gc, leased } = await withLeases(t)
  t.same(leased(), ['10.77.0.1', '10.77.0.5', '10.77.0.6'])
  let outcome = await gc.collectNow(false)
  t.match(outcome, { ran: true, unexplained: 1, collected: [] }, 'a young lease (just made) is left')
  clock.advance(ASKED_MIN_AGE_MS + 1000)
  outcome = await gc.collectNow(true)
  t.match(outcome, { ran: true, unexplained: 1, collected: [{ kind: 'lease', address: '10.77.0.6' }] }, 'a dry run says what it would collect')
  t.same(leased(), ['10.77.0.1', '10.77.0.5', '10.77.0.6'], '... and collects nothing')
  outcome = await gc.collectNow(false)
  t.match(outcome, { ran: true, collected: [{ kind: 'lease', address: '10.77.0.6' }] })
  t.same(leased(), ['10.77.0.1', '10.77.0.5'], 'the stale lease is gone, the explained ones stay')
  t.match(gc.status(), { state: 'running', lastPass: { collected: 1 } })
})
