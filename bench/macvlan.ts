// Container ↔ LAN machine on three paths, in one engine and one run, rounds interleaved:
//   tsnet macvlan           the container's own address on the LAN (tsnet.mode=macvlan)
//   tsnet bridge + -p       a tsnet bridge network, NAT out, a published port in (the host has 192.168.10.2 on the LAN)
//   docker macvlan          Docker's own macvlan driver on the same parent
// The LAN is test/e2e/lib/lan.ts: segment 10 is a bridge in a namespace, the LAN machine
// (192.168.10.50) another namespace on it. Measured per round and path: the container's ping
// round trip to the LAN machine, and iperf3 TCP throughput between them both ways (the LAN
// machine is the client; on the bridge path it connects to the published port).
// A report, not a test: npm run bench:macvlan (as root; BENCH_ROUNDS=5 BENCH_PINGS=300 to change).
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { destroyEngine, ensureBusyboxImage, startEngine } from '../test/e2e/lib/engine.js'
import { LAN_HOST_IP, LAN_HOST_NS, SEGMENTS, createLan } from '../test/e2e/lib/lan.js'
import { runOk } from '../test/e2e/lib/proc.js'
import { REPO_ROOT, startTsnet } from '../test/e2e/lib/tsnet.js'
import { IMAGE, ensureIperf, importNetImage } from './datapath.js'
import { fmt, median, spread } from './lib/stats.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const PINGS = Number(process.env.BENCH_PINGS ?? 300)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)
const HOST_LAN_IP = '192.168.10.2'
const PORT = 5201
const SEG = SEGMENTS[0]!
const log = (s: string) => console.log(`[bench:macvlan] ${s}`)

type PathName = 'tsnet macvlan' | 'tsnet bridge + -p' | 'docker macvlan'
const PATHS: PathName[] = ['tsnet macvlan', 'tsnet bridge + -p', 'docker macvlan']
interface Sample { rttUs: number; rttMinUs: number; toGbps: number; fromGbps: number }

