// Issue 14's bench on real engines: tsnet's cluster networks (plain Docker hosts on etcd) against
// tsnet's Swarm mode, Docker's overlay and raw VXLAN with no firewall (the limit), in one run on one
// underlay; the time from `docker run` on one host to the first reply from a container on another;
// 1,000 endpoints across three hosts (entries per host, memory, convergence) and a host's death.
// A report, not a test: it prints ratios and writes bench/results/<date>-cluster-hosts.md. As root,
// under the e2e lock (it starts engines):
//   npm run build && flock /tmp/tsnet-e2e.lock npm run bench:cluster-hosts    (BENCH_QUICK=1: a smoke run)
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { REPO_ROOT } from '../test/e2e/lib/tsnet.js'
import type { Engine } from '../test/e2e/lib/engine.js'
import { pingStats, type EtcdHost } from '../test/e2e/lib/etcd-hosts.js'
import { waitFor } from '../test/e2e/lib/wait.js'
import { ensureIperf } from './datapath.js'
import { samplePath, type Sample } from './lib/path-sample.js'
import { addEndpoints, createEtcdHosts, entryCounts, ETCD_PLUGIN, pluginRssMb, timedRun } from './lib/cluster-hosts-lab.js'
import { createCluster, PLUGIN } from './lib/overlay-cluster.js'
import { fmt, median, p99, spread } from './lib/stats.js'

const QUICK = process.env.BENCH_QUICK === '1'
const ROUNDS = QUICK ? 2 : 8
const PINGS = QUICK ? 50 : 200
const STARTS = QUICK ? 6 : 50
const COMPARE_STARTS = QUICK ? 3 : 20
const ENDPOINTS = QUICK ? 60 : 1000
const IMAGE = 'bench-net:latest'
const log = (s: string) => console.log(`[bench] ${s}`)
type Path = 'cluster' | 'swarm' | 'native' | 'raw'
const PATHS: Path[] = ['cluster', 'swarm', 'native', 'raw']
const LABEL: Record<Path, string> = { cluster: 'tsnet cluster network (etcd)', swarm: 'tsnet Swarm overlay', native: "Docker's overlay", raw: 'raw VXLAN (limit)' }
interface Start { hostMs: number; insideMs: number }

