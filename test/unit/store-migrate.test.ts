// store/migrate: the committed schema-1 state directory (test/fixtures/store-schema-1, written by
// main at 0e24fa3) migrates to schema 2 and reads back; tsnet serve boots on it unchanged; tsnet
// status reads it before, during and after, writing nothing; and a kill -9 at each migration
// crash point leaves the old store or the new one, never a mix, which the next open completes.
import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { cp, readdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pino } from 'pino'
import { loadConfig } from '../../src/config.js'
import { checkStoredRecord } from '../../src/core/record-check.js'
import { upgradeRecord } from '../../src/core/record-upgrade.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { openServices } from '../../src/main.js'
import { readStore } from '../../src/cli/state-read.js'
import { FileStore } from '../../src/store/file-store.js'
import { MIGRATE_CRASH_POINTS } from '../../src/store/crash-points.js'
import { COLLECTIONS } from '../../src/store/store.js'
import { tempDir } from './fixtures/util.js'
import { bridgeOf } from '../../src/modes/bridge.js'

// Several migrating processes, one after another: a limit that catches a hang, not a slow machine.
t.setTimeout(240_000)

const here = dirname(fileURLToPath(import.meta.url))
const FIXTURE = join(here, '..', 'fixtures', 'store-schema-1', 'state')
const migrator = join(here, 'fixtures', 'store-migrator.mjs')
const built = existsSync(join(here, '..', '..', 'dist', 'store', 'file-store.js'))

/** The transform tsnet serve migrates with: schema-1 networks get a mode and a bridge spec; the rest stays. */
const upgrade = upgradeRecord
const check = checkStoredRecord

/** Every file under `dir`, relative path → text; undefined when there is no such directory. */
async function files(dir: string): Promise<Record<string, string> | undefined> {
  if (!existsSync(dir)) return undefined
  const out: Record<string, string> = {}
  const walk = async (p: string): Promise<void> => {
    for (const e of (await readdir(p, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.isDirectory()) await walk(join(p, e.name))
      else out[relative(dir, join(p, e.name))] = await readFile(join(p, e.name), 'utf8')
    }
  }
  await walk(dir)
  return out
}

const OLD = (await files(join(FIXTURE, 'store'))) as Record<string, string>
/** The schema-2 store the migration makes of the fixture, byte for byte. */
const NEW = Object.fromEntries(Object.entries(OLD).map(([path, text]) => {
  if (path === join('meta', 'schema.json')) return [path, JSON.stringify({ version: 2 })]
  const [collection, name] = path.split('/') as [string, string]
  return [path, JSON.stringify(upgrade(collection, decodeURIComponent(name.slice(0, -5)), JSON.parse(text)))]
}))

async function fixtureCopy(t: Test): Promise<string> {
  const dir = await tempDir(t, 'tsnet-migrate-')
  await cp(FIXTURE, dir, { recursive: true })
  return dir
}

/** Every record of the store, collection/id → value. */
async function everything(store: FileStore): Promise<Record<string, unknown>> {
  return Object.fromEntries((await store.list('')).filter((e) => e.key !== 'meta/schema').map((e) => [e.key, e.value]))
}
const expectedRecords = Object.fromEntries(Object.entries(NEW).filter(([path]) => path !== join('meta', 'schema.json')).map(([path, text]) => [`${path.split('/')[0]}/${decodeURIComponent((path.split('/')[1] as string).slice(0, -5))}`, JSON.parse(text) as unknown]))

t.test('the fixture is schema 1 as main wrote it', async (t) => {
  t.same(JSON.parse(OLD[join('meta', 'schema.json')] ?? ''), { version: 1 })
  const count = (c: string) => Object.keys(OLD).filter((p) => p.startsWith(`${c}/`)).length
  t.same(COLLECTIONS.map((c) => [c, count(c)]), [['networks', 2], ['endpoints', 3], ['pools', 3], ['leases', 8], ['meta', 4]])
  t.ok(Object.entries(OLD).some(([p, text]) => p.startsWith('endpoints/') && (JSON.parse(text) as { published?: unknown[] }).published?.length), 'an endpoint with published ports')
})

t.test('the fixture migrates: schema 2 on disk, the old store kept as the backup, every record reads back', async (t) => {
  const dir = await fixtureCopy(t)
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (l: string) => { lines.push(JSON.parse(l) as Record<string, unknown>) } })
  const store = await FileStore.open(dir, log, { upgrade, check })
  t.same(await files(join(dir, 'store')), NEW, 'store/ is exactly the migrated store')
  t.same(await files(join(dir, 'store.schema-1')), OLD, 'store.schema-1/ is exactly the old store')
  t.same((await readdir(dir)).sort(), ['store', 'store.schema-1'], 'no migration directory is left')
  t.same(await everything(store), expectedRecords, 'every record reads back, networks in the new shape')
  const nets = (await store.list<{ mode: string; spec: { bridge: string }; bridge?: string }>('networks/')).map((e) => e.value)
  t.same(nets.map((n) => [n.mode, n.spec.bridge, n.bridge]), [['bridge', 'br-web', undefined], ['bridge', 'tsbr-0b01234567', undefined]], 'bridge and bridgeNamedByUser moved into spec')
  t.notOk(existsSync(join(dir, 'store', 'quarantine')), "today's shape checks pass on every migrated record")
  t.match(lines.find((l) => l.store === 'migrated'), { from: 1, to: 2, records: 19, quarantined: 0 }, 'the migration is logged with its counts')
  const again = await FileStore.open(dir, log, { upgrade: () => { throw new Error('must not run twice') }, check })
  t.same(await everything(again), expectedRecords, 'opening again reads schema 2 as it is')
})

