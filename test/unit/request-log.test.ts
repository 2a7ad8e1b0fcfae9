// One request, one request ID: every log line written while handling a Docker call carries the
// same reqId (the engine, the services and the host drivers all log through the request's
// logger), and two calls never share one. Lines of background work name their component instead.
import t from 'tap'
import { join } from 'node:path'
import { DOCKER_DEFAULT_POOLS_TEXT, parseDefaultPools } from '../../src/core/ipam.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { openServices } from '../../src/main.js'
import { buildApp } from '../../src/server/app.js'
import { loadScenario, wireText } from '../fixtures/wire/loader.js'
import { captureLog } from './fixtures/gc-fakes.js'
import { tempDir } from './fixtures/util.js'

t.test('every line of a request carries its request ID, and only its', async (t) => {
  const dir = await tempDir(t)
  const { logger, entries } = captureLog('debug')
  const config = { socket: join(dir, 'tsnet.sock'), stateDir: dir, logLevel: 'debug', defaultPools: parseDefaultPools(DOCKER_DEFAULT_POOLS_TEXT), gcIntervalSec: 0, procSys: '/proc/sys', reconcileIntervalSec: 0 }
  const services = await openServices(config, new FakeHost(), logger)
  const ready = services.reconciler.boot().then(() => undefined)
  const app = buildApp({ logger, services, ready })
  t.teardown(() => app.close())
  await ready
  const ids: string[] = []
  for (const c of loadScenario('legacy/10-run-publish-p8080')) {
    const from = entries.length
    const r = await app.inject({ method: 'POST', url: `/${c.method}`, payload: wireText(c.body) })
    t.equal(r.statusCode, 200, c.method)
    // Leave and DeleteEndpoint answer early and finish under the network's lock: their lines count too.
    await services.driver.lock.idle()
    const lines = entries.slice(from)
    t.ok(lines.length >= 1, `${c.method}: logged (${lines.length} line(s))`)
    const reqIds = new Set(lines.map((l) => l.reqId))
    t.equal(reqIds.size, 1, `${c.method}: one request ID on all its lines: ${[...reqIds].join(', ')}`)
    const id = [...reqIds][0] as string
    t.type(id, 'string')
    t.notOk(ids.includes(id), `${c.method}: a request ID of its own`)
    ids.push(id)
  }
  const published = entries.find((e) => e.msg === 'port published')
  t.match(published, { reqId: ids[3], endpoint: /^9c954d84adce/, proto: 'tcp', hostPort: 8080 }, 'the change names its object')
  const boot = entries.find((e) => e.msg === 'boot reconcile done')
  t.match(boot, { component: 'reconcile' }, 'background work names its component')
  t.equal(boot?.reqId, undefined)
})
