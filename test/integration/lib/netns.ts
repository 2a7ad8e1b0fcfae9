/**
 * Helpers for the host-layer integration tests: private network namespaces (created and removed
 * by this process only, also on exit and on signals), commands run inside them with nsenter, and
 * readers of the kernel state (links, addresses, routes, iptables-save) used for assertions.
 *
 * Every namespace is named `tsit-<pid>-<n>`; nothing here ever touches the root namespace or any
 * namespace this process did not create.
 */
import { execFile, execFileSync } from 'node:child_process'
import type { Test } from 'tap'
import pino from 'pino'
import { createRunner, type ExecResult, type Runner } from '../../../src/host/exec.js'

export const log = pino({ level: 'silent' })

// ---------------------------------------------------------------- namespace lifecycle

const created = new Set<string>()
let counter = 0
let handlersInstalled = false

function deleteNowSync(name: string): void {
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' })
  } catch {
    // already gone
  }
  created.delete(name)
}

function installExitHandlers(): void {
  if (handlersInstalled) return
  handlersInstalled = true
  process.on('exit', () => {
    for (const n of [...created]) deleteNowSync(n)
  })
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const n of [...created]) deleteNowSync(n)
      // re-raise with the default disposition so the exit status still says "killed by sig"
      process.kill(process.pid, sig)
    })
  }
}

export interface Netns {
  readonly name: string
  /** Runs a command inside the namespace; never throws for a non-zero exit. */
  run(cmd: string, args: readonly string[], input?: string): Promise<ExecResult>
  /** Runs a command inside the namespace and returns stdout; throws on a non-zero exit. */
  ok(cmd: string, args: readonly string[], input?: string): Promise<string>
  /** The argv prefix that enters the namespace. */
  readonly prefix: readonly string[]
}

function exec(argv: readonly string[], input?: string): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = execFile(argv[0] as string, argv.slice(1), { encoding: 'utf8', timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0
      resolve({ code, stdout, stderr })
    })
    child.stdin?.on('error', () => undefined)
    child.stdin?.end(input ?? '')
  })
}

function handle(name: string): Netns {
  const prefix = ['nsenter', `--net=/run/netns/${name}`] as const
  const run = (cmd: string, args: readonly string[], input?: string) => exec([...prefix, cmd, ...args], input)
  return {
    name,
    prefix,
    run,
    async ok(cmd, args, input) {
      const r = await run(cmd, args, input)
      if (r.code !== 0) throw new Error(`[${name}] ${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`)
      return r.stdout
    },
  }
}

/**
 * Creates a fresh namespace with lo up, removed in t.teardown (and on exit/signals if the test
 * process dies first).
 */
export async function createNetns(t: Test): Promise<Netns> {
  installExitHandlers()
  const name = `tsit-${process.pid}-${++counter}`
  const r = await exec(['ip', 'netns', 'add', name])
  if (r.code !== 0) throw new Error(`ip netns add ${name}: ${r.stderr}`)
  created.add(name)
  t.teardown(async () => {
    await exec(['ip', 'netns', 'del', name])
    created.delete(name)
  })
  const ns = handle(name)
  await ns.ok('ip', ['link', 'set', 'dev', 'lo', 'up'])
  return ns
}

/**
 * Adds a plain (non-bridge, non-veth) device. `dummy` when the kernel has it, else `ifb`, which
 * behaves the same for these tests (this machine's kernel has no dummy driver).
 */
export async function addPlainDevice(ns: Netns, name: string, extra: readonly string[] = []): Promise<string> {
  for (const kind of ['dummy', 'ifb']) {
    const r = await ns.run('ip', ['link', 'add', 'name', name, ...extra, 'type', kind])
    if (r.code === 0) return kind
    if (!/Unknown device type|not supported/i.test(r.stderr)) throw new Error(`[${ns.name}] cannot add ${kind} ${name}: ${r.stderr.trim()}`)
  }
  throw new Error('neither dummy nor ifb devices are available')
}

/** Names of the namespaces this process created and has not removed yet. */
export const liveNamespaces = () => [...created]

// ---------------------------------------------------------------- host tools in the namespace

/** A runner that records every argv it is asked to run (after the prefix). */
export interface RecordingRunner extends Runner {
  readonly calls: string[][]
}

export function recordingRunner(inner: Runner): RecordingRunner {
  const calls: string[][] = []
  return {
    calls,
    run(cmd, args, opts) {
      calls.push([cmd, ...args])
      return inner.run(cmd, args, opts)
    },
  }
}