const gbps = (json: string) => (JSON.parse(json) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e9

async function main(): Promise<void> {
  await ensureIperf()
  const e = await startEngine('bench-mv')
  const lan = await createLan(e)
  const rounds: Array<Record<PathName, Sample>> = []
  try {
    await startTsnet(e, { logLevel: 'warn', env: { TSNET_GC_INTERVAL: '0' } })
    await ensureBusyboxImage(e)
    await importNetImage(e)
    // The host's own address on the LAN: the bridge path leaves (NAT) and is reached (published port) through it.
    await lan.engine(['addr', 'add', `${HOST_LAN_IP}/24`, 'dev', SEG.parent])
    await e.dockerOk(['network', 'create', '-d', 'tsnet', '--ipam-driver', 'tsnet', '-o', 'tsnet.mode=macvlan', '-o', `parent=${SEG.parent}`,
      '--subnet', SEG.subnet, '--gateway', SEG.router, '--ip-range', '192.168.10.128/25', 'tmv'])
    await e.dockerOk(['network', 'create', '-d', 'tsnet', '--ipam-driver', 'tsnet', '--subnet', '10.230.0.0/24', 'tbr'])
    await e.dockerOk(['network', 'create', '-d', 'macvlan', '-o', `parent=${SEG.parent}`, '--subnet', SEG.subnet, '--gateway', SEG.router,
      '--ip-range', '192.168.10.64/26', 'dmv'])
    const target: Record<PathName, { c: string; addr: string }> = {
      'tsnet macvlan': { c: 'cm', addr: '192.168.10.131' },
      'tsnet bridge + -p': { c: 'cb', addr: HOST_LAN_IP },
      'docker macvlan': { c: 'cd', addr: '192.168.10.70' },
    }
    await e.dockerOk(['run', '-d', '--name', 'cm', '--network', 'tmv', '--ip', '192.168.10.131', IMAGE, '/bin/sleep', '1000000'])
    await e.dockerOk(['run', '-d', '--name', 'cb', '--network', 'tbr', '-p', `${PORT}:${PORT}`, IMAGE, '/bin/sleep', '1000000'])
    await e.dockerOk(['run', '-d', '--name', 'cd', '--network', 'dmv', '--ip', '192.168.10.70', IMAGE, '/bin/sleep', '1000000'])
    const fromLan = (args: string[]) => runOk('nsenter', [`--net=/run/netns/${LAN_HOST_NS}`, '--', 'iperf3', ...args], { timeoutMs: 60_000 })
    for (let r = 0; r < ROUNDS; r++) {
      const sample = {} as Record<PathName, Sample>
      const order = r % 2 ? [...PATHS].reverse() : PATHS
      for (const p of order) {
        const { c, addr } = target[p]
        const out = await e.dockerOk(['exec', c, 'ping', '-A', '-q', '-c', String(PINGS), LAN_HOST_IP])
        const m = /= ([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(out)
        if (!m) throw new Error(`no ping summary: ${out}`)
        const run = async (reverse: boolean) => {
          await e.dockerOk(['exec', '-d', c, 'iperf3', '-s', '-1', '-p', String(PORT)])
          await new Promise((res) => setTimeout(res, 300))
          return gbps((await fromLan(['-c', addr, '-p', String(PORT), '-t', String(SECONDS), '-J', ...(reverse ? ['-R'] : [])])).stdout)
        }
        sample[p] = { rttUs: Number(m[2]) * 1000, rttMinUs: Number(m[1]) * 1000, toGbps: await run(false), fromGbps: await run(true) }
      }
      rounds.push(sample)
      log(`round ${r + 1}: ` + PATHS.map((p) => `${p} ${sample[p].rttUs.toFixed(0)} µs, ${sample[p].toGbps.toFixed(2)}/${sample[p].fromGbps.toFixed(2)} Gbit/s`).join('; '))
    }
  } finally {
    await destroyEngine(e)
    await lan.destroy()
  }
  report(rounds)
}

function report(rounds: Array<Record<PathName, Sample>>): void {
  const col = (p: PathName, k: keyof Sample) => rounds.map((r) => r[p][k])
  const ratio = (p: PathName, k: keyof Sample) => fmt(median(col(p, k)) / median(col('tsnet macvlan', k)), 2)
  const date = new Date().toISOString().slice(0, 10)
  const lines = [
    `# Macvlan: container ↔ LAN machine (${date})`,
    '',
    `${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), shared with other work: read the spread, not only the median.`,
    `${ROUNDS} rounds, paths interleaved (order reversed every other round); per round and path: \`ping -A -c ${PINGS}\` from the`,
    `container to the LAN machine, and iperf3 TCP for ${SECONDS} s each way with the LAN machine as the client (to the container's`,
    'own address on the macvlan paths, to the published port on the host\'s LAN address on the bridge path). The LAN is a',
    'Linux bridge in a namespace of its own (test/e2e/lib/lan.ts); the parent is a veth into it. Run: `npm run bench:macvlan`.',
    '',
    '| path | round trip µs, median [min–max] of round averages | best single ping µs | LAN → container Gbit/s | container → LAN Gbit/s |',
    '|---|---|---|---|---|',
    ...PATHS.map((p) => `| ${p} | ${spread(col(p, 'rttUs'), 0)} | ${fmt(Math.min(...col(p, 'rttMinUs')), 0)} | ${spread(col(p, 'toGbps'), 2)} | ${spread(col(p, 'fromGbps'), 2)} |`),
    '',
    'Relative to tsnet macvlan (ratio of medians; round trip below 1 and throughput above 1 mean faster than tsnet macvlan):',
    '',
    '| path | round trip | LAN → container | container → LAN |',
    '|---|---|---|---|',
    ...PATHS.map((p) => `| ${p} | ×${ratio(p, 'rttUs')} | ×${ratio(p, 'toGbps')} | ×${ratio(p, 'fromGbps')} |`),
    '',
    '## Rounds',
    '',
    '| round | ' + PATHS.map((p) => `${p}: µs, in/out Gbit/s`).join(' | ') + ' |',
    '|---|' + PATHS.map(() => '---|').join(''),
    ...rounds.map((r, i) => `| ${i + 1} | ` + PATHS.map((p) => `${fmt(r[p].rttUs, 0)}, ${fmt(r[p].toGbps, 2)}/${fmt(r[p].fromGbps, 2)}`).join(' | ') + ' |'),
    '',
  ]
  const dir = join(REPO_ROOT, 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `macvlan-${date}.md`)
  writeFileSync(file, lines.join('\n'))
  console.log(lines.join('\n'))
  log(`written to ${file}`)
}

await main()
