// FileStore across processes (spawned node scripts over dist/, one state directory): creates are
// decided by link(2), so racing processes never both win a key, and a transaction of several
// creates is all or nothing even when another process takes one of its keys meanwhile; another
// process's write shows as a new revision; a non-durable write survives a kill -9.
import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { FileStore } from '../../src/store/file-store.js'
import { raceChildren } from './fixtures/children.js'
import { tempDir } from './fixtures/util.js'

// Child processes: a limit that catches a hang, not a slow machine.
t.setTimeout(240_000)

const here = dirname(fileURLToPath(import.meta.url))
const racer = join(here, 'fixtures', 'store-racer.mjs')
const built = existsSync(join(here, '..', '..', 'dist', 'store', 'file-store.js'))
const skip = built ? false : 'build first (npm run build): the children use dist/'

const race = (t: Test, dir: string, modes: string[][]) => raceChildren(t, racer, modes.map((m) => [dir, ...m]))

t.test('four processes racing 50 creates each on the same keys: every key won exactly once', { skip }, async (t) => {
  const dir = await tempDir(t)
  await FileStore.open(dir)
  const wins = await race(t, dir, Array.from({ length: 4 }, () => ['create', '50'])) as number[][]
  const all = wins.flat().sort((a, b) => a - b)
  t.same(all, Array.from({ length: 50 }, (_, i) => i), 'the winners together hold k0..k49, none twice')
  t.comment(`keys won per process: ${wins.map((w) => w.length).join(', ')} (how they interleave depends on the machine)`)
  const store = await FileStore.open(dir)
  const stored = await store.list<{ by: number }>('race/')
  t.equal(stored.length, 50, '50 records on disk')
  t.same(new Set(stored.map((e) => e.value.by)).size, wins.filter((w) => w.length > 0).length, 'each written by the process that won it')
})

t.test('two processes creating the same pairs in opposite orders: each pair whole from one writer, or absent', { skip }, async (t) => {
  const dir = await tempDir(t)
  await FileStore.open(dir)
  const [ab, ba] = await race(t, dir, [['pairs-ab', '100'], ['pairs-ba', '100']]) as [number[], number[]]
  const store = await FileStore.open(dir)
  const stored = new Map((await store.list<{ by: number }>('pair/')).map((e) => [e.id, e.value.by]))
  let whole = 0
  let mixed = 0
  let half = 0
  for (let i = 0; i < 100; i++) {
    const a = stored.get(`a${i}`)
    const b = stored.get(`b${i}`)
    if (a !== undefined && b !== undefined) (a === b ? whole++ : mixed++)
    else if (a !== undefined || b !== undefined) half++
  }
  t.comment(`100 contested pairs: ${whole} whole, ${100 - whole - mixed - half} absent (both writers backed off); ${ab.length} + ${ba.length} txns reported won`)
  t.equal(mixed, 0, 'no pair holds one key from each writer')
  t.equal(half, 0, 'no pair is half written')
  t.equal(whole, ab.length + ba.length, 'every pair present is one a txn reported as won, and no pair was won twice')
  t.equal(new Set([...ab, ...ba]).size, ab.length + ba.length, 'no pair reported won by both')
})

t.test("another process's write reads as a new revision, and fails a condition on the old one", { skip }, async (t) => {
  const dir = await tempDir(t)
  const store = await FileStore.open(dir)
  const rev = await store.put('race', 'x', 'mine')
  t.equal((await store.get('race/x'))?.rev, rev, 'our own write, our revision')
  const child = spawnSync(process.execPath, [racer, dir, 'put', 'x', 'theirs'], { encoding: 'utf8' })
  t.match(child.stdout, /done/, 'the other process wrote')
  const after = await store.get('race/x')
  t.equal(after?.value, 'theirs', 'we read their value')
  t.ok(after && after.rev > rev, `with a new revision (${after?.rev} > ${rev})`)
  t.equal((await store.txn([{ key: 'race/x', rev }], [{ put: 'race/x', value: 'mine again' }])).ok, false, 'a condition on the revision we wrote fails')
  t.equal((await store.get('race/x'))?.value, 'theirs', 'and their value stays')
})

t.test('non-durable writes survive a kill -9 of the writer', { skip }, async (t) => {
  const dir = await tempDir(t)
  await FileStore.open(dir)
  const child = spawnSync(process.execPath, [racer, dir, 'loose', '20'], { encoding: 'utf8' })
  t.equal(child.signal, 'SIGKILL', 'the writer killed itself right after its last non-durable put')
  const store = await FileStore.open(dir)
  const loose = await store.list<{ i: number }>('loose/')
  t.same(loose.map((e) => e.value.i).sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i), 'all 20 records are there, whole')
})