/** Host tools (iptables, ipset, sysctl) run inside `ns`, recorded. The rtnetlink half of the host layer needs remote-host.ts. */
export function runnerIn(ns: Netns): RecordingRunner {
  return recordingRunner(createRunner(ns.prefix))
}

// ---------------------------------------------------------------- readers of the kernel state

export interface IpLink {
  ifname: string
  ifalias?: string
  mtu: number
  address?: string
  master?: string
  link?: string
  flags: string[]
  operstate?: string
  /** Device group: a number, or its name from /etc/iproute2/group ("default" for 0). */
  group?: number | string
  linkinfo?: { info_kind?: string }
}

export async function links(ns: Netns): Promise<IpLink[]> {
  return JSON.parse(await ns.ok('ip', ['-j', '-d', 'link', 'show'])) as IpLink[]
}

/** The device group of a link as a number (iproute2 prints a number, or "default" for 0); undefined without a link. */
export function deviceGroup(l: IpLink | undefined): number | undefined {
  if (!l || l.group === undefined) return undefined
  if (l.group === 'default') return 0
  const n = Number(l.group)
  if (!Number.isInteger(n)) throw new Error(`device group ${String(l.group)} of ${l.ifname} is a name this test does not know`)
  return n
}

export async function link(ns: Netns, name: string): Promise<IpLink | undefined> {
  return (await links(ns)).find((l) => l.ifname === name)
}

export interface IpAddr {
  family: string
  local: string
  prefixlen: number
  scope?: string
  tentative?: boolean
  dadfailed?: boolean
}

/** All addresses of a device, including link-local ones. */
export async function addrs(ns: Netns, dev: string): Promise<IpAddr[]> {
  const out = JSON.parse(await ns.ok('ip', ['-j', 'addr', 'show', 'dev', dev])) as Array<{ addr_info?: IpAddr[] }>
  return out[0]?.addr_info ?? []
}

/** Global (non link-local) addresses of a device as sorted CIDR strings. */
export async function globalCidrs(ns: Netns, dev: string): Promise<string[]> {
  return (await addrs(ns, dev)).filter((a) => a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`).sort()
}

/** iptables-save / ip6tables-save without comment lines and with zeroed counters. */
export async function savedRules(ns: Netns, tool: 'iptables' | 'ip6tables'): Promise<string> {
  const out = await ns.ok(`${tool}-save`, [])
  return out
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/g, '[0:0]'))
    .join('\n')
}

/** `iptables -S <chain>` lines, or undefined when the chain does not exist. */
export async function chainRules(ns: Netns, tool: 'iptables' | 'ip6tables', chain: string): Promise<string[] | undefined> {
  const r = await ns.run(tool, ['-w', '10', '-S', chain])
  if (r.code !== 0) return undefined
  return r.stdout.split('\n').filter((l) => l.startsWith('-A '))
}

/** A stable picture of the namespace: links (identity fields), addresses, routes, rules. */
export async function nsState(ns: Netns): Promise<unknown> {
  const ls = (await links(ns))
    .map((l) => ({
      ifname: l.ifname,
      ifalias: l.ifalias ?? null,
      mtu: l.mtu,
      address: l.address ?? null,
      master: l.master ?? null,
      kind: l.linkinfo?.info_kind ?? null,
      group: deviceGroup(l) ?? null,
      up: l.flags.includes('UP'),
    }))
    .sort((a, b) => a.ifname.localeCompare(b.ifname))
  // Link-local addresses and the routes the kernel derives from them (fe80::/64, ff00::/8, local
  // table) appear asynchronously once a device is up; they are not what tsnet sets, so leave them out.
  const as: Record<string, string[]> = {}
  for (const l of ls) as[l.ifname] = await globalCidrs(ns, l.ifname)
  const mainRoutes = async (family: string) =>
    (await ns.ok('ip', [family, 'route', 'show', 'table', 'main']))
      .split('\n')
      .filter((r) => r.trim() !== '' && !r.startsWith('fe80::/64') && !r.startsWith('multicast '))
      .map((r) => r.replace(/ linkdown/, ''))
      .sort()
  const routes4 = await mainRoutes('-4')
  const routes6 = await mainRoutes('-6')
  return {
    links: ls,
    addrs: as,
    routes4,
    routes6,
    iptables: await savedRules(ns, 'iptables'),
    ip6tables: await savedRules(ns, 'ip6tables'),
  }
}

/** Catches a rejection and returns it (fails the test if the promise resolves). */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  return undefined
}
