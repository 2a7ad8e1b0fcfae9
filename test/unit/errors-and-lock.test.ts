// errors.ts (kinds and context prefixes) and util/keyed-lock (per-key serialisation).
import t from 'tap'
import { TsnetError, conflict, errorMessage, exhausted, invalid, notFound, withContext } from '../../src/errors.js'
import { KeyedLock } from '../../src/util/keyed-lock.js'

t.test('error helpers set the kind and context', async (t) => {
  t.match(invalid('a', { x: 1 }), { name: 'TsnetError', kind: 'invalid', message: 'a', context: { x: 1 } })
  t.match(conflict('b'), { kind: 'conflict', message: 'b', context: {} })
  t.match(notFound('c'), { kind: 'notfound' })
  t.match(exhausted('d'), { kind: 'exhausted' })
  t.ok(invalid('a') instanceof Error)
})

t.test('withContext prefixes the message and keeps the kind; foreign errors become host errors', async (t) => {
  const inner = conflict('already there', { id: 'x' })
  const wrapped = withContext(inner, 'creating network abc')
  t.match(wrapped, { name: 'TsnetError', kind: 'conflict', message: 'creating network abc: already there', context: { id: 'x' } })
  t.equal(wrapped.cause, inner)
  const foreign = withContext(new Error('EPERM'), 'adding address')
  t.match(foreign, { kind: 'host', message: 'adding address: EPERM' })
  t.match(withContext('plain string', 'x'), { kind: 'host', message: 'x: plain string' })
  t.equal(errorMessage(new TsnetError('host', 'm')), 'm')
  t.equal(errorMessage(42), '42')
})

t.test('KeyedLock serialises work per key and lets other keys run', async (t) => {
  const lock = new KeyedLock()
  const order: string[] = []
  const slow = (tag: string, ms: number) => async () => {
    order.push(`${tag}:start`)
    await new Promise((r) => setTimeout(r, ms))
    order.push(`${tag}:end`)
    return tag
  }
  const results = await Promise.all([lock.run('k', slow('a', 30)), lock.run('k', slow('b', 1)), lock.run('other', slow('c', 1))])
  t.same(results, ['a', 'b', 'c'])
  t.ok(order.indexOf('a:end') < order.indexOf('b:start'), 'b waits for a (same key)')
  t.ok(order.indexOf('c:end') < order.indexOf('a:end'), 'c does not wait for a (other key)')
})

t.test('KeyedLock: a failure does not block the queue', async (t) => {
  const lock = new KeyedLock()
  const failing = lock.run('k', async () => { throw new Error('boom') })
  const next = lock.run('k', async () => 'ran')
  await t.rejects(failing, { message: 'boom' })
  t.equal(await next, 'ran')
  t.equal(await lock.run('k', async () => 'again'), 'again')
})

t.test('KeyedLock.idle waits for all work queued by then, failed work too, and for nothing when there is none', async (t) => {
  const lock = new KeyedLock()
  await lock.idle()
  let done = 0
  const later = (ms: number, fail = false) => async () => {
    await new Promise((r) => setTimeout(r, ms))
    done++
    if (fail) throw new Error('boom')
  }
  const a = lock.run('a', later(20))
  const b = lock.run('b', later(10, true)).catch(() => undefined)
  const a2 = lock.run('a', later(5))
  await lock.idle()
  t.equal(done, 3, 'both keys, the queued second run of a, and the failed one')
  await Promise.all([a, b, a2])
})
