// Creating and deleting a veth pair over tsnet's in-process netlink client against spawning
// `ip link add` / `ip link del` from Node, interleaved pair by pair, in a namespace of its own.
// A report, not a test: it prints medians and p90s in milliseconds.
//   node --import @tapjs/typescript/import bench/netlink-veth.ts   (as root; BENCH_PAIRS=100)
//
// A netlink socket belongs to the namespace of the process that opens it, so the script re-runs
// itself under `nsenter --net=` (with the same loader flags) and removes the namespace afterwards.
import { execFile, execFileSync, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { createLink, deleteLink, Rtnl } from '../src/host/netlink/index.js'
import { fmt, median, p90 } from './lib/stats.js'

const PAIRS = Number(process.env.BENCH_PAIRS ?? 100)
const run = promisify(execFile)

async function inside(): Promise<void> {
  const rtnl = new Rtnl()
  const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6
  const sample = { nlCreate: [] as number[], nlDelete: [] as number[], ipCreate: [] as number[], ipDelete: [] as number[] }
  // Warm both paths once (socket open, first exec of ip) so neither pays a one-off cost in the sample.
  await createLink(rtnl, { kind: 'veth', name: 'warm0', peer: { name: 'warm0p' } })
  await deleteLink(rtnl, 'warm0')
  await run('ip', ['link', 'add', 'name', 'warm1', 'type', 'veth', 'peer', 'name', 'warm1p'])
  await run('ip', ['link', 'del', 'dev', 'warm1'])
  for (let i = 0; i < PAIRS; i++) {
    let t0 = process.hrtime.bigint()
    await createLink(rtnl, { kind: 'veth', name: 'bnl0', mtu: 1450, peer: { name: 'bnl0p', mac: '02:42:0a:00:00:02', mtu: 1450 } })
    sample.nlCreate.push(ms(t0))
    t0 = process.hrtime.bigint()
    await deleteLink(rtnl, 'bnl0')
    sample.nlDelete.push(ms(t0))

    t0 = process.hrtime.bigint()
    await run('ip', ['link', 'add', 'name', 'bip0', 'mtu', '1450', 'type', 'veth', 'peer', 'name', 'bip0p', 'mtu', '1450', 'address', '02:42:0a:00:00:02'])
    sample.ipCreate.push(ms(t0))
    t0 = process.hrtime.bigint()
    await run('ip', ['link', 'del', 'dev', 'bip0'])
    sample.ipDelete.push(ms(t0))
  }
  rtnl.close()
  const row = (what: string, xs: number[]) => `| ${what} | ${fmt(median(xs), 2)} | ${fmt(p90(xs), 2)} |`
  const sum = (a: number[], b: number[]) => a.map((x, i) => x + (b[i] ?? 0))
  console.log(`veth pair, ${PAIRS} times each, interleaved (ms)\n`)
  console.log('| operation | median | p90 |\n|---|---|---|')
  console.log(row('create, netlink', sample.nlCreate))
  console.log(row('create, ip spawned', sample.ipCreate))
  console.log(row('delete, netlink', sample.nlDelete))
  console.log(row('delete, ip spawned', sample.ipDelete))
  console.log(row('create+delete, netlink', sum(sample.nlCreate, sample.nlDelete)))
  console.log(row('create+delete, ip spawned', sum(sample.ipCreate, sample.ipDelete)))
}

function outside(): void {
  const ns = `tsbench-nl-${process.pid}`
  execFileSync('ip', ['netns', 'add', ns])
  try {
    const r = spawnSync('nsenter', [`--net=/run/netns/${ns}`, process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), '--inside'], { stdio: 'inherit' })
    process.exitCode = r.status ?? 1
  } finally {
    execFileSync('ip', ['netns', 'del', ns])
  }
}

if (process.argv.includes('--inside')) await inside()
else outside()
