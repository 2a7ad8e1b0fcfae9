// tsnet's overlay mode against Docker's overlay and raw VXLAN with no firewall (the limit), across
// the hosts of a three-engine swarm on one machine, plus the 200-node DiscoverNew simulation.
// A report, not a test: it prints ratios and writes bench/results/<date>-overlay.md. As root,
// under the e2e lock (it starts engines):
//   npm run build && flock /tmp/tsnet-e2e.lock npm run bench:overlay      (BENCH_QUICK=1: a smoke run)
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run, runOk } from '../test/e2e/lib/proc.js'
import { REPO_ROOT } from '../test/e2e/lib/tsnet.js'
import { nsExecOk, type Engine } from '../test/e2e/lib/engine.js'
import { pluginLines } from '../test/e2e/lib/plugin.js'
import { waitFor } from '../test/e2e/lib/wait.js'
import { ensureIperf } from './datapath.js'
import { samplePath, type Sample } from './lib/path-sample.js'
import { createCluster, PLUGIN, SUBNET, type RawPath } from './lib/overlay-cluster.js'
import { fmt, median, p90, pairedRatioInterval, rotated, spread } from './lib/stats.js'
import { simSummary, simulate } from './overlay-sim.js'

const QUICK = process.env.BENCH_QUICK === '1'
const ROUNDS = QUICK ? 2 : 8
// 1000: 200 replies took 5 ms, so one busy moment of the machine moved a whole sample.
const PINGS = QUICK ? 100 : 1000
// 40 pairs: with 20 the ratio moved ±0.04 from run to run, as wide as the gap it has to show.
const PAIRS = QUICK ? 4 : 40
const FIRST = QUICK ? 3 : 10
const SIM_STEPS = QUICK ? [10, 50] : [25, 50, 100, 200]
const IMAGE = 'bench-net:latest'
const log = (s: string) => console.log(`[bench] ${s}`)
/**
 * Two more raw paths take the raw limit toward what any driver under Docker has: `rawct` adds what
 * every Docker container's namespace carries, its embedded DNS's nat rules (so conntrack runs
 * there); `rawdk` adds to that a Docker host's own firewall (node A's filter and nat tables with
 * tsnet's chains taken out), which every VXLAN datagram crosses. `rawdk` is the floor for a driver
 * under Docker; tsnet over it is what tsnet itself adds.
 */
type Path = 'tsnet' | 'native' | 'raw' | 'rawct' | 'rawdk'
const PATHS: readonly Path[] = ['tsnet', 'native', 'raw', 'rawct', 'rawdk']
const PATH_NAMES: Record<Path, string> = {
  tsnet: 'tsnet overlay', native: "Docker's overlay", raw: 'raw VXLAN (limit)', rawct: "raw VXLAN + a container's nat rules", rawdk: "raw VXLAN + a container's nat rules + a Docker host's firewall",
}
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6
const ratio = (a: number[], b: number[]) => median(a) / median(b)
const runInterval = (ms: Record<'tsnet' | 'native', number[]>) => pairedRatioInterval(ms.tsnet, ms.native).map((x) => fmt(x, 2)).join('–')

