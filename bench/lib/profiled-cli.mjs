// tsnet's CLI under the V8 CPU profiler, for bench/profile.ts. Each SIGUSR2 ends the running
// profile (written to $TSNET_PROFILE_DIR/<phase>.cpuprofile, the phase named in the file `phase`
// there) and starts the next; a `heap` phase writes memory figures and a heap snapshot instead.
// The process starts profiling at once, so its first profile covers the start and boot.
import { Session } from 'node:inspector'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { writeHeapSnapshot } from 'node:v8'

const dir = process.env.TSNET_PROFILE_DIR
if (!dir) throw new Error('TSNET_PROFILE_DIR is not set')
const session = new Session()
session.connect()
session.post('Profiler.enable')
session.post('Profiler.setSamplingInterval', { interval: 250 })
session.post('Profiler.start')

const phase = () => readFileSync(join(dir, 'phase'), 'utf8').trim()
const stop = (name) => session.post('Profiler.stop', (err, r) => {
  if (!err) writeFileSync(join(dir, `${name}.cpuprofile`), JSON.stringify(r.profile))
  writeFileSync(join(dir, `${name}.done`), '')
  session.post('Profiler.start')
})
process.on('SIGUSR2', () => {
  const name = phase()
  if (name !== 'heap') return stop(name)
  writeFileSync(join(dir, 'memory.json'), JSON.stringify(process.memoryUsage()))
  writeHeapSnapshot(join(dir, 'heap.heapsnapshot'))
  writeFileSync(join(dir, 'heap.done'), '')
})
await import(new URL('../../dist/cli.js', import.meta.url).href)
