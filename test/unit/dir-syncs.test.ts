// store/dir-syncs: concurrent writers share directory fsyncs, and each still resolves only after a
// sync that began after it asked (a sync already running may predate its write); the real fsync
// keeps each directory's handle open between syncs.
import t from 'tap'
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DirSyncs } from '../../src/store/dir-syncs.js'

/** A fake fsync that records when each sync began and ends only when the test says so. */
function controlledSyncs() {
  const started: Array<{ dir: string; seq: number; finish: (err?: Error) => void }> = []
  let seq = 0
  const syncOnce = (dir: string) => new Promise<void>((resolve, reject) => {
    started.push({ dir, seq: ++seq, finish: (err) => (err ? reject(err) : resolve()) })
  })
  return { started, syncOnce }
}
const tick = () => new Promise((r) => setImmediate(r))

t.test('writers asking while a sync runs share the next one, and none resolves on an older sync', async (t) => {
  const { started, syncOnce } = controlledSyncs()
  const syncs = new DirSyncs(syncOnce)
  const done: string[] = []
  const a = syncs.sync('/d').then(() => done.push('a'))
  t.equal(started.length, 1, 'the first writer starts a sync at once')
  const b = syncs.sync('/d').then(() => done.push('b'))
  const c = syncs.sync('/d').then(() => done.push('c'))
  await tick()
  t.equal(started.length, 1, 'writers asking meanwhile start nothing yet')
  started[0]?.finish()
  await tick()
  await tick()
  t.same(done, ['a'], 'the running sync answers only the writer that asked before it began')
  t.equal(started.length, 2, 'one more sync, for b and c together')
  const d = syncs.sync('/d').then(() => done.push('d'))
  started[1]?.finish()
  await Promise.all([b, c])
  t.same(done.slice(1).sort(), ['b', 'c'])
  await tick()
  t.equal(started.length, 3, 'd asked while the second ran: a third sync')
  started[2]?.finish()
  await d
  t.same(done, ['a', 'b', 'c', 'd'])
  t.equal(started.length, 3, 'three syncs for four writers')
  await a
})

t.test('directories are synced independently; a failed sync fails its writers and the next one still runs', async (t) => {
  const { started, syncOnce } = controlledSyncs()
  const syncs = new DirSyncs(syncOnce)
  const x = syncs.sync('/x')
  const y = syncs.sync('/y')
  t.same(started.map((s) => s.dir), ['/x', '/y'], 'another directory does not wait')
  const x2 = syncs.sync('/x')
  started[0]?.finish(new Error('EIO'))
  await t.rejects(x, /EIO/, 'the writer whose sync failed hears of it')
  await tick()
  t.equal(started.length, 3, 'the waiting writer gets a sync of its own')
  started[2]?.finish()
  await t.resolves(x2)
  started[1]?.finish()
  await t.resolves(y)
  const again = syncs.sync('/x')
  t.equal(started.length, 4, 'with nothing running, a new writer starts at once')
  started[3]?.finish()
  await again
})

/** The file descriptors of this process that refer to `dir`. */
function fdsOn(dir: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === dir
    } catch {
      return false // closed while listed
    }
  }).length
}

t.test('the real fsync keeps one handle per directory, opens the new one after forget, and closes at close', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'dir-syncs-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const dir = join(root, 'leases')
  mkdirSync(dir)
  const syncs = new DirSyncs()
  t.equal(fdsOn(dir), 0, 'no handle before the first sync (the control)')
  await syncs.sync(dir)
  await syncs.sync(dir)
  await Promise.all([syncs.sync(dir), syncs.sync(dir)])
  t.equal(fdsOn(dir), 1, 'one handle after several syncs')
  // Someone removed the directory and the store made it again: the old handle is the wrong inode.
  renameSync(dir, join(root, 'old'))
  mkdirSync(dir)
  syncs.forget(dir)
  await syncs.sync(dir)
  t.equal(fdsOn(dir), 1, 'a handle on the new directory')
  await new Promise((r) => setImmediate(r))
  t.equal(fdsOn(join(root, 'old')), 0, 'the forgotten one is closed')
  await syncs.close()
  t.equal(fdsOn(dir), 0, 'close() closes it')
  await syncs.sync(dir)
  t.equal(fdsOn(dir), 0, 'a sync after close still syncs, and keeps nothing open')
  rmSync(dir, { recursive: true })
  await t.rejects(new DirSyncs().sync(dir), { code: 'ENOENT' }, 'a directory that is gone is an error, not a silent success')
})