async function main(): Promise<void> {
  await ensureIperf()
  const started = Date.now()
  const c = await createCluster('bv', log, ['TSNET_LOG_LEVEL=info'], { extraRawPaths: 2 })
  const [rawct, rawdk] = c.extraRaw as [RawPath, RawPath]
  const [A, B, C] = c.nodes as [typeof c.nodes[0], typeof c.nodes[0], typeof c.nodes[0]]
  const out: string[] = []
  try {
    await A.e.dockerOk(['network', 'create', '-d', PLUGIN, '--attachable', '--subnet', '10.210.0.0/24', 'ov'])
    await A.e.dockerOk(['network', 'create', '-d', 'overlay', '--attachable', '--subnet', '10.211.0.0/24', 'nat'])
    for (const [e, name, net] of [[A.e, 't1', 'ov'], [B.e, 't2', 'ov'], [A.e, 'n1', 'nat'], [B.e, 'n2', 'nat']] as const) {
      await e.dockerOk(['run', '-d', '--name', name, '--network', net, IMAGE, '/bin/sleep', '1000000'])
    }
    const ipOf = (e: Engine, name: string, net: string) => e.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, name])
    const target = {
      tsnet: await ipOf(B.e, 't2', 'ov'), native: await ipOf(B.e, 'n2', 'nat'), raw: c.raw.ips[1] as string, rawct: rawct.ips[1] as string, rawdk: rawdk.ips[1] as string,
    }
    for (const [from, to] of [['t1', target.tsnet], ['n1', target.native]]) await waitFor(async () => (await A.e.docker(['exec', from as string, 'ping', '-c1', '-W1', to as string])).code === 0, { timeoutMs: 30_000, what: `${from} to reach ${to}` })
    // Docker's own nat rules of a container here (they name its resolver's ports), given to both added raw paths' containers.
    const pid = await A.e.dockerOk(['inspect', '-f', '{{.State.Pid}}', 't1'])
    const containerNat = (await runOk('nsenter', ['-t', pid, '-n', 'iptables-save', '-t', 'nat'])).stdout
    if (!containerNat.includes('DOCKER_OUTPUT')) throw new Error(`no embedded-DNS rules in a container's namespace:\n${containerNat}`)
    for (const e of [...rawct.ctrs, ...rawdk.ctrs]) await runOk('nsenter', [`--net=${e.netnsPath}`, 'iptables-restore'], { input: containerNat })
    const hostRules = await dockerHostRules(A.e)
    for (const e of rawdk.hosts) await runOk('nsenter', [`--net=${e.netnsPath}`, 'iptables-restore'], { input: hostRules })
    const ctrsOf: Record<'raw' | 'rawct' | 'rawdk', [Engine, Engine]> = {
      raw: c.raw.ctrs as [Engine, Engine], rawct: rawct.ctrs as [Engine, Engine], rawdk: rawdk.ctrs as [Engine, Engine],
    }

    // ---- round trip and throughput, interleaved
    const rounds: Array<Record<Path, Sample>> = []
    for (let r = 0; r < ROUNDS; r++) {
      const order = rotated(PATHS, r)
      const sample = {} as Record<Path, Sample>
      for (const p of order) {
        const via = p === 'tsnet' ? [A.e, 't1', B.e, 't2'] as const : p === 'native' ? [A.e, 'n1', B.e, 'n2'] as const : undefined
        sample[p] = await samplePath(target[p], PINGS, via, ctrsOf[p === 'tsnet' || p === 'native' ? 'raw' : p])
      }
      rounds.push(sample)
      log(`round ${r + 1}: ` + PATHS.map((p) => `${p} ${fmt(sample[p].rttAvgUs, 0)}/${fmt(sample[p].rttMedUs, 0)}/${fmt(sample[p].rttMinUs, 0)} µs ${fmt(sample[p].gbps, 2)} Gbit/s`).join(', '))
    }
    const col = (p: Path, k: keyof Sample) => rounds.map((x) => x[p][k])
    const perRound = (a: Path, b: Path, k: keyof Sample) => rounds.map((x) => x[a][k] / x[b][k])

    // ---- docker run on the overlay, interleaved pairs
    const runMs: Record<'tsnet' | 'native', number[]> = { tsnet: [], native: [] }
    for (let i = 0; i < PAIRS; i++) {
      for (const which of i % 2 ? (['native', 'tsnet'] as const) : (['tsnet', 'native'] as const)) {
        const t0 = process.hrtime.bigint()
        await A.e.dockerOk(['run', '--rm', '--network', which === 'tsnet' ? 'ov' : 'nat', 'bb:latest', 'true'])
        runMs[which].push(ms(t0))
      }
    }
    log(`docker run --rm: tsnet ${fmt(median(runMs.tsnet), 0)} ms, native ${fmt(median(runMs.native), 0)} ms (${PAIRS} pairs)`)

    // ---- from a container's start to its first reply from another host (its own clock, 10 ms steps)
    const first: Record<'tsnet' | 'native', number[]> = { tsnet: [], native: [] }
    for (let i = 0; i < FIRST; i++) {
      for (const which of i % 2 ? (['native', 'tsnet'] as const) : (['tsnet', 'native'] as const)) {
        const script = `read s x < /proc/uptime; until ping -c1 -W1 ${target[which]} >/dev/null 2>&1; do :; done; read e x < /proc/uptime; echo $s $e`
        const outText = await A.e.dockerOk(['run', '--rm', '--network', which === 'tsnet' ? 'ov' : 'nat', IMAGE, '/bin/sh', '-c', script])
        const [s, e] = outText.trim().split(' ').map(Number) as [number, number]
        first[which].push(Math.round((e - s) * 1000))
      }
    }
    log(`first cross-host reply after start: tsnet ${fmt(median(first.tsnet), 0)} ms, native ${fmt(median(first.native), 0)} ms`)

    // ---- a node's death: A's entries toward it, tsnet's and Docker's overlay's
    await C.e.dockerOk(['run', '-d', '--name', 'c1', '--network', 'ov', IMAGE, '/bin/sleep', '1000000'])
    await C.e.dockerOk(['run', '-d', '--name', 'c2', '--network', 'nat', IMAGE, '/bin/sleep', '1000000'])
    for (const [from, name, net] of [['t1', 'c1', 'ov'], ['n1', 'c2', 'nat']] as const) {
      const ip = await ipOf(C.e, name, net)
      await waitFor(async () => (await A.e.docker(['exec', from, 'ping', '-c1', '-W1', ip])).code === 0, { timeoutMs: 30_000, what: `${from} to reach ${name}` })
    }
    const death = await nodeDeath(c, A, C)
    log(`node death: Docker told tsnet after ${fmt(death.toldMs, 0)} ms; tsnet's entries gone ${fmt(death.tsnetMs, 0)} ms after the cut (${fmt(death.tsnetMs - death.toldMs, 0)} ms after being told), Docker overlay's ${fmt(death.nativeMs, 0)} ms`)

    // ---- 200 nodes by simulation
    const dir = mkdtempSync(join(tmpdir(), 'tsnet-bench-sim-'))
    const sim = simSummary(await simulate(SIM_STEPS, log, dir))

    out.push(...report({ rounds, col, perRound, runMs, first, death, sim, minutes: (Date.now() - started) / 60000 }))
  } finally {
    await c.destroy()
  }
  const text = out.join('\n') + '\n'
  console.log(text)
  const dir = join(REPO_ROOT, 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `${new Date().toISOString().slice(0, 10)}-overlay${QUICK ? '-quick' : ''}.md`)
  writeFileSync(file, text)
  log(`wrote ${file}`)
}

