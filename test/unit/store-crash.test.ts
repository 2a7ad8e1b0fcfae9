// kill -9 inside the store's write path: at every injected point, at several depths, the store
// afterwards opens, and each record is exactly its old or its new value (or, for delete, present
// or absent): never torn, never unreadable, no temporary file left after a load. Multi-key
// transactions leave a prefix of their writes; creates (link) leave each record absent or whole.
import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pino } from 'pino'
import { FileStore } from '../../src/store/file-store.js'
import { WRITE_CRASH_POINTS } from '../../src/store/crash-points.js'

// Some 25 writer processes, one after another: a limit that catches a hang, not a slow machine.
t.setTimeout(300_000)

const here = dirname(fileURLToPath(import.meta.url))
const writer = join(here, 'fixtures', 'store-writer.mjs')
const COUNT = 6
const built = existsSync(join(here, '..', '..', 'dist', 'store', 'file-store.js'))

async function seed(dir: string): Promise<void> {
  const store = await FileStore.open(dir)
  for (let i = 0; i < COUNT; i++) await store.put('networks', `r${i}`, { v: 'old', i })
}

/** Runs the writer in `mode`, killed at the `after`-th pass of `point`; returns the records it left (after a load). */
async function crashWriter(t: Test, point: string, after: number, mode: string): Promise<Map<string, { v: string; i: number }>> {
  const dir = t.testdir({})
  await seed(dir)
  const child = spawnSync(process.execPath, [writer, dir, String(COUNT), mode], {
    env: { ...process.env, TSNET_TEST_CRASH_AT: point, TSNET_TEST_CRASH_AFTER: String(after) },
    encoding: 'utf8',
  })
  t.equal(child.signal, 'SIGKILL', `${mode} ${point} #${after}: the writer was killed there`)
  t.notMatch(child.stdout, /finished/, `${mode} ${point} #${after}: it did not get to the end`)
  const store = await FileStore.open(dir, pino({ level: 'silent' }))
  const records = new Map((await store.list<{ v: string; i: number }>('networks/')).map((r) => [r.id, r.value]))
  t.notOk(existsSync(join(dir, 'store', 'quarantine')), `${mode} ${point} #${after}: nothing had to be quarantined`)
  t.same(readdirSync(join(dir, 'store', 'networks')).filter((n) => n.endsWith('.tmp')), [], `${mode} ${point} #${after}: no temporary file left after a load`)
  return records
}

t.test('crash points inside put and delete', { skip: built ? false : 'build first (npm run build): the child uses dist/' }, async (t) => {
  let runs = 0
  for (const point of WRITE_CRASH_POINTS) {
    const mode = point.startsWith('delete') ? 'delete' : 'put'
    for (const after of [1, 3, COUNT]) {
      const records = await crashWriter(t, point, after, mode)
      runs++
      // Records before the killed one are done, the killed one is old or new, the rest are untouched.
      for (let i = 0; i < COUNT; i++) {
        const r = records.get(`r${i}`)
        const expectDone = i < after - 1
        const expectUntouched = i > after - 1
        if (mode === 'put') {
          t.ok(r && (r.v === 'old' || r.v === 'new') && r.i === i, `${point} #${after}: r${i} is whole (${r?.v})`)
          if (expectDone) t.equal(r?.v, 'new', `${point} #${after}: r${i} was written before the crash`)
          if (expectUntouched) t.equal(r?.v, 'old', `${point} #${after}: r${i} was not reached`)
        } else {
          if (expectDone) t.notOk(r, `${point} #${after}: r${i} was deleted before the crash`)
          if (expectUntouched) t.equal(r?.v, 'old', `${point} #${after}: r${i} was not reached`)
          if (!expectDone && !expectUntouched) t.ok(!r || r.v === 'old', `${point} #${after}: r${i} is gone or whole`)
        }
      }
    }
  }
  t.comment(`${runs} writer processes killed at ${WRITE_CRASH_POINTS.length} points`)
})

t.test('a transaction killed part-way: the writes before the kill are done, in order, each whole', { skip: built ? false : 'build first' }, async (t) => {
  for (const point of ['put:mid-write', 'put:before-rename', 'put:after-rename'] as const) {
    for (const after of [3, COUNT]) {
      const records = await crashWriter(t, point, after, 'txn')
      // Every temporary file is written before the first rename: mid-write kills before any rename.
      const renamed = point === 'put:mid-write' ? 0 : point === 'put:before-rename' ? after - 1 : after
      const got = Array.from({ length: COUNT }, (_, i) => records.get(`r${i}`)?.v).join(',')
      const want = Array.from({ length: COUNT }, (_, i) => (i < renamed ? 'new' : 'old')).join(',')
      t.equal(got, want, `txn ${point} #${after}: the first ${renamed} of ${COUNT} written`)
    }
  }
})

t.test('a create (link) killed part-way: each new record is absent or whole', { skip: built ? false : 'build first' }, async (t) => {
  for (const point of ['put:mid-write', 'put:before-rename', 'put:after-rename', 'put:after-sync'] as const) {
    for (const after of [3]) {
      const records = await crashWriter(t, point, after, 'create')
      const created = [...records.keys()].filter((k) => k.startsWith('c')).sort()
      const linked = point === 'put:mid-write' || point === 'put:before-rename' ? after - 1 : after
      t.same(created, Array.from({ length: linked }, (_, i) => `c${i}`), `create ${point} #${after}: c0..c${linked - 1} exist`)
      t.ok(created.every((k) => records.get(k)?.v === 'new'), `create ${point} #${after}: each whole`)
      t.equal([...records.keys()].filter((k) => k.startsWith('r')).length, COUNT, 'the seeded records are untouched')
    }
  }
})

t.test('an unreadable record is quarantined, reported and the rest loads', async (t) => {
  const dir = t.testdir({ store: { networks: { 'bad.json': '{"v":', 'good.json': '{"v":"ok"}' }, meta: { 'schema.json': '{"version":2}' } } })
  const lines: string[] = []
  const log = pino({ level: 'error' }, { write: (l: string) => { lines.push(l) } })
  const store = await FileStore.open(dir, log)
  t.same((await store.list('networks')).map((r) => r.id), ['good'])
  t.ok(readdirSync(join(dir, 'store', 'quarantine')).some((n) => n.endsWith('bad.json')), 'moved to store/quarantine')
  t.match(lines.join(''), /could not be read and was moved aside/, 'logged as an error')
  t.notOk(existsSync(join(dir, 'store', 'networks', 'bad.json')), 'no longer in the collection')
})

t.test('an unknown schema version stops tsnet with exit code 78, not a crash loop', async (t) => {
  const dir = t.testdir({ store: { meta: { 'schema.json': '{"version":99}' } } })
  await t.rejects(FileStore.open(dir), { name: 'TsnetError', context: { exitCode: 78 }, message: /schema version 99/ })
})

t.test('a schema record of the wrong shape stops tsnet with exit code 78, not a TypeError and a crash loop', async (t) => {
  for (const text of ['null', '42', '[]', '"1"']) {
    const dir = t.testdir({ store: { meta: { 'schema.json': text } } })
    await t.rejects(FileStore.open(dir, pino({ level: 'silent' })), { name: 'TsnetError', context: { exitCode: 78 }, message: /schema version undefined, but this tsnet reads version 2/ }, `schema.json ${text}`)
  }
})