async function main(): Promise<void> {
  await ensureIperf()
  const started = Date.now()
  const c = await createCluster('bw', log, ['TSNET_LOG_LEVEL=info'])
  let lab: Awaited<ReturnType<typeof createEtcdHosts>> | undefined
  const out: string[] = []
  try {
    lab = await createEtcdHosts(c.underlay, 'bw', log)
    const [A, B] = c.nodes as [typeof c.nodes[0], typeof c.nodes[0]]
    const [D, E, F] = lab.hosts as [EtcdHost, EtcdHost, EtcdHost]
    await A.e.dockerOk(['network', 'create', '-d', PLUGIN, '--attachable', '--subnet', '10.210.0.0/24', 'ov'])
    await A.e.dockerOk(['network', 'create', '-d', 'overlay', '--attachable', '--subnet', '10.211.0.0/24', 'nat'])
    for (const h of [D, E, F]) {
      await h.e.dockerOk(['network', 'create', '-d', ETCD_PLUGIN, '--ipam-driver', ETCD_PLUGIN, '-o', 'tsnet.overlay=web', '--ipam-opt', 'tsnet.overlay=web', '--subnet', '10.220.0.0/21', 'web'])
    }
    const daemons: Array<[Engine, string, string]> = [[A.e, 's1', 'ov'], [B.e, 's2', 'ov'], [A.e, 'n1', 'nat'], [B.e, 'n2', 'nat'], [D.e, 'k1', 'web'], [E.e, 'k2', 'web']]
    for (const [e, name, net] of daemons) await e.dockerOk(['run', '-d', '--name', name, '--network', net, IMAGE, '/bin/sleep', '1000000'])
    const ipOf = (e: Engine, name: string, net: string) => e.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, name])
    const target: Record<Path, string> = { cluster: await ipOf(E.e, 'k2', 'web'), swarm: await ipOf(B.e, 's2', 'ov'), native: await ipOf(B.e, 'n2', 'nat'), raw: c.raw.ips[1] as string }
    const client: Record<Exclude<Path, 'raw'>, [Engine, string, Engine, string]> = { cluster: [D.e, 'k1', E.e, 'k2'], swarm: [A.e, 's1', B.e, 's2'], native: [A.e, 'n1', B.e, 'n2'] }
    for (const p of ['cluster', 'swarm', 'native'] as const) {
      const [e, from] = client[p]
      await waitFor(async () => (await e.docker(['exec', from, 'ping', '-c1', '-W1', target[p]])).code === 0, { timeoutMs: 30_000, what: `${from} to reach ${target[p]}` })
    }

    // ---- round trip and throughput, interleaved (the order rotates every round)
    const rounds: Array<Record<Path, Sample>> = []
    for (let r = 0; r < ROUNDS; r++) {
      const order = PATHS.map((_, i) => PATHS[(i + r) % PATHS.length] as Path)
      const sample = {} as Record<Path, Sample>
      for (const p of order) sample[p] = await samplePath(target[p], PINGS, p === 'raw' ? undefined : client[p], c.raw.ctrs as [Engine, Engine])
      rounds.push(sample)
      log(`round ${r + 1}: ` + PATHS.map((p) => `${p} ${fmt(sample[p].rttAvgUs, 0)} µs ${fmt(sample[p].gbps, 2)} Gbit/s`).join(', '))
    }

    // ---- from `docker run` on one host to the first reply from a container on another
    const starts: Record<Exclude<Path, 'raw'>, Start[]> = { cluster: [], swarm: [], native: [] }
    const failed: Record<Exclude<Path, 'raw'>, number> = { cluster: 0, swarm: 0, native: 0 }
    for (let i = 0; i < STARTS; i++) {
      const which = (i < COMPARE_STARTS ? (['cluster', 'swarm', 'native'] as const) : (['cluster'] as const))
      for (const p of i % 2 ? [...which].reverse() : which) {
        const [e] = client[p]
        const net = p === 'cluster' ? 'web' : p === 'swarm' ? 'ov' : 'nat'
        // Pings every 5 ms from the first instruction; grep ends the container at the first reply.
        const r = await timedRun(e, ['--rm', '--network', net, IMAGE, '/bin/sh', '-c', `ping -i 0.005 -w 3 ${target[p]} | grep -m1 'bytes from'`])
        const m = /seq=(\d+) .*time=([\d.]+) ms/.exec(r.out)
        if (r.code !== 0 || !m) { failed[p]++; continue }
        starts[p].push({ hostMs: r.firstLineMs, insideMs: Number(m[1]) * 5 + Number(m[2]) })
      }
    }
    log(`first reply: cluster p50 ${fmt(median(starts.cluster.map((s) => s.hostMs)), 0)} ms from docker run, ${fmt(median(starts.cluster.map((s) => s.insideMs)), 0)} ms inside; failed ${JSON.stringify(failed)}`)

    // ---- 1,000 endpoints across the three hosts
    const scale = await endpointsAcross([D, E, F], log)

    // ---- a host's death with its endpoints on the others
    const death = await hostDeath(c.underlay, [D, E, F], target.cluster, scale.vxlan)

    out.push(...report({ rounds, starts, failed, scale, death, minutes: (Date.now() - started) / 60000 }))
  } finally {
    await lab?.destroy()
    await c.destroy()
  }
  const text = out.join('\n') + '\n'
  console.log(text)
  const dir = join(REPO_ROOT, 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `${new Date().toISOString().slice(0, 10)}-cluster-hosts${QUICK ? '-quick' : ''}.md`)
  writeFileSync(file, text)
  log(`wrote ${file}`)
}

const vxlanOf = async (h: EtcdHost) => `tsvx-${(await h.e.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'web'])).slice(0, 10)}`