/** A Docker host's own firewall: the engine's filter and nat tables with every tsnet chain, jump and comment taken out. */
async function dockerHostRules(e: Engine): Promise<string> {
  const kept = (await nsExecOk(e, ['iptables-save', '-t', 'filter'])) + '\n' + (await nsExecOk(e, ['iptables-save', '-t', 'nat']))
  const rules = kept.split('\n').filter((l) => !/tsnet/i.test(l)).join('\n') + '\n'
  if (!rules.includes('DOCKER-USER') || !rules.includes('-j MASQUERADE')) throw new Error(`node A's firewall has no Docker rules:\n${rules}`)
  return rules
}

/** Cuts C off the underlay (a power cut as the others see it) and times what A does about it. */
async function nodeDeath(c: Awaited<ReturnType<typeof createCluster>>, A: { e: Engine; pluginId?: string }, C: { e: Engine; ip: string }) {
  const nid = await A.e.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'ov'])
  const natId = await A.e.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'nat'])
  const vxlan = `tsvx-${nid.toLowerCase().slice(0, 10)}`
  // Docker's overlay keeps its entries in the network's sandbox, mounted in dockerd's mount namespace.
  const sandbox = join(A.e.execRoot, 'netns', `1-${natId.slice(0, 10)}`)
  const inDockerd = (argv: string[]) => run('nsenter', ['-t', String(A.e.dockerdPid), '-m', '--', ...argv])
  const tsnetHas = async () => (await nsExecOk(A.e, ['bridge', 'fdb', 'show', 'dev', vxlan])).includes(`dst ${C.ip} `)
  const nativeHas = async () => (await inDockerd(['nsenter', `--net=${sandbox}`, 'bridge', 'fdb', 'show'])).stdout.includes(`dst ${C.ip} `)
  if (!(await tsnetHas()) || !(await nativeHas())) throw new Error('A has no entries toward C to lose')
  const mark = pluginLines(A.e, A.pluginId as string).length
  const t0 = Date.now()
  await c.underlay.cut(C.e)
  let tsnetMs = NaN
  let nativeMs = NaN
  while (Date.now() - t0 < 120_000 && (Number.isNaN(tsnetMs) || Number.isNaN(nativeMs))) {
    if (Number.isNaN(tsnetMs) && !(await tsnetHas())) tsnetMs = Date.now() - t0
    if (Number.isNaN(nativeMs) && !(await nativeHas())) nativeMs = Date.now() - t0
    await new Promise((r) => setTimeout(r, 100))
  }
  const told = pluginLines(A.e, A.pluginId as string).slice(mark).find((l) => /removing host/.test(l.text))
  const toldMs = told?.json?.time ? Date.parse(told.json.time as string) - t0 : NaN
  return { tsnetMs, nativeMs, toldMs }
}