t.test('tsnet serve boots on the fixture unchanged: networks, endpoints, pools, leases and names load and restore', async (t) => {
  const dir = await fixtureCopy(t)
  const config = loadConfig(['--state-dir', dir, '--docker-host', `unix://${join(dir, 'no-docker.sock')}`], {})
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (l: string) => { lines.push(JSON.parse(l) as Record<string, unknown>) } })
  const host = new FakeHost()
  const services = await openServices(config, host, log)
  t.same(services.driver.snapshot().networks.map((n) => n.id.slice(0, 2)).sort(), ['0a', '0b'])
  t.same(services.driver.snapshot().endpoints.map((e) => e.id.slice(0, 2)).sort(), ['e1', 'e2', 'e3'])
  t.same(services.driver.snapshot().networks.map((n) => [n.mode, bridgeOf(n)]).sort(), [['bridge', 'br-web'], ['bridge', 'tsbr-0b01234567']], 'networks in the schema-2 shape')
  t.same(services.ipam.snapshot().map((p) => [p.pool, p.leases.length]).sort(), [['10.20.0.0/16', 3], ['172.18.0.0/16', 2], ['fda8:e96d:6be8::/64', 3]])
  t.same(services.names.resolve('web'), ['10.20.0.0/16', 'fda8:e96d:6be8::/64'], "Docker's names came through")
  t.notOk(lines.some((l) => l.store === 'quarantined'), 'nothing was quarantined')
  await services.reconciler.boot()
  t.ok(host.links.has('br-web') && host.links.has('tsbr-0b01234567'), 'both bridges restored')
  t.ok(host.edge, 'the firewall edge is in place')
  t.same([...host.heldPorts].sort(), ['tcp/32768', 'tcp/8080', 'udp/5300'], 'the published ports are held again')
  t.equal(host.portRules.size, 5, 'and their five DNAT rules are back')
  t.same((await services.reconciler.pass('event', true)).changes, [], 'and a reconcile right after plans nothing')
  services.reconciler.stop()
  await services.store.close()
  t.equal(JSON.parse(await readFile(join(dir, 'store', 'meta', 'schema.json'), 'utf8')).version, 2, 'the store is schema 2 now')
})

/** What `tsnet status` reads of the store (cli/state-read.ts), with the state directory's files before and after. */
async function status(dir: string): Promise<{ out: unknown; before: unknown; after: unknown }> {
  const before = await files(dir)
  const out = JSON.parse(JSON.stringify(await readStore(dir))) as unknown
  return { out, before, after: await files(dir) }
}

t.test('tsnet status reads schema 1 and schema 2 alike, and writes nothing', async (t) => {
  const dir = await fixtureCopy(t)
  const old = await status(dir)
  t.same(old.after, old.before, 'on schema 1: no file written, moved or made')
  const out = old.out as { networks: unknown[]; endpoints: unknown[]; pools: unknown[]; leases: unknown[] }
  t.same([out.networks.length, out.endpoints.length, out.pools.length, out.leases.length], [2, 3, 3, 8], 'everything listed')
  await (await FileStore.open(dir, undefined, { upgrade })).close()
  const migrated = await status(dir)
  t.same(migrated.out, old.out, 'after the migration: the same')
  t.same(migrated.after, migrated.before, 'no file written')
})

