// Finding 6 of issue 10: one `tsnet serve` per state directory, with real processes. The first
// runs in a namespace this test creates; the second reaches the same directory through a bind
// mount from another mount and PID namespace (legacy plus managed plugin during a migration) and
// must exit 78 naming the first, having changed nothing; the first keeps serving, and `tsnet
// status` keeps working beside it. After kill -9 of the first, a new instance starts (positive
// control) and loads the store, quarantining the records of the wrong shape planted meanwhile.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { bridgeNameFor } from '../../src/core/names.js'
import { createNetns, link, savedRules, type Netns } from './lib/netns.js'

const here = dirname(fileURLToPath(import.meta.url))
const CLI = join(here, '..', '..', 'dist', 'cli.js')
const OTHER_NAMESPACES = join(here, 'fixtures', 'in-other-namespaces.mjs')
const NET = '5a'.repeat(32)

interface Daemon {
  pid: number
  socket: string
  output: () => string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  running: () => boolean
}

/** POST /method on a unix socket; resolves with the status and body, or undefined when nothing answers. */
function post(socket: string, method: string, body: unknown = {}): Promise<{ status: number; body: any } | undefined> {
  return new Promise((resolve) => {
    const req = request({ socketPath: socket, path: `/${method}`, method: 'POST', timeout: 5_000 }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => { text += c.toString() })
      res.on('end', () => {
        let parsed: unknown
        try { parsed = JSON.parse(text) } catch { parsed = text }
        resolve({ status: res.statusCode ?? 0, body: parsed })
      })
    })
    req.on('error', () => resolve(undefined))
    req.on('timeout', () => { req.destroy(); resolve(undefined) })
    req.end(JSON.stringify(body))
  })
}

async function setup(t: Test) {
  if (process.getuid?.() !== 0) return undefined
  const ns = await createNetns(t)
  const base = await mkdtemp(join(tmpdir(), 'tsnet-lock-'))
  const children: Daemon[] = []
  const stateDir = join(base, 'state')
  const boundDir = join(base, 'state-through-bind-mount')
  await mkdir(boundDir)
  t.teardown(async () => {
    for (const d of children) if (d.running()) { process.kill(d.pid, 'SIGKILL'); await d.exited }
    await rm(base, { recursive: true, force: true })
  })
  const env = { ...process.env, DOCKER_HOST: `unix://${join(base, 'no-docker.sock')}`, TSNET_LOG_LEVEL: 'info' }
  const serveArgs = (socket: string, dir: string) => [process.execPath, CLI, 'serve', '--socket', socket, '--state-dir', dir, '--gc-interval', '0']
  /** `how`: in the test's namespace only (pid = tsnet's), or also in a new mount and PID namespace, through the bind mount. */
  const start = (name: string, how: 'plain' | 'other-namespaces'): Daemon => {
    const socket = join(base, `${name}.sock`)
    const argv = how === 'plain'
      ? ['--net=' + `/run/netns/${ns.name}`, '--', ...serveArgs(socket, stateDir)]
      : ['--net=' + `/run/netns/${ns.name}`, '--', 'unshare', '--mount', '--pid', '--fork', '--kill-child', '--',
          process.execPath, OTHER_NAMESPACES, stateDir, boundDir, ...serveArgs(socket, boundDir)]
    const child = spawn('nsenter', argv, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (c: Buffer) => { out += c.toString() })
    child.stderr.on('data', (c: Buffer) => { out += c.toString() })
    let done = false
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => { done = true; resolve({ code, signal }) }))
    const d: Daemon = { pid: child.pid as number, socket, output: () => out, exited, running: () => !done }
    children.push(d)
    return d
  }
  return { ns, base, stateDir, start }
}

async function answers(d: Daemon, ms = 20_000): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until && d.running()) {
    if ((await post(d.socket, 'Plugin.Activate'))?.status === 200) return true
    await new Promise((r) => setTimeout(r, 100))
  }
  return false
}

async function exitWithin(d: Daemon, ms: number) {
  let timer: NodeJS.Timeout | undefined
  const r = await Promise.race([d.exited, new Promise<undefined>((res) => { timer = setTimeout(() => res(undefined), ms) })])
  clearTimeout(timer)
  return r
}

const storeListing = (stateDir: string) => ['networks', 'endpoints', 'pools', 'leases', 'meta']
  .flatMap((c) => readdirSync(join(stateDir, 'store', c)).map((f) => `${c}/${f}:${readFileSync(join(stateDir, 'store', c, f), 'utf8')}`)).sort()

async function tsnetChains(ns: Netns): Promise<string[]> {
  return (await savedRules(ns, 'iptables')).split('\n').filter((l) => l.startsWith(':TSNET'))
}