/** ENDPOINTS endpoints spread over the hosts at once; the time until every host programmed every other's. */
async function endpointsAcross(hosts: EtcdHost[], say: (s: string) => void) {
  const vxlan = await Promise.all(hosts.map(vxlanOf))
  const rssBefore = hosts.map(pluginRssMb)
  const each = hosts.map((_, i) => Math.floor(ENDPOINTS / hosts.length) + (i < ENDPOINTS % hosts.length ? 1 : 0))
  const containers = [1, 1, 0] // k1 on the first host, k2 on the second
  const total = each.reduce((a, b) => a + b, 0) + 2
  const t0 = Date.now()
  await Promise.all(hosts.map(async (h, i) => addEndpoints(h, await h.e.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'web']), 'cluster/web/4', each[i] as number)))
  const createdMs = Date.now() - t0
  const expected = hosts.map((_, i) => total - (each[i] as number) - (containers[i] as number))
  await waitFor(async () => (await Promise.all(hosts.map((h, i) => entryCounts(h.e, vxlan[i] as string)))).every((n, i) => n.fdbToPeers >= (expected[i] as number)),
    { timeoutMs: 300_000, intervalMs: 250, what: 'every host to program every other host\'s endpoints' })
  const convergedMs = Date.now() - t0
  const counts = await Promise.all(hosts.map((h, i) => entryCounts(h.e, vxlan[i] as string)))
  await new Promise((res) => setTimeout(res, 5000)) // settle: renders and keepalives after the burst
  const rssAfter = hosts.map(pluginRssMb)
  say(`${ENDPOINTS} endpoints made in ${createdMs} ms, programmed everywhere after ${convergedMs} ms`)
  return { vxlan, each, expected, createdMs, convergedMs, counts, rssBefore, rssAfter }
}

/** Cuts the last host off the underlay (a power cut as the others see it): when its entries go, and what the others' own traffic sees meanwhile. */
async function hostDeath(u: { cut(e: Engine): Promise<void> }, hosts: EtcdHost[], k2: string, vxlan: string[]) {
  const [D, E, F] = hosts as [EtcdHost, EtcdHost, EtcdHost]
  const before = await Promise.all([D, E].map((h, i) => entryCounts(h.e, vxlan[i] as string)))
  const toF = before.map((n) => n.byVtep.get(F.ip) ?? 0)
  const ping = D.e.docker(['exec', 'k1', 'ping', '-i', '0.1', '-w', '25', k2], { timeoutMs: 60_000 })
  await new Promise((res) => setTimeout(res, 1000))
  const t0 = Date.now()
  await u.cut(F.e)
  const gone: number[] = [NaN, NaN]
  while (Date.now() - t0 < 60_000 && gone.some(Number.isNaN)) {
    const now = await Promise.all([D, E].map((h, i) => entryCounts(h.e, vxlan[i] as string)))
    now.forEach((n, i) => { if (Number.isNaN(gone[i]) && (n.byVtep.get(F.ip) ?? 0) === 0) gone[i] = Date.now() - t0 })
    await new Promise((res) => setTimeout(res, 200))
  }
  const after = await Promise.all([D, E].map((h, i) => entryCounts(h.e, vxlan[i] as string)))
  const stats = pingStats((await ping).stdout)
  return { toF, goneMs: gone, after: after.map((n) => n.fdbToPeers), ping: stats }
}