t.test('kill -9 during the migration: old or new, never a mix; the next open finishes it', { skip: built ? false : 'build first (npm run build): the child uses dist/' }, async (t) => {
  const cases = [
    ...[1, 10].map((after) => ({ point: 'migrate:mid-copy', after, expect: 'old' })),
    { point: 'migrate:before-swap', after: 1, expect: 'old' },
    { point: 'migrate:after-backup', after: 1, expect: 'between' },
    { point: 'migrate:after-swap', after: 1, expect: 'new' },
  ]
  t.same([...new Set(cases.map((c) => c.point))], [...MIGRATE_CRASH_POINTS], 'every migration crash point is covered')
  for (const { point, after, expect } of cases) {
    const name = `${point} #${after}`
    const dir = await fixtureCopy(t)
    const child = spawnSync(process.execPath, [migrator, dir], { env: { ...process.env, TSNET_TEST_CRASH_AT: point, TSNET_TEST_CRASH_AFTER: String(after) }, encoding: 'utf8' })
    t.equal(child.signal, 'SIGKILL', `${name}: the migration was killed there`)
    const live = await files(join(dir, 'store'))
    const state = live === undefined ? 'between' : JSON.stringify(live) === JSON.stringify(OLD) ? 'old' : JSON.stringify(live) === JSON.stringify(NEW) ? 'new' : 'MIXED'
    t.equal(state, expect, `${name}: store/ is ${expect === 'between' ? 'absent, between the renames' : `entirely the ${expect} store`}`)
    if (state === 'between') {
      t.same(await files(join(dir, 'store.schema-1')), OLD, `${name}: the backup is the whole old store`)
      t.same(await files(join(dir, 'store.migrating')), NEW, `${name}: store.migrating is the whole new store`)
    }
    // A reader that must not write (tsnet status) right now: it sees every record and changes nothing.
    const before = await files(dir)
    const reader = await FileStore.open(dir, undefined, { readOnly: true, upgrade })
    t.same(await everything(reader), expectedRecords, `${name}: a read-only open reads every record`)
    t.same(await files(dir), before, `${name}: and writes nothing`)
    // The next start: recovery, then the migration if it is still to do.
    const store = await FileStore.open(dir, pino({ level: 'silent' }), { upgrade, check })
    t.same(await files(join(dir, 'store')), NEW, `${name}: after the next open, store/ is the new store`)
    t.same(await files(join(dir, 'store.schema-1')), OLD, `${name}: and the backup the old one`)
    t.same((await readdir(dir)).sort(), ['store', 'store.schema-1'], `${name}: nothing else is left`)
    t.same(await everything(store), expectedRecords, `${name}: nothing lost`)
  }
})

t.test('tsnet status between the two renames of a migration shows what it shows before and after', { skip: built ? false : 'build first' }, async (t) => {
  const dir = await fixtureCopy(t)
  const old = await status(dir)
  const child = spawnSync(process.execPath, [migrator, dir], { env: { ...process.env, TSNET_TEST_CRASH_AT: 'migrate:after-backup' }, encoding: 'utf8' })
  t.equal(child.signal, 'SIGKILL', 'killed between the renames')
  t.notOk(existsSync(join(dir, 'store')), 'store/ is absent')
  const between = await status(dir)
  t.same(between.after, between.before, 'status wrote nothing')
  t.same(between.out, old.out, 'it showed what it showed on schema 1')
  await (await FileStore.open(dir, undefined, { upgrade })).close()
  t.same((await status(dir)).out, old.out, 'and what it shows once the migration is finished')
})

t.test('a record that cannot be migrated: refused without a logger (store unchanged), quarantined with one', async (t) => {
  const dir = await fixtureCopy(t)
  await writeFile(join(dir, 'store', 'networks', 'torn.json'), '{"id":')
  const before = await files(dir)
  await t.rejects(FileStore.open(dir, undefined, { upgrade }), { name: 'TsnetError', context: { exitCode: 78 }, message: /cannot migrate the store .* from schema 1 to 2 \(it is unchanged\): record .*torn\.json cannot be migrated/ })
  t.same(await files(dir), before, 'the state directory is exactly as it was')
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'error' }, { write: (l: string) => { lines.push(JSON.parse(l) as Record<string, unknown>) } })
  const store = await FileStore.open(dir, log, { upgrade, check })
  t.same(await everything(store), expectedRecords, 'with a logger the other records migrate')
  const quarantined = await readdir(join(dir, 'store', 'quarantine'))
  t.equal(quarantined.length, 1, 'the torn record is in store/quarantine')
  t.equal(await readFile(join(dir, 'store', 'quarantine', quarantined[0] as string), 'utf8'), '{"id":', 'as it was')
  t.match(lines, [{ store: 'quarantined', collection: 'networks', file: 'torn.json' }], 'and reported')
})

t.test('a schema-1 store opened without the upgrade is refused with exit code 78, unchanged', async (t) => {
  const dir = await fixtureCopy(t)
  const before = await files(dir)
  await t.rejects(FileStore.open(dir), { name: 'TsnetError', context: { exitCode: 78 }, message: /schema version 1, written by an earlier tsnet; it is migrated to version 2 when opened with the record upgrade/ })
  await t.rejects(FileStore.open(dir, undefined, { readOnly: true }), { name: 'TsnetError', context: { exitCode: 78 } }, 'read-only too')
  t.same(await files(dir), before, 'nothing changed')
})
