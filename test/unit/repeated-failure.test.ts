// A failure that repeats once a second (etcd away) logs one warn per minute, not sixty.
import t from 'tap'
import type { Logger } from 'pino'
import { RepeatedFailure } from '../../src/util/repeated-failure.js'

function recorder() {
  const lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = []
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => void lines.push({ level, msg, fields })
  return { lines, log: { warn: at('warn'), debug: at('debug'), info: at('info') } as unknown as Logger }
}

t.test('the first failure warns, repeats within the minute go to debug, then one warn per minute with the count', async (t) => {
  const { lines, log } = recorder()
  let now = 1_000_000
  const f = new RepeatedFailure(log, 'registering failed; trying again', 60_000, () => now)
  for (let i = 0; i < 125; i++, now += 1000) f.failed('connect ECONNREFUSED')
  const warns = lines.filter((l) => l.level === 'warn')
  t.equal(warns.length, 3, '125 failures a second apart: warns at 0, 60 and 120 s')
  t.equal(warns[0]?.msg, 'registering failed; trying again')
  t.match(warns[1], { msg: /still failing/, fields: { attempts: 61, failingForMs: 60_000, err: 'connect ECONNREFUSED' } })
  t.equal(lines.filter((l) => l.level === 'debug').length, 122, 'the rest at debug')
  f.succeeded('registering works again')
  t.match(lines.at(-1), { level: 'info', msg: 'registering works again', fields: { attempts: 125 } })
  f.succeeded('registering works again')
  t.equal(lines.filter((l) => l.level === 'info').length, 1, 'success without a failure before says nothing')
  f.failed('timeout')
  t.equal(lines.at(-1)?.level, 'warn', 'a new outage warns at once again')
})
