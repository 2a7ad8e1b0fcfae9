// Issue 12, item 2: no process is spawned on a container's path. A real `tsnet serve`
// (dist/cli.js) runs in a namespace of the test's own, under `strace -f -e trace=execve`, which
// logs every program the daemon or any child of it executes. Docker's calls for containers without
// published ports or a policy (RequestAddress, CreateEndpoint, Join, ProgramExternalConnectivity
// and RevokeExternalConnectivity with an empty port map, EndpointOperInfo, Leave, DeleteEndpoint,
// ReleaseAddress, as recorded from dockerd in test/fixtures/wire) go to its socket, the kernel shows
// that they did their work (veth pairs on the bridge, then gone), and the trace shows that nothing
// was executed from the first call until a second after the last (link events trigger a
// reconcile a moment after a tsnet link goes: that counts too). Positive control on the same
// daemon and trace: a published port does run iptables-restore.
//
// --gc-interval 0 and no Docker API: no background work against Docker. --reconcile-interval 3600:
// the periodic reconcile reads the firewall afresh by design, every 30 s by default; it is no
// request's work, so it stays out of the trace, while link events still trigger a reconcile (0
// would turn that automatic repair off too).
import t, { type Test } from 'tap'
import { spawn, execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { bridgeNameFor, containerVethFor, hostVethFor } from '../../src/core/names.js'
import { createNetns, link, type Netns } from './lib/netns.js'

const here = dirname(fileURLToPath(import.meta.url))
const CLI = join(here, '..', '..', 'dist', 'cli.js')
const NET = '5b'.repeat(32)
const HEADERS = { accept: 'application/vnd.docker.plugins.v1.2+json', host: 'plugin.moby.localhost' }
const ENDPOINTS = 6

function hasStrace(): boolean {
  try {
    execFileSync('strace', ['-V'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

const skip = process.getuid?.() !== 0 ? 'needs root' : !existsSync(CLI) ? 'build first (npm run build): runs dist/cli.js' : !hasStrace() ? 'needs strace' : false

/** POST /method on a unix socket, Docker's way; resolves with the status and parsed body. */
function post(socket: string, method: string, body: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path: `/${method}`, method: 'POST', headers: HEADERS, timeout: 30_000 }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => { text += c.toString() })
      res.on('end', () => {
        let parsed: unknown
        try { parsed = JSON.parse(text) } catch { parsed = text }
        resolve({ status: res.statusCode ?? 0, body: parsed })
      })
    })
    req.on('error', reject)
    req.on('timeout', () => req.destroy(new Error(`${method}: no answer within 30 s`)))
    req.end(`${JSON.stringify(body)}\n`)
  })
}

interface Exec {
  pid: number
  program: string
}

/**
 * The programs started, from an `strace -f -o` log: one per process that executed something
 * (execvp tries each PATH entry, so one spawn can log several execve lines; the successful one
 * is named). The daemon's own start is the first.
 */
function execs(traceFile: string): Exec[] {
  const out = new Map<number, string>()
  for (const line of readFileSync(traceFile, 'utf8').split('\n')) {
    const m = /^(\d+) +execve\("([^"]+)".* = 0$/.exec(line)
    if (m) out.set(Number(m[1]), m[2] as string)
  }
  return [...out].map(([pid, program]) => ({ pid, program }))
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * How many of the links are still there once they have had up to 2 s to go: DeleteEndpoint
 * answers before the kernel has removed them (docs/architecture.md), and the removal is sent from
 * another thread, so it may still be on its way when the next call's answer arrives.
 */
async function leftAfterDelete(ns: Netns, names: readonly string[]): Promise<number> {
  const deadline = Date.now() + 2000
  for (;;) {
    const left = (await Promise.all(names.map((n) => link(ns, n)))).filter(Boolean).length
    if (left === 0 || Date.now() >= deadline) return left
    await sleep(50)
  }
}