function report(r: {
  rounds: Array<Record<Path, Sample>>; starts: Record<Exclude<Path, 'raw'>, Start[]>; failed: Record<Exclude<Path, 'raw'>, number>
  scale: Awaited<ReturnType<typeof endpointsAcross>>; death: Awaited<ReturnType<typeof hostDeath>>; minutes: number
}): string[] {
  const sh = (cmd: string, args: string[]) => { try { return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim().split('\n')[0] ?? '' } catch { return '?' } }
  const col = (p: Path, k: keyof Sample) => r.rounds.map((x) => x[p][k])
  const perRound = (a: Path, b: Path, k: keyof Sample) => median(r.rounds.map((x) => x[a][k] / x[b][k]))
  const st = (p: Exclude<Path, 'raw'>, k: keyof Start) => r.starts[p].map((s) => s[k])
  const startRow = (p: Exclude<Path, 'raw'>) => `| ${LABEL[p]} | ${r.starts[p].length} | ${fmt(median(st(p, 'hostMs')), 0)} / ${fmt(p99(st(p, 'hostMs')), 0)} | ${fmt(median(st(p, 'insideMs')), 0)} / ${fmt(p99(st(p, 'insideMs')), 0)} / ${fmt(Math.max(...st(p, 'insideMs')), 0)} | ${r.failed[p]} |`
  const s = r.scale
  return [
    `# tsnet cluster networks on real hosts, ${new Date().toISOString().slice(0, 10)}`, '',
    `Six engines (Docker 20.10) in namespaces of one machine on one underlay bridge (MTU 1500): three in a swarm with tsnet's Swarm plugin and Docker's overlay, three on one etcd member with tsnet's managed plugin (cluster network \`web\`), and a raw VXLAN pair with no firewall. `
      + `tsnet ${sh('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'])}; ${r.minutes.toFixed(1)} minutes; load average at the end ${sh('cat', ['/proc/loadavg'])}.`, '',
    `## Round trip (busybox ping -A, ${PINGS} per round) and TCP throughput (iperf3, 3 s), ${ROUNDS} interleaved rounds`, '',
    '| path | rtt avg µs | rtt min µs | Gbit/s |', '|---|---|---|---|',
    ...PATHS.map((p) => `| ${LABEL[p]} | ${spread(col(p, 'rttAvgUs'), 0)} | ${fmt(median(col(p, 'rttMinUs')), 0)} | ${spread(col(p, 'gbps'), 2)} |`),
    '', 'Ratios (median of the same-round ratios):', '',
    ...(['swarm', 'native', 'raw'] as const).map((b) => `- cluster / ${LABEL[b]}: round trip **${fmt(perRound('cluster', b, 'rttAvgUs'), 2)}**, throughput **${fmt(perRound('cluster', b, 'gbps'), 2)}**`),
    `- Swarm overlay / Docker's overlay: round trip ${fmt(perRound('swarm', 'native', 'rttAvgUs'), 2)}, throughput ${fmt(perRound('swarm', 'native', 'gbps'), 2)}; Swarm overlay / raw VXLAN: round trip ${fmt(perRound('swarm', 'raw', 'rttAvgUs'), 2)}`, '',
    `## From \`docker run\` on one host to the first reply from a container on another`, '',
    'The new container pings a container on another host every 5 ms from its first instruction and ends at the first reply. '
      + '"From docker run": from starting `docker run` to the reply line on its output (image and container creation included). '
      + '"Inside": from the container\'s first ping to the reply (5 ms × the first answered sequence number + its round trip): how long the new endpoint waited for the other host to know it.', '',
    '| network | starts | from docker run p50 / p99 ms | inside p50 / p99 / max ms | no reply within 3 s |', '|---|---|---|---|---|',
    startRow('cluster'), startRow('swarm'), startRow('native'), '',
    `Issue 14's target: p99 ≤ 200 ms (cluster, ${r.starts.cluster.length} starts); issue 13's: first reply ≤ 100 ms after the container starts (Swarm overlay, inside).`, '',
    `## ${ENDPOINTS} endpoints across three hosts`, '',
    `Made through each plugin's socket as Docker makes them (RequestAddress, CreateEndpoint; ${s.each.join(' + ')} on the three hosts at once, 8 at a time per host; no container behind them), plus the two containers above.`, '',
    `- all made in ${fmt(s.createdMs / 1000, 1)} s; **every host had every other host's endpoints ${fmt(s.convergedMs / 1000, 1)} s after the first call**`,
    '', '| host | its endpoints | FDB entries to other hosts | neighbour entries | plugin RSS before → after MB |', '|---|---|---|---|---|',
    ...s.counts.map((n, i) => `| ${['d', 'e', 'f'][i]} | ${(s.each[i] as number) + ([1, 1, 0][i] as number)} | ${n.fdbToPeers} (expected ${s.expected[i]}) | ${n.neigh} | ${fmt(s.rssBefore[i] as number, 0)} → ${fmt(s.rssAfter[i] as number, 0)} |`),
    '', '## A host dies (its underlay link cut), with its endpoints programmed on the others', '',
    `- entries toward it before: ${r.death.toF.join(' and ')} on the two others; **gone ${r.death.goneMs.map((x) => `${fmt(x / 1000, 1)} s`).join(' and ')}** after the cut (lease TTL 10 s + a 3 s hold; target ≤ 15 s)`,
    `- the others' own traffic meanwhile (ping every 0.1 s between them for 25 s): ${r.death.ping ? `${r.death.ping.received}/${r.death.ping.sent} answered` : 'no summary'}`,
    `- FDB entries to other hosts left afterwards: ${r.death.after.join(' and ')}`,
  ]
}

await main()
