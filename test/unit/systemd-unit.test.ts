// The legacy plugin's systemd unit, checked statically (this machine's PID 1 is not systemd):
// it must start tsnet before dockerd, and not restart-loop on a bad setting or store (exit 78).
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const unitPath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'packaging', 'tsnet.service')
const text = readFileSync(unitPath, 'utf8')

/** `Key=value` lines of one [Section], comments dropped. */
function section(name: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  let current = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const header = /^\[(.+)\]$/.exec(line)
    if (header) { current = header[1] ?? ''; continue }
    if (current !== name) continue
    const eq = line.indexOf('=')
    out.set(line.slice(0, eq), [...(out.get(line.slice(0, eq)) ?? []), line.slice(eq + 1)])
  }
  return out
}

t.test('ordering: tsnet runs before docker.service, and docker needs it', async (t) => {
  const unit = section('Unit')
  t.match(unit.get('Before')?.join(' '), /\bdocker\.service\b/)
  t.match(section('Install').get('RequiredBy')?.join(' '), /\bdocker\.service\b/)
  t.match(section('Install').get('WantedBy')?.join(' '), /\bmulti-user\.target\b/)
})

t.test('service: serves, restarts on crashes, but not on exit 78', async (t) => {
  const svc = section('Service')
  t.match(svc.get('ExecStart')?.[0], /dist\/cli\.js serve$/)
  t.equal(svc.get('Restart')?.[0], 'always')
  t.match(svc.get('RestartPreventExitStatus')?.join(' '), /\b78\b/)
  t.equal(svc.get('KillSignal')?.[0], 'SIGTERM', 'SIGTERM closes the socket cleanly')
})

const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' })
t.test('systemd-analyze verify finds nothing wrong', { skip: analyze.status === 0 ? false : 'systemd-analyze is not installed' }, async (t) => {
  const r = spawnSync('systemd-analyze', ['verify', unitPath], { encoding: 'utf8' })
  // It may warn that /opt/tsnet does not exist on this machine; syntax errors and unknown keys are what matter.
  const problems = (r.stderr + r.stdout).split('\n').filter((l) => l.trim() && !/No such file|is not executable|Command .* is not executable/.test(l))
  t.same(problems, [], `systemd-analyze verify: ${r.stderr.trim() || 'clean'}`)
})
