// tsnet status and tsnet doctor run beside the daemon without its lock, so they must change
// nothing: the store opened read-only creates, writes, moves and removes nothing (not even the
// daemon's in-flight temporary files), and doctor's in-process dry-run reconcile (services built
// as serve builds them, read-only) applies nothing to the host.
import t from 'tap'
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pino } from 'pino'
import { DOCKER_DEFAULT_POOLS_TEXT, parseDefaultPools } from '../../src/core/ipam.js'
import { openServices } from '../../src/main.js'
import { readStore } from '../../src/cli/state-read.js'
import { FileStore } from '../../src/store/file-store.js'
import { loadScenario } from '../fixtures/wire/loader.js'
import { Driver } from '../contract/fixtures/driver.js'
import { expectTsnetError, tempDir } from './fixtures/util.js'

t.test('a read-only store on a directory with no store creates nothing and refuses writes', async (t) => {
  const dir = await tempDir(t)
  const store = await FileStore.open(join(dir, 'state'), undefined, { readOnly: true })
  t.same(await store.list('networks'), [], 'reads as empty')
  t.notOk(existsSync(join(dir, 'state')), 'nothing was created')
  const err = await expectTsnetError(() => store.put('networks', 'x', {}), 'invalid')
  t.match(err.message, /opened read-only/)
  await expectTsnetError(() => store.delete('networks', 'x'), 'invalid')
  t.notOk(existsSync(join(dir, 'state')), 'still nothing')
})

t.test("status's read leaves the daemon's temporary files and every record alone", async (t) => {
  const d = await Driver.start(t)
  for (const c of loadScenario('legacy/10-run-publish-p8080').slice(0, 4)) await d.send(c.method, c.body)
  // A write the daemon has in flight: its temporary file beside the record.
  await mkdir(join(d.dir, 'store', 'endpoints'), { recursive: true })
  await writeFile(join(d.dir, 'store', 'endpoints', 'inflight.json.123.1.tmp'), '{"half":')
  const before = await d.storeFiles()
  const read = await readStore(d.dir)
  t.equal(read.networks.length, 1)
  t.equal(read.endpoints.length, 1)
  t.same(await d.storeFiles(), before, 'every file as it was, the temporary one included')
})

t.test("doctor's in-process dry run over services opened read-only applies nothing and writes nothing", async (t) => {
  const d = await Driver.start(t)
  for (const c of loadScenario('legacy/10-run-publish-p8080').slice(0, 4)) await d.send(c.method, c.body)
  const bridge = [...d.host.links.keys()].find((n) => n.startsWith('tsbr-')) as string
  d.host.objects.delete(`link ${bridge}`)
  d.host.objects.set('chains', { kind: 'chains', intact: false })
  const store = await d.storeFiles()
  const host = d.host.state()
  const calls = d.host.calls.length
  const config = {
    socket: join(d.dir, 'tsnet.sock'), stateDir: d.dir, logLevel: 'silent', defaultPools: parseDefaultPools(DOCKER_DEFAULT_POOLS_TEXT),
    gcIntervalSec: 0, procSys: '/proc/sys', reconcileIntervalSec: 0,
  }
  const services = await openServices(config, d.host, pino({ level: 'silent' }), undefined, { readOnly: true })
  services.engine.seed(services.state.allChanges())
  const report = await services.reconciler.pass('request', true)
  t.ok(report.changes.includes(`create link ${bridge}`), `the dry run sees the missing bridge: ${report.changes.join(', ')}`)
  t.ok(report.changes.includes('update chains'), 'and the changed chains')
  t.same(d.host.state(), host, 'the host is exactly as before')
  t.same(d.host.calls.slice(calls).filter((c) => c !== 'observe'), [], 'the host was only observed')
  t.same(await d.storeFiles(), store, 'the store is exactly as before')
  await expectTsnetError(() => services.store.put('meta', 'x', {}), 'invalid')
  t.same(await d.storeFiles(), store, 'a write through those services is refused')
})
