/**
 * docker run latency and the datapath between two containers, tsnet against Docker's bridge in the
 * same engine, and a plain Linux bridge without firewall in namespaces of its own (the limit).
 * Paths are interleaved round by round: these machines are shared and noisy.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, copyFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { destroyEngine, ensureBusyboxImage, startEngine, type Engine } from '../test/e2e/lib/engine.js'
import { mapLimit } from '../test/e2e/lib/resilience.js'
import { run, runOk } from '../test/e2e/lib/proc.js'
import { startTsnet } from '../test/e2e/lib/tsnet.js'
import { execsIn, processes, traceSpawnsQuietly, type Tracer, type Window } from '../test/e2e/lib/spawn-trace.js'
import { median } from './lib/stats.js'

export const IMAGE = 'bench-net:latest'
const TS = ['-d', 'tsnet', '--ipam-driver', 'tsnet']
const PLAIN = { br: 'tsbp-br', a: 'tsbp-a', b: 'tsbp-b' }

export type PathName = 'tsnet' | 'docker' | 'plain'
export interface PathSample { rttAvgUs: number; rttMinUs: number; rttMdevUs: number; gbps: number }
export interface DatapathRow { networks: number; rounds: Array<Record<PathName, PathSample>> }
export interface DockerRunResult {
  tsnetMs: number[]
  bridgeMs: number[]
  /** the same with a published port (-p 127.0.0.1::8080), fewer pairs, for information */
  portsTsnetMs: number[]
  portsBridgeMs: number[]
  /** processes tsnet spawned during each tsnet `docker run --rm`, without and with a published port */
  spawns: { tool: Tracer | 'none'; perRun: number[]; perRunPorts: number[]; programs: string[]; programsPorts: string[]; error?: string }
}

/** "iptables-restore ×3, ipset ×1": what a list of processes ran. */
function tally(files: string[]): string[] {
  const n = new Map<string, number>()
  for (const f of files) n.set(f, (n.get(f) ?? 0) + 1)
  return [...n].map(([f, k]) => `${f} ×${k}`)
}