function report(r: {
  rounds: Array<Record<Path, Sample>>; col: (p: Path, k: keyof Sample) => number[]; perRound: (a: Path, b: Path, k: keyof Sample) => number[]
  runMs: Record<'tsnet' | 'native', number[]>; first: Record<'tsnet' | 'native', number[]>; death: { tsnetMs: number; nativeMs: number; toldMs: number }
  sim: ReturnType<typeof simSummary>; minutes: number
}): string[] {
  const sh = (cmd: string, args: string[]) => { try { return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim().split('\n')[0] ?? '' } catch { return '?' } }
  const ratioOf = (x: Path, y: Path, k: keyof Sample) => fmt(median(r.perRound(x, y, k)), 2)
  const ratios = (x: Path, y: Path) => (['rttAvgUs', 'rttMedUs', 'rttMinUs'] as const).map((k) => ratioOf(x, y, k)).join(' / ')
  const load = sh('cat', ['/proc/loadavg'])
  const commit = sh('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'])
  const lines = [
    `# tsnet overlay benchmark, ${new Date().toISOString().slice(0, 10)}`, '',
    `Three engines (Docker 20.10) in namespaces of one machine, joined by an underlay bridge (MTU 1500); tsnet ${commit}; load average at the end ${load}. `
      + `Paths across hosts: tsnet overlay (managed plugin, global scope), Docker's overlay, raw VXLAN between two namespaces with a bridge and a veth each and no firewall (the limit), `
      + `the same raw path with a Docker container's own nat rules in both container namespaces (its embedded DNS; they turn conntrack on there, for every overlay), `
      + `and that again with a Docker host's firewall in both host namespaces (node A's filter and nat tables, tsnet's chains taken out): what every driver under Docker carries. ${r.minutes.toFixed(1)} minutes.`, '',
    `## Round trip (busybox ping -A, ${PINGS} per round after 200 unrecorded) and TCP throughput (iperf3, 3 s), ${ROUNDS} interleaved rounds`, '',
    'Per round: the average, the median and the minimum of the replies; the table gives the median over the rounds [range].', '',
    '| path | rtt avg µs | rtt median µs | rtt min µs | Gbit/s |', '|---|---|---|---|---|',
    ...PATHS.map((p) => `| ${PATH_NAMES[p]} | ${spread(r.col(p, 'rttAvgUs'), 0)} | ${spread(r.col(p, 'rttMedUs'), 0)} | ${fmt(median(r.col(p, 'rttMinUs')), 0)} | ${spread(r.col(p, 'gbps'), 2)} |`),
    '', 'Ratios (median of the same-round ratios; target in brackets):', '',
    `- round trip tsnet/Docker overlay **${ratioOf('tsnet', 'native', 'rttAvgUs')}** (≤ 1.0), tsnet/raw VXLAN **${ratioOf('tsnet', 'raw', 'rttAvgUs')}** (≤ 1.15); by the median reply ${ratioOf('tsnet', 'native', 'rttMedUs')} and ${ratioOf('tsnet', 'raw', 'rttMedUs')}`,
    `- throughput tsnet/Docker overlay **${ratioOf('tsnet', 'native', 'gbps')}** (≥ 1.0), tsnet/raw VXLAN ${ratioOf('tsnet', 'raw', 'gbps')}`, '',
    'What a path under Docker carries before any driver adds anything, and what tsnet adds (round trip ratios: average / median reply / minimum):', '',
    `- raw + a container's nat rules / raw: ${ratios('rawct', 'raw')}`,
    `- raw + a container's nat rules + a Docker host's firewall / raw (the floor for a driver under Docker): **${ratios('rawdk', 'raw')}**`,
    `- tsnet / that floor (what tsnet adds): **${ratios('tsnet', 'rawdk')}**; Docker's overlay / that floor: ${ratios('native', 'rawdk')}`, '',
    `## docker run --rm on the overlay, ${PAIRS} interleaved pairs`, '',
    '| network | median ms | p90 ms | min–max ms |', '|---|---|---|---|',
    `| tsnet overlay | ${fmt(median(r.runMs.tsnet), 0)} | ${fmt(p90(r.runMs.tsnet), 0)} | ${fmt(Math.min(...r.runMs.tsnet), 0)}–${fmt(Math.max(...r.runMs.tsnet), 0)} |`,
    `| Docker's overlay | ${fmt(median(r.runMs.native), 0)} | ${fmt(p90(r.runMs.native), 0)} | ${fmt(Math.min(...r.runMs.native), 0)}–${fmt(Math.max(...r.runMs.native), 0)} |`,
    '', `Ratio of medians tsnet/Docker overlay: **${fmt(ratio(r.runMs.tsnet, r.runMs.native), 2)}** (≤ 1.0); 90 % bootstrap interval over the pairs ${runInterval(r.runMs)}; median of the per-pair ratios ${fmt(median(r.runMs.tsnet.map((t, i) => t / (r.runMs.native[i] as number))), 2)}.`, '',
    `## From a container's start to its first reply from another host (${FIRST} each, interleaved)`, '',
    `Measured inside the new container with /proc/uptime (10 ms steps): from its first instruction to the first ping reply from a container on another host.`, '',
    `- tsnet overlay: median **${fmt(median(r.first.tsnet), 0)} ms** [${fmt(Math.min(...r.first.tsnet), 0)}–${fmt(Math.max(...r.first.tsnet), 0)}] (target ≤ 100 ms)`,
    `- Docker's overlay: median ${fmt(median(r.first.native), 0)} ms [${fmt(Math.min(...r.first.native), 0)}–${fmt(Math.max(...r.first.native), 0)}]`, '',
    '## A node dies (its underlay link cut)', '',
    `- Docker told tsnet (DiscoverDelete) ${fmt(r.death.toldMs, 0)} ms after the cut (memberlist's failure detection, Docker's part);`,
    `- tsnet's entries toward it (flood entry, learned entries, VTEP member) gone **${fmt(r.death.tsnetMs, 0)} ms** after the cut, ${fmt(r.death.tsnetMs - r.death.toldMs, 0)} ms after Docker told (target ≤ 10 s);`,
    `- Docker's overlay's entries toward it gone ${fmt(r.death.nativeMs, 0)} ms after the cut.`, '',
    '## 200 nodes announced to one host (simulation)', '',
    'One host namespace runs `tsnet serve` (global scope) with one overlay network and one container; the nodes\' addresses live in a namespace of their own on its underlay, so every copy leaves the host. '
      + 'A "broadcast" is a frame to a MAC nobody has, which the bridge floods and the VXLAN port copies to every node (what an ARP request costs).', '',
    '| nodes | flood entries | VTEP members | DiscoverNew p50 / p99 ms | time to program the step ms | copies per broadcast | sender µs per broadcast |', '|---|---|---|---|---|---|---|',
    ...r.sim.map((s) => `| ${s.nodes} | ${s.floodEntries} | ${s.vtepMembers} | ${fmt(s.p50, 1)} / ${fmt(s.p99, 1)} | ${fmt(s.total, 0)} | ${fmt(s.copiesPerFrame, 1)} | ${fmt(s.usPerFrame, 1)} |`),
  ]
  return lines
}

await main()
