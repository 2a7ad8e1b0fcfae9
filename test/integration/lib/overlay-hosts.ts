/**
 * Simulated hosts for overlay mode on the real kernel, without Docker: namespaces joined by an
 * underlay bridge (a namespace of its own), a whole `tsnet serve` per host namespace (started with
 * nsenter, so its netlink sockets, iptables and /proc/sys are that host's), driven over its socket
 * with Docker's verbs, and "containers" as namespaces that the container ends of veths are moved
 * into (what Docker does after Join). Everything is removed at teardown, also when a step fails.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { createNetns, type Netns } from './netns.js'

const CLI = new URL('../../../dist/cli.js', import.meta.url).pathname
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** POSTs JSON to /<method> on a unix socket; resolves with the parsed answer (an {Err} answer too). */
export function call(socket: string, method: string, body: unknown): Promise<Record<string, any>> {
  const text = JSON.stringify(body) + '\n'
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path: `/${method}`, method: 'POST', headers: { 'Content-Length': Buffer.byteLength(text) } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, any>)
        } catch (err) {
          reject(err)
        }
      })
    })
    req.setTimeout(30_000, () => req.destroy(new Error(`${method}: no answer in 30 s`)))
    req.on('error', reject)
    req.end(text)
  })
}

export class TsnetProcess {
  private child: ChildProcess | undefined
  readonly socket: string
  readonly logPath: string

  constructor(readonly ns: Netns, readonly dir: string, private readonly args: readonly string[]) {
    this.socket = join(dir, 'tsnet.sock')
    this.logPath = join(dir, 'tsnet.log')
  }

  async start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true })
    const fd = openSync(this.logPath, 'a')
    this.child = spawn('nsenter', [`--net=/run/netns/${this.ns.name}`, '--', process.execPath, CLI, 'serve',
      '--socket', this.socket, '--state-dir', join(this.dir, 'state'), '--reconcile-interval', '0', '--log-level', 'debug', ...this.args],
    { stdio: ['ignore', fd, fd] })
    closeSync(fd)
    for (let i = 0; i < 200; i++) {
      if (this.child.exitCode !== null) throw new Error(`tsnet in ${this.ns.name} exited (${this.child.exitCode}):\n${this.logTail()}`)
      if (existsSync(this.socket)) {
        try {
          await call(this.socket, 'NetworkDriver.GetCapabilities', {})
          return
        } catch {
          // not listening yet
        }
      }
      await sleep(50)
    }
    throw new Error(`tsnet in ${this.ns.name} did not listen within 10 s:\n${this.logTail()}`)
  }

  async stop(): Promise<void> {
    const c = this.child
    if (!c || c.exitCode !== null) return
    const gone = new Promise((r) => c.once('exit', r))
    c.kill('SIGTERM')
    const t = setTimeout(() => c.kill('SIGKILL'), 5000)
    await gone
    clearTimeout(t)
  }

  /** Calls a verb; throws with the answer's Err. */
  async ok(method: string, body: unknown): Promise<Record<string, any>> {
    const answer = await call(this.socket, method, body)
    if (answer.Err) throw new Error(`${method} on ${this.ns.name}: ${answer.Err}`)
    return answer
  }

  logTail(lines = 20): string {
    try {
      return readFileSync(this.logPath, 'utf8').trim().split('\n').slice(-lines).join('\n')
    } catch {
      return '(no log)'
    }
  }
}

export interface SimHost {
  ns: Netns
  /** The host's address on the underlay (its VTEP). */
  ip: string
  tsnet?: TsnetProcess
}

/** An underlay (a bridge in a namespace of its own) and `ips.length` host namespaces on it, eth0 each. */
export async function underlay(t: Test, ips: readonly string[], prefix = 24): Promise<{ ul: Netns; hosts: SimHost[]; dir: string }> {
  const ul = await createNetns(t)
  await ul.ok('ip', ['link', 'add', 'ul0', 'type', 'bridge'])
  await ul.ok('ip', ['link', 'set', 'ul0', 'up'])
  const dir = await mkdtemp(join(tmpdir(), 'tsnet-ovl-'))
  const hosts: SimHost[] = []
  t.teardown(async () => {
    for (const h of hosts) await h.tsnet?.stop()
    await rm(dir, { recursive: true, force: true })
  })
  for (const [i, ip] of ips.entries()) {
    const ns = await createNetns(t)
    const outer = `up${i}`
    await ul.ok('ip', ['link', 'add', outer, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', `/run/netns/${ns.name}`])
    await ul.ok('ip', ['link', 'set', outer, 'master', 'ul0', 'up'])
    await ns.ok('ip', ['addr', 'add', `${ip}/${prefix}`, 'dev', 'eth0'])
    await ns.ok('ip', ['link', 'set', 'eth0', 'up'])
    hosts.push({ ns, ip })
  }
  return { ul, hosts, dir }
}

/** Starts tsnet (global scope) on a simulated host and tells it its own address, as Docker's DiscoverNew would. */
export async function startTsnet(h: SimHost, dir: string, extra: readonly string[] = []): Promise<TsnetProcess> {
  h.tsnet = new TsnetProcess(h.ns, join(dir, h.ns.name), ['--scope', 'global', ...extra])
  await h.tsnet.start()
  await discover(h.tsnet, h.ip, true)
  return h.tsnet
}

export function discover(p: TsnetProcess, address: string, self = false, added = true): Promise<unknown> {
  return p.ok(added ? 'NetworkDriver.DiscoverNew' : 'NetworkDriver.DiscoverDelete', { DiscoveryType: 1, DiscoveryData: { Address: address, BindAddress: self ? address : '', Self: self } })
}

/**
 * A container: CreateEndpoint + Join on the host's tsnet, then the container end moved into a
 * namespace of its own as eth0 with the address (Docker's part).
 */
export async function container(t: Test, h: SimHost, networkId: string, endpointId: string, cidr: string): Promise<Netns> {
  const p = h.tsnet as TsnetProcess
  await p.ok('NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: endpointId, Interface: { Address: cidr, AddressIPv6: '', MacAddress: '' }, Options: {} })
  const joined = await p.ok('NetworkDriver.Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: `/var/run/docker/netns/${endpointId.slice(0, 12)}`, Options: {} })
  const src = (joined.InterfaceName as { SrcName: string }).SrcName
  const c = await createNetns(t)
  await h.ns.ok('ip', ['link', 'set', src, 'netns', `/run/netns/${c.name}`])
  await c.ok('ip', ['link', 'set', src, 'name', 'eth0'])
  await c.ok('ip', ['addr', 'add', cidr, 'dev', 'eth0'])
  await c.ok('ip', ['link', 'set', 'eth0', 'up'])
  return c
}

/** busybox ping; true when at least one reply came back. */
export async function pings(from: Netns, to: string, count = 2, size?: number): Promise<boolean> {
  const r = await from.run('busybox', ['ping', '-c', String(count), '-W', '2', ...(size !== undefined ? ['-s', String(size)] : []), to])
  return r.code === 0
}

/** The vxlan FDB of a device: `mac dst` lines with their flags. */
export async function fdb(ns: Netns, dev: string): Promise<Array<{ mac: string; dst?: string; state?: string[]; flags?: string[] }>> {
  return JSON.parse(await ns.ok('bridge', ['-j', 'fdb', 'show', 'dev', dev])) as Array<{ mac: string; dst?: string; state?: string[]; flags?: string[] }>
}