/** An image with busybox and Debian's iperf3 (and its libraries), made with docker import. */
export async function importNetImage(e: Engine): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-bench-img-'))
  try {
    const put = (src: string, dst = src) => {
      mkdirSync(join(dir, dirname(dst)), { recursive: true })
      if (!existsSync(join(dir, dst))) copyFileSync(src, join(dir, dst))
    }
    put('/bin/busybox', '/bin/busybox')
    for (const a of ['sh', 'sleep', 'ping', 'ip']) symlinkSync('busybox', join(dir, 'bin', a))
    const iperf = execFileSync('readlink', ['-f', execFileSync('sh', ['-c', 'command -v iperf3']).toString().trim()]).toString().trim()
    put(iperf, '/usr/bin/iperf3')
    const libs = execFileSync('ldd', [iperf]).toString().split('\n').flatMap((l) => {
      const m = /=> (\/\S+)/.exec(l) ?? /^\s*(\/\S+)/.exec(l)
      return m?.[1] ? [m[1]] : []
    })
    for (const l of libs) put(execFileSync('readlink', ['-f', l]).toString().trim(), l)
    mkdirSync(join(dir, 'tmp'), { recursive: true })
    const tar = join(tmpdir(), `bench-net-${process.pid}.tar`)
    await runOk('tar', ['-C', dir, '-cf', tar, '.'])
    await e.dockerOk(['import', tar, IMAGE])
    rmSync(tar, { force: true })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

export async function ensureIperf(): Promise<void> {
  if ((await run('sh', ['-c', 'command -v iperf3'])).code === 0) return
  await runOk('apt-get', ['install', '-y', '--no-install-recommends', 'iperf3'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeoutMs: 300_000 })
}

export function parsePing(out: string): Pick<PathSample, 'rttAvgUs' | 'rttMinUs' | 'rttMdevUs'> {
  const m = /= ([\d.]+)\/([\d.]+)\/([\d.]+)(?:\/([\d.]+))? ms/.exec(out)
  if (!m) throw new Error(`no ping summary in: ${out}`)
  const min = Number(m[1]) * 1000
  const avg = Number(m[2]) * 1000
  const max = Number(m[3]) * 1000
  return { rttMinUs: min, rttAvgUs: avg, rttMdevUs: m[4] ? Number(m[4]) * 1000 : (max - min) / 2 }
}

export const parseIperf = (json: string) => (JSON.parse(json) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e9

/** Two namespaces on a plain bridge in a third, no iptables rules and no bridge netfilter. */
async function setupPlain(): Promise<void> {
  await teardownPlain()
  for (const ns of [PLAIN.br, PLAIN.a, PLAIN.b]) await runOk('ip', ['netns', 'add', ns])
  await runOk('ip', ['-n', PLAIN.br, 'link', 'add', 'br0', 'type', 'bridge'])
  await runOk('ip', ['-n', PLAIN.br, 'link', 'set', 'br0', 'up'])
  await run('ip', ['netns', 'exec', PLAIN.br, 'sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0'])
  for (const [ns, addr] of [[PLAIN.a, '10.212.0.2/24'], [PLAIN.b, '10.212.0.3/24']] as const) {
    await runOk('ip', ['-n', PLAIN.br, 'link', 'add', `p-${ns.slice(-1)}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
    await runOk('ip', ['-n', PLAIN.br, 'link', 'set', `p-${ns.slice(-1)}`, 'master', 'br0', 'up'])
    await runOk('ip', ['-n', ns, 'addr', 'add', addr, 'dev', 'eth0'])
    await runOk('ip', ['-n', ns, 'link', 'set', 'eth0', 'up'])
    await runOk('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  }
  await runOk('ip', ['netns', 'exec', PLAIN.b, 'iperf3', '-s', '-D', '-1'])
}

async function teardownPlain(): Promise<void> {
  await run('ip', ['netns', 'exec', PLAIN.b, 'pkill', '-f', 'iperf3 -s'])
  for (const ns of [PLAIN.a, PLAIN.b, PLAIN.br]) await run('ip', ['netns', 'del', ns])
}

/**
 * docker run --rm, interleaved A/B, the order alternating each pair; then fewer pairs with a
 * published port. tsnet's execs are traced throughout (perf: it does not slow tsnet down) and
 * counted inside each tsnet run.
 */
async function dockerRunPairs(e: Engine, tsnetPid: number, opts: { runPairs: number; portPairs: number; log: (s: string) => void }, out: DockerRunResult): Promise<void> {
  let trace: Awaited<ReturnType<typeof traceSpawnsQuietly>> | undefined
  try {
    trace = await traceSpawnsQuietly(tsnetPid)
    out.spawns.tool = trace.tool
  } catch (err) {
    out.spawns.error = err instanceof Error ? err.message : String(err)
    opts.log(`no tracer could attach to tsnet, spawns not counted: ${out.spawns.error}`)
  }
  const windows: Window[] = []
  const windowsPorts: Window[] = []
  const pairs = async (n: number, extra: string[], tsnetMs: number[], bridgeMs: number[], tsnetWindows: Window[]) => {
    for (let i = 0; i < n; i++) {
      for (const which of i % 2 ? ['bridge', 'tsnet'] as const : ['tsnet', 'bridge'] as const) {
        const start = process.hrtime.bigint()
        await e.dockerOk(['run', '--rm', '--network', which === 'tsnet' ? 'tnet' : 'dnet', ...extra, 'bb:latest', 'true'])
        const end = process.hrtime.bigint()
        ;(which === 'tsnet' ? tsnetMs : bridgeMs).push(Number(end - start) / 1e6)
        if (which === 'tsnet') tsnetWindows.push({ start, end })
      }
    }
  }
  try {
    await pairs(opts.runPairs, [], out.tsnetMs, out.bridgeMs, windows)
    opts.log(`docker run --rm: tsnet median ${median(out.tsnetMs).toFixed(0)} ms, bridge ${median(out.bridgeMs).toFixed(0)} ms over ${opts.runPairs} pairs`)
    await pairs(opts.portPairs, ['-p', '127.0.0.1::8080'], out.portsTsnetMs, out.portsBridgeMs, windowsPorts)
    opts.log(`docker run --rm -p: tsnet median ${median(out.portsTsnetMs).toFixed(0)} ms, bridge ${median(out.portsBridgeMs).toFixed(0)} ms over ${opts.portPairs} pairs`)
  } finally {
    const execs = await trace?.stop()
    if (execs) {
      const count = (ws: Window[], perRun: number[], programs: string[]) => {
        const files: string[] = []
        for (const w of ws) {
          const ps = processes(execsIn(execs, w))
          perRun.push(ps.length)
          files.push(...ps.map((p) => p.file))
        }
        programs.push(...tally(files))
      }
      count(windows, out.spawns.perRun, out.spawns.programs)
      count(windowsPorts, out.spawns.perRunPorts, out.spawns.programsPorts)
      opts.log(`tsnet spawned (${trace?.tool}): ${out.spawns.perRun.reduce((a, b) => a + b, 0)} processes in ${windows.length} runs without ports, ${out.spawns.perRunPorts.reduce((a, b) => a + b, 0)} in ${windowsPorts.length} with a port (${out.spawns.programsPorts.join(', ') || 'none'})`)
    }
  }
}

export async function datapathBench(opts: { steps: number[]; rounds: number; pings: number; runPairs: number; portPairs: number; log: (s: string) => void }): Promise<{ rows: DatapathRow[]; dockerRun: DockerRunResult }> {
  await ensureIperf()
  const e = await startEngine('bench-d')
  const rows: DatapathRow[] = []
  const dockerRun: DockerRunResult = {
    tsnetMs: [], bridgeMs: [], portsTsnetMs: [], portsBridgeMs: [],
    spawns: { tool: 'none', perRun: [], perRunPorts: [], programs: [], programsPorts: [] },
  }
  try {
    // `tsnet serve` as the e2e harness starts it. Garbage collection and the periodic reconcile are
    // off: both run on their own timers (the reconcile observes the firewall with iptables and
    // ipset), and one landing inside a timed run would be counted as a spawn of that container.
    const ts = await startTsnet(e, { logLevel: 'warn', env: { TSNET_GC_INTERVAL: '0', TSNET_RECONCILE_INTERVAL: '0' } })
    await ensureBusyboxImage(e)
    await importNetImage(e)
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.210.0.0/24', 'tnet'])
    await e.dockerOk(['network', 'create', '--subnet', '10.211.0.0/24', 'dnet'])
    for (const [c, net] of [['t1', 'tnet'], ['t2', 'tnet'], ['d1', 'dnet'], ['d2', 'dnet']] as const) {
      await e.dockerOk(['run', '-d', '--name', c, '--network', net, IMAGE, '/bin/sleep', '1000000'])
    }
    const addrOf = async (c: string) => (await e.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', c])).trim()
    const ip = { t2: await addrOf('t2'), d2: await addrOf('d2') }
    await setupPlain()
    await dockerRunPairs(e, ts.pid, opts, dockerRun)
    let present = 1
    for (const target of opts.steps) {
      const more = Array.from({ length: Math.max(0, target - present) }, (_, i) => present + i)
      const t0 = Date.now()
      await mapLimit(8, more, (k) => e.dockerOk(['network', 'create', ...TS, '--subnet', `10.${220 + Math.floor(k / 250)}.${k % 250}.0/24`, `x${k}`]))
      present = Math.max(present, target)
      if (more.length) opts.log(`${more.length} more tsnet networks in ${Date.now() - t0} ms (${present} present)`)
      const row: DatapathRow = { networks: present, rounds: [] }
      for (let r = 0; r < opts.rounds; r++) {
        const sample = {} as Record<PathName, PathSample>
        const paths: PathName[] = r % 2 ? ['plain', 'docker', 'tsnet'] : ['tsnet', 'docker', 'plain']
        for (const p of paths) {
          const pingArgs = ['ping', '-A', '-q', '-c', String(opts.pings)]
          let pingOut: string
          let iperfOut: string
          if (p === 'plain') {
            pingOut = (await runOk('ip', ['netns', 'exec', PLAIN.a, 'busybox', ...pingArgs, '10.212.0.3'])).stdout
            await runOk('ip', ['netns', 'exec', PLAIN.b, 'iperf3', '-s', '-D', '-1'])
            iperfOut = (await runOk('ip', ['netns', 'exec', PLAIN.a, 'iperf3', '-c', '10.212.0.3', '-t', '3', '-J'], { timeoutMs: 30_000 })).stdout
          } else {
            const [a, b, target] = p === 'tsnet' ? ['t1', 't2', ip.t2] : ['d1', 'd2', ip.d2]
            pingOut = await e.dockerOk(['exec', a, ...pingArgs, target])
            await e.dockerOk(['exec', '-d', b, 'iperf3', '-s', '-1'])
            await new Promise((res) => setTimeout(res, 300))
            iperfOut = await e.dockerOk(['exec', a, 'iperf3', '-c', target, '-t', '3', '-J'], { timeoutMs: 30_000 })
          }
          sample[p] = { ...parsePing(pingOut), gbps: parseIperf(iperfOut) }
        }
        row.rounds.push(sample)
        opts.log(`networks ${present} round ${r + 1}: ` + (['tsnet', 'docker', 'plain'] as const).map((p) => `${p} ${sample[p].rttAvgUs.toFixed(0)} µs ${sample[p].gbps.toFixed(2)} Gbit/s`).join(', '))
      }
      rows.push(row)
    }
    await ts.stop()
  } finally {
    await teardownPlain()
    await destroyEngine(e)
  }
  return { rows, dockerRun }
}