async function daemon(t: Test) {
  const ns = await createNetns(t)
  const base = await mkdtemp(join(tmpdir(), 'tsnet-nospawn-'))
  const socket = join(base, 'tsnet.sock')
  const trace = join(base, 'trace')
  const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', TSNET_LOG_LEVEL: 'warn' }
  const child = spawn('nsenter', [`--net=/run/netns/${ns.name}`, '--',
    'strace', '-f', '--seccomp-bpf', '-qq', '-e', 'trace=execve', '-e', 'signal=none', '-o', trace, '--',
    process.execPath, CLI, 'serve', '--socket', socket, '--state-dir', join(base, 'state'), '--gc-interval', '0', '--reconcile-interval', '3600'],
  { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (b: Buffer) => { output += b.toString() })
  child.stderr.on('data', (b: Buffer) => { output += b.toString() })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  let tsnetPid: number | undefined
  t.teardown(async () => {
    if (tsnetPid) {
      try { process.kill(tsnetPid, 'SIGTERM') } catch { /* gone */ }
    }
    const kill = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(kill)
    await rm(base, { recursive: true, force: true })
  })
  const until = Date.now() + 30_000
  while (Date.now() < until && child.exitCode === null) {
    const r = await post(socket, 'Plugin.Activate', {}).catch(() => undefined)
    if (r?.status === 200) break
    await sleep(100)
  }
  tsnetPid = existsSync(trace) ? execs(trace)[0]?.pid : undefined
  if (!tsnetPid) throw new Error(`tsnet serve did not start under strace:\n${output}`)
  return { ns, socket, trace, tsnetPid, output: () => output }
}

t.test('RequestAddress, CreateEndpoint, Join, Leave, DeleteEndpoint and ReleaseAddress of containers without ports spawn nothing; a published port does', { skip }, async (t) => {
  const { ns, socket, trace, tsnetPid, output } = await daemon(t)
  const call = async (method: string, body: unknown) => {
    const r = await post(socket, method, body)
    if (r.status !== 200) throw new Error(`${method} ${JSON.stringify(body)} → ${r.status} ${JSON.stringify(r.body)}\n${output()}`)
    return r.body
  }
  t.match(execs(trace)[0], { pid: tsnetPid, program: process.execPath }, 'the trace follows the daemon from its start')

  // The network, as Docker creates it with tsnet as the IPAM driver too (this one runs tools: the edge).
  const pool = await call('IpamDriver.RequestPool', { AddressSpace: 'LocalDefault', Pool: '10.82.0.0/24', SubPool: '', Options: {}, V6: false })
  const gateway = await call('IpamDriver.RequestAddress', { PoolID: pool.PoolID, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } })
  await call('NetworkDriver.CreateNetwork', {
    NetworkID: NET, Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': {} },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Gateway: gateway.Address, Pool: '10.82.0.0/24' }], IPv6Data: [],
  })
  const setup = execs(trace).slice(1)
  t.ok(setup.length > 0, `creating the network runs tools (${[...new Set(setup.map((e) => e.program))].join(', ')})`)
  await sleep(1000)
  const before = execs(trace).length

  const noPorts = { 'com.docker.network.endpoint.exposedports': [], 'com.docker.network.portmap': [] }
  const eps = Array.from({ length: ENDPOINTS }, (_, i) => `${i}e`.repeat(32))
  const start = async (ep: string) => {
    const addr = await call('IpamDriver.RequestAddress', { PoolID: pool.PoolID, Address: '', Options: null })
    await call('NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: ep, Interface: { Address: addr.Address, AddressIPv6: '', MacAddress: '' }, Options: noPorts })
    await call('NetworkDriver.Join', { NetworkID: NET, EndpointID: ep, SandboxKey: `/var/run/docker/netns/${ep.slice(0, 12)}`, Options: noPorts })
    await call('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET, EndpointID: ep, Options: noPorts })
    await call('NetworkDriver.EndpointOperInfo', { NetworkID: NET, EndpointID: ep })
    return addr.Address as string
  }
  const stop = async (ep: string, address: string) => {
    await call('NetworkDriver.RevokeExternalConnectivity', { NetworkID: NET, EndpointID: ep })
    await call('NetworkDriver.Leave', { NetworkID: NET, EndpointID: ep })
    await call('NetworkDriver.DeleteEndpoint', { NetworkID: NET, EndpointID: ep })
    await call('IpamDriver.ReleaseAddress', { PoolID: pool.PoolID, Address: address.split('/')[0] })
  }
  // One at a time, then all at once (as a mass start does).
  const first = eps[0] as string
  const a = await start(first)
  t.equal((await link(ns, hostVethFor(first)))?.master, bridgeNameFor(NET), 'the container\'s veth pair was made, on the bridge')
  t.ok(await link(ns, containerVethFor(first)), 'with its container end')
  await stop(first, a)
  t.equal(await leftAfterDelete(ns, [hostVethFor(first)]), 0, 'and deleted again')
  const addresses = await Promise.all(eps.slice(1).map(start))
  const made = await Promise.all(eps.slice(1).map((ep) => link(ns, hostVethFor(ep))))
  t.equal(made.filter(Boolean).length, ENDPOINTS - 1, `${ENDPOINTS - 1} containers started at once: their pairs exist`)
  await Promise.all(eps.slice(1).map((ep, i) => stop(ep, addresses[i] as string)))
  t.equal(await leftAfterDelete(ns, eps.slice(1).map(hostVethFor)), 0, 'and are gone after they stopped')
  await sleep(1000) // what the calls set off in the background (a reconcile after a link event) runs by now

  const during = execs(trace).slice(before)
  t.same(during, [], `nothing was executed during ${ENDPOINTS} container starts and stops (${during.map((e) => `${e.pid} ${e.program}`).join(', ') || 'none'})`)

  // Positive control: the same daemon and trace see a published port's iptables-restore.
  const ep = 'pp'.repeat(32)
  const addr = await start(ep)
  await call('NetworkDriver.ProgramExternalConnectivity', {
    NetworkID: NET, EndpointID: ep, Options: { 'com.docker.network.portmap': [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 18080, HostPortEnd: 18080 }] },
  })
  const published = execs(trace).slice(before).map((e) => e.program)
  t.ok(published.some((p) => p.endsWith('/iptables-restore')), `control: publishing a port executes iptables-restore (${published.join(', ')})`)

  // Control of the watch: a tsnet link that someone else deletes still sets off a reconcile, which
  // reads the firewall (only tsnet's own deletions are no drift).
  const mark = execs(trace).length
  await ns.ok('ip', ['link', 'del', 'dev', hostVethFor(ep)])
  const readsFirewall = () => execs(trace).slice(mark).some((e) => e.program.endsWith('/iptables'))
  for (let i = 0; i < 100 && !readsFirewall(); i++) await sleep(100)
  const reconcile = execs(trace).slice(mark).map((e) => e.program)
  t.ok(reconcile.some((p) => p.endsWith('/iptables')), `control: deleting ${hostVethFor(ep)} by hand sets off a reconcile that reads the firewall (${reconcile.join(', ')})`)
  t.match(output(), `link ${hostVethFor(ep)} was deleted`, 'and the log says why')
  await stop(ep, addr)
  await call('IpamDriver.ReleaseAddress', { PoolID: pool.PoolID, Address: gateway.Address.split('/')[0] })
  await call('NetworkDriver.DeleteNetwork', { NetworkID: NET })
  await call('IpamDriver.ReleasePool', { PoolID: pool.PoolID })
})