t.test('a second tsnet serve on one state directory exits 78 naming the first; kill -9 frees it', {
  skip: process.getuid?.() !== 0 ? 'needs root' : existsSync(CLI) ? false : 'build first (npm run build): runs dist/cli.js',
}, async (t) => {
  const env = await setup(t)
  if (!env) return
  const { ns, stateDir, start } = env

  // The first instance, with a network (a bridge and TSNET chains in the namespace).
  const first = start('first', 'plain')
  t.ok(await answers(first), `the first instance answers on its socket\n${first.output()}`)
  const created = await post(first.socket, 'NetworkDriver.CreateNetwork', {
    NetworkID: NET, Options: { 'com.docker.network.generic': {} },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.77.0.0/24', Gateway: '10.77.0.1/24' }], IPv6Data: [],
  })
  t.same(created, { status: 200, body: {} }, 'it creates a network')
  const bridge = bridgeNameFor(NET)
  t.ok(await link(ns, bridge), `bridge ${bridge} exists`)
  const chains = await tsnetChains(ns)
  t.ok(chains.length > 0, `TSNET chains exist (${chains.length})`)
  const storeBefore = storeListing(stateDir)

  // The second: other socket, other mount and PID namespace, the directory through a bind mount.
  const t0 = Date.now()
  const second = start('second', 'other-namespaces')
  const exit = await exitWithin(second, 30_000)
  const secondMs = Date.now() - t0
  t.same(exit, { code: 78, signal: null }, `the second exits 78 (after ${secondMs} ms)\n${second.output()}`)
  const said = second.output()
  t.comment(`the second said: ${said.trim()}`)
  t.match(said, /the state directory \S+ is in use by another tsnet serve/, 'it says the directory is in use')
  t.match(said, `pid ${first.pid} in another PID namespace`, "it names the first's pid, as the first sees it")
  t.match(said, `serving ${first.socket}`, "and the first's socket")
  t.match(said, /a legacy \(systemd or hand-started\) daemon, started \d{4}-\d\d-\d\dT/, 'legacy or managed, and when it started')
  t.notOk(existsSync(second.socket), 'the second never created its socket')
  t.same(storeListing(stateDir), storeBefore, 'the store is as it was')

  // The first is untouched and keeps serving; status reads the store beside it.
  t.equal((await post(first.socket, 'NetworkDriver.GetCapabilities'))?.status, 200, 'the first still answers')
  t.ok(await link(ns, bridge), 'its bridge is still there')
  t.same(await tsnetChains(ns), chains, 'its TSNET chains are as they were')
  const status = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const c = spawn(process.execPath, [CLI, 'status', '--state-dir', stateDir], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    c.stdout.on('data', (b: Buffer) => { out += b.toString() })
    c.stderr.on('data', (b: Buffer) => { out += b.toString() })
    c.once('exit', (code) => resolve({ code, out }))
  })
  t.equal(status.code, 0, `tsnet status works while the daemon runs\n${status.out}`)
  t.match(status.out, new RegExp(`networks: 1\\n  ${NET.slice(0, 12)}  bridge ${bridge}`), 'and shows its network')

  // kill -9 of the first frees the directory. Records of the wrong shape are planted meanwhile.
  process.kill(first.pid, 'SIGKILL')
  t.match(await first.exited, { signal: 'SIGKILL' }, 'the first is killed with SIGKILL')
  await writeFile(join(stateDir, 'store', 'networks', 'planted.json'), 'null')
  await writeFile(join(stateDir, 'store', 'endpoints', 'planted.json'), '[1, 2]')
  const third = start('third', 'other-namespaces')
  t.ok(await answers(third), `positive control: a new instance starts, through the bind mount, and answers\n${third.output()}`)
  t.match(third.output(), /"networks":1,"endpoints":0,"msg":"tsnet listening"/, 'it loaded the network')
  const quarantined = readdirSync(join(stateDir, 'store', 'quarantine'))
  t.equal(quarantined.length, 2, `the two planted records were quarantined (${quarantined.join(', ')})`)
  t.match(third.output(), /"reason":"not a valid network record: the record is null, not an object"/, 'the log says what was wrong')
  t.ok(await link(ns, bridge), 'the bridge is still there')

  // And now the refusal is the other way round: the holder's pid is its own namespace's.
  const fourth = start('fourth', 'plain')
  t.match(await exitWithin(fourth, 30_000), { code: 78 }, `a plain instance is refused while the new one holds the directory\n${fourth.output()}`)
  t.comment(`the fourth said: ${fourth.output().trim()}`)
  t.match(fourth.output(), /pid \d+ in another PID namespace, pid:\[\d+\],/, "it names the holder's pid in the holder's PID namespace")
  t.match(fourth.output(), `serving ${third.socket}`)
})
