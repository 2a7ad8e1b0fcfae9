// store/state-lock: one tsnet per state directory. The lock is a kernel lock on an open file: a
// second taker is refused at once with a sentence naming the holder, and the lock goes when the
// holder dies (kill -9 too), not when a command the holder started lives on.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, symlink, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TsnetError } from '../../src/errors.js'
import { LOCK_FILE, StateLock, stateDirInUse, type LockHolder } from '../../src/store/state-lock.js'
import { tempDir } from './fixtures/util.js'

const here = dirname(fileURLToPath(import.meta.url))
const built = existsSync(join(here, '..', '..', 'dist', 'store', 'state-lock.js'))
const holder = (pid: number): LockHolder => ({ pid, pidNamespace: 'pid:[1]', startedAt: '2026-11-22T10:00:00.000Z', socket: '/run/docker/plugins/tsnet.sock', mode: 'legacy', version: '0.1.0' })

/** The error `fn` throws (the test fails when it throws none). */
function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  return undefined
}

t.test('the first taker gets the lock and says who it is; the directory is created', async (t) => {
  const dir = join(await tempDir(t), 'state', 'nested')
  const lock = StateLock.acquire(dir, holder(4242))
  t.teardown(() => lock.release())
  t.same(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8')), holder(4242), 'the lock file names the holder')
})

t.test('a second taker is refused at once, with exit code 78 and a sentence naming the holder', async (t) => {
  const dir = await tempDir(t)
  const first = StateLock.acquire(dir, holder(4242))
  t.teardown(() => first.release())
  const t0 = performance.now()
  const err = thrown(() => StateLock.acquire(dir, holder(777)))
  const ms = performance.now() - t0
  t.ok(err instanceof TsnetError, 'a TsnetError')
  const e = err as TsnetError
  t.equal(e.context.exitCode, 78, 'exit code 78 (EX_CONFIG: systemd does not restart it)')
  t.match(e.message, `the state directory ${dir} is in use by another tsnet serve`)
  t.match(e.message, 'pid 4242', "the holder's pid")
  t.match(e.message, 'started 2026-11-22T10:00:00.000Z', 'when it started')
  t.match(e.message, 'serving /run/docker/plugins/tsnet.sock', 'its socket')
  t.match(e.message, 'legacy', 'legacy or managed')
  t.notMatch(e.message, 'pid 777', 'not the refused one')
  t.ok(ms < 200, `refused without waiting (${ms.toFixed(1)} ms)`)
  t.same(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8')), holder(4242), "the refused taker did not overwrite the holder's note")
  first.release()
  const again = StateLock.acquire(dir, holder(777))
  again.release()
  t.pass('once released, the next taker gets it (positive control)')
})

t.test('the sentence says when the holder is in another PID namespace, and copes with a holder that has not written yet', async (t) => {
  const other = stateDirInUse('/var/lib/tsnet', { ...holder(1), mode: 'managed', pidNamespace: 'pid:[4026532999]' }, 'pid:[4026531836]')
  t.match(other.message, 'pid 1 in another PID namespace, pid:[4026532999],')
  t.match(other.message, 'the managed plugin')
  const same = stateDirInUse('/var/lib/tsnet', holder(4242), 'pid:[1]')
  t.notMatch(same.message, 'another PID namespace', 'no remark in the same namespace')
  const silent = stateDirInUse('/var/lib/tsnet', undefined)
  t.match(silent.message, /in use by another tsnet serve \(it has not said who it is yet\)/)
  t.equal(silent.context.exitCode, 78)
  const dir = await tempDir(t)
  const first = StateLock.acquire(dir, holder(4242))
  t.teardown(() => first.release())
  await writeFile(join(dir, LOCK_FILE), 'null') // torn or foreign content
  t.match(String((thrown(() => StateLock.acquire(dir, holder(1))) as Error).message), 'it has not said who it is yet', 'a note that is not an object is not trusted')
})

t.test('a lock file that is a symlink is refused, not followed', async (t) => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'elsewhere'), 'x')
  await symlink(join(dir, 'elsewhere'), join(dir, LOCK_FILE))
  const err = thrown(() => StateLock.acquire(dir, holder(1)))
  t.match(err, { name: 'TsnetError', message: /cannot open the lock file/, context: { exitCode: 78 } })
  t.equal(await readFile(join(dir, 'elsewhere'), 'utf8'), 'x', 'the target is untouched')
})

/** Starts the holder fixture; resolves with the child and the pid of the command it started. */
async function startHolder(t: Test, dir: string, command: string[] = []): Promise<{ child: ChildProcess; commandPid?: number }> {
  const child = spawn(process.execPath, [join(here, 'fixtures', 'lock-holder.mjs'), dir, ...command], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const line = await new Promise<string>((resolve) => {
    let out = ''
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString()
      if (out.includes('\n')) resolve(out.trim())
    })
    child.once('exit', () => resolve(out.trim()))
  })
  t.match(line, /^locked/, `the holder took the lock (${line})`)
  const commandPid = Number(line.split(' ')[1])
  return { child, ...(commandPid ? { commandPid } : {}) }
}

const exited = (child: ChildProcess) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())))

t.test('kill -9 of the holder releases the lock', { skip: built ? false : 'build first (npm run build): the holder uses dist/' }, async (t) => {
  const dir = await tempDir(t)
  const { child } = await startHolder(t, dir)
  const err = thrown(() => StateLock.acquire(dir, holder(process.pid)))
  t.match(err, { context: { exitCode: 78 }, message: new RegExp(`pid ${child.pid}, .*serving /run/holder\\.sock`) }, 'refused while the holder lives, naming its pid')
  child.kill('SIGKILL')
  await exited(child)
  const lock = StateLock.acquire(dir, holder(process.pid))
  lock.release()
  t.pass('taken after the kill')
})

t.test('a command the holder started does not keep the lock after the holder dies', { skip: built ? false : 'build first (npm run build): the holder uses dist/' }, async (t) => {
  const dir = await tempDir(t)
  const { child, commandPid } = await startHolder(t, dir, ['sleep', '30'])
  t.ok(commandPid, 'the holder started a long-lived command')
  t.teardown(() => { if (commandPid) process.kill(commandPid, 'SIGKILL') })
  child.kill('SIGKILL')
  await exited(child)
  t.doesNotThrow(() => process.kill(commandPid as number, 0), 'the command still runs')
  const lock = StateLock.acquire(dir, holder(process.pid))
  lock.release()
  t.pass('the lock went with the holder: the command did not inherit it')
})

t.test('a state directory that cannot be created is an exit-78 error naming the path', async (t) => {
  const base = await tempDir(t)
  await writeFile(join(base, 'file'), 'x')
  const err = thrown(() => StateLock.acquire(join(base, 'file', 'state'), holder(1)))
  t.match(err, { name: 'TsnetError', context: { exitCode: 78 }, message: new RegExp(`cannot open the lock file ${join(base, 'file', 'state')}`) })
})
