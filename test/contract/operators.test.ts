// The operator commands against a daemon on its socket: tsnet's app built as serve builds it (over
// a FakeHost), listening on a unix socket, and the real executable (dist/cli.js) asking it.
// /Tsnet.Status answers even while the boot reconcile holds every other call; status shows the
// daemon's health; doctor's kernel comparison is the daemon's dry run, and --fix its reconcile.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { loadScenario } from '../fixtures/wire/loader.js'
import { Driver } from './fixtures/driver.js'

const CLI = join(import.meta.dirname, '../../dist/cli.js')
const NET = '2c78a1a9b4e08472fe66fb7e6f3ea3fc48456b4b104de5686b6de32bf0400a2b'

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '' } })
    let stdout = ''
    let stderr = ''
    c.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
    c.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
    c.once('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

async function listening(t: Test) {
  const d = await Driver.start(t)
  const socket = join(d.dir, 'tsnet.sock')
  await d.app.listen({ path: socket })
  for (const c of loadScenario('legacy/10-run-publish-p8080').slice(0, 4)) t.equal((await d.send(c.method, c.body)).status, 200, c.method)
  return { d, socket, flags: ['--state-dir', d.dir, '--socket', socket] }
}

t.test('status asks the daemon for its health', { skip: existsSync(CLI) ? false : 'build first' }, async (t) => {
  const { d, flags } = await listening(t)
  const r = await cli(['status', '--json', ...flags])
  t.equal(r.code, 0, r.stderr)
  const s = JSON.parse(r.stdout) as Record<string, any>
  t.match(s.daemon, { running: true, status: { pid: process.pid, reconcile: { kind: 'boot' }, gc: { state: 'off', reason: 'no Docker API (--docker-host is empty)' }, docker: { state: 'off' } } })
  t.match(s.endpoints[0], { published: [{ hostPort: 8080, proto: 'tcp', containerPort: 80 }] })
  const text = await cli(['status', ...flags])
  t.match(text.stdout, /^daemon: running, pid \d+, version /)
  t.match(text.stdout, /  reconcile  last .*, boot, \d+ ms: /)
  t.match(text.stdout, '  gc         off: no Docker API (--docker-host is empty)')
  t.match(text.stdout, `  ${NET.slice(0, 12)}  bridge tsbr-2c78a1a9b4  mtu 1500  10.77.0.0/24 gw 10.77.0.1\n    endpoint 9c954d84adce  10.77.0.2/24`)
  t.match(text.stdout, 'ports 0.0.0.0:8080->10.77.0.2:80/tcp')
  const policy = await cli(['policy', 'show', ...flags])
  t.equal(policy.code, 0, `policy still talks to the daemon: ${policy.stderr}`)
  t.match(policy.stdout, `${NET.slice(0, 12)}: nothing from other networks (no policy)`)
  const collect = await d.raw('Tsnet.Collect', '{"DryRun":true}')
  t.match(collect.json, { Err: /garbage collection is off in this tsnet \(no Docker API/ }, 'no garbage collection to ask for')
})

t.test('doctor: the daemon dry-runs its reconcile; --fix runs it and says what it did', { skip: existsSync(CLI) ? false : 'build first' }, async (t) => {
  const { d, flags } = await listening(t)
  const kernelOf = (json: any) => (json.findings as Array<{ area: string; problem: string }>).filter((f) => f.area === 'kernel' || f.area === 'firewall')
  let r = await cli(['doctor', '--json', ...flags])
  let json = JSON.parse(r.stdout)
  t.match(json.compared, [/the kernel with the store \(the daemon's reconcile, dry run, \d+ ms\)/], 'compared through the daemon')
  t.same(kernelOf(json), [], 'nothing drifted after the requests')

  d.host.objects.delete('link tsbr-2c78a1a9b4')
  d.host.objects.set('chains', { kind: 'chains', intact: false })
  r = await cli(['doctor', '--json', ...flags])
  json = JSON.parse(r.stdout)
  t.equal(r.code, 1, 'drift: exit 1')
  const problems = kernelOf(json).map((f) => f.problem)
  t.ok(problems.some((p) => p.startsWith('the bridge tsbr-2c78a1a9b4 of network 2c78a1a9b4e0 is missing')), problems.join('\n'))
  t.ok(problems.some((p) => p.startsWith("tsnet's firewall chains (TSNET-*)")), 'and the chains')
  t.notOk(d.host.links.has('tsbr-2c78a1a9b4'), 'doctor alone changed nothing')

  r = await cli(['doctor', '--fix', ...flags])
  t.match(r.stdout, /fixing:\n  reconcile \(the daemon's\): changed \d+: .*create link tsbr-2c78a1a9b4/, `--fix says what it did:\n${r.stdout}`)
  t.match(r.stdout, /after the fix:\n  compared: /)
  t.ok(d.host.links.has('tsbr-2c78a1a9b4'), 'the bridge is back')
  t.equal(d.services.reconciler.last?.kind, 'request', 'the daemon recorded the pass as asked for')
  r = await cli(['doctor', '--json', ...flags])
  t.same(kernelOf(JSON.parse(r.stdout)), [], 'and nothing is left to find')
})

t.test('/Tsnet.Status answers during the boot reconcile; the other calls wait for it', async (t) => {
  const d = await Driver.start(t)
  let release = () => {}
  const held = new Promise<void>((r) => { release = r })
  const { buildApp } = await import('../../src/server/app.js')
  const { pino } = await import('pino')
  const app = buildApp({ logger: pino({ level: 'silent' }), services: d.services, ready: held })
  t.teardown(() => app.close())
  const status = await app.inject({ method: 'POST', url: '/Tsnet.Status', payload: '' })
  t.equal(status.statusCode, 200)
  t.match(JSON.parse(status.body), { Status: { pid: process.pid, stateDir: d.dir } })
  let answered = false
  const caps = app.inject({ method: 'POST', url: '/NetworkDriver.GetCapabilities', payload: '' }).then((r) => { answered = true; return r })
  await new Promise((r) => setTimeout(r, 100))
  t.notOk(answered, 'a driver call waits for the boot reconcile')
  release()
  t.equal((await caps).statusCode, 200)
})
