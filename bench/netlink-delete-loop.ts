// How long deleting links blocks Node's event loop: N veth pairs or N macvlan children deleted
// through deleteLink, one after another (awaited) and all at once (as a scale-down does), while a
// 1 ms interval timer measures how late the loop runs. A report, not a test.
//   sudo node --import @tapjs/typescript/import bench/netlink-delete-loop.ts
//   BENCH_LINKS=10 BENCH_RUNS=5 BENCH_PATHS=inline,worker (the paths compared, when the Rtnl has them)
//
// A netlink socket belongs to the namespace of the process that opens it, so the script re-runs
// itself under `ip netns exec` in a namespace of its own and removes the namespace afterwards.
import { execFileSync, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createLink, deleteLink, Rtnl, setLink, type RtnlOptions } from '../src/host/netlink/index.js'
import { fmt, median, spread } from './lib/stats.js'

const LINKS = Number(process.env.BENCH_LINKS ?? 10)
const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const PATHS = (process.env.BENCH_PATHS ?? 'default').split(',')

/**
 * Lateness of a 1 ms interval timer. Each tick is a little late even on an idle loop (timer
 * jitter, ~0.1 ms), so stalls are the ticks 2 ms or more late: their sum is the time the loop
 * could not run anything else.
 */
function lagProbe() {
  let last = performance.now()
  let stalled = 0
  let worst = 0
  const timer = setInterval(() => {
    const now = performance.now()
    const late = Math.max(0, now - last - 1)
    if (late >= 2) stalled += late
    worst = Math.max(worst, late)
    last = now
  }, 1)
  return {
    stop: async () => {
      await new Promise((r) => setTimeout(r, 3)) // one more tick, so a block at the very end is counted
      clearInterval(timer)
      return { stalled, worst }
    },
  }
}

interface Sample { wall: number; stalled: number; worst: number; setLink?: number }

/**
 * Deletes LINKS links of a kind, awaited one by one or all at once. With `busy`, this thread
 * meanwhile changes another link (RTM_NEWLINK, which needs the kernel's rtnl lock too) again and
 * again, and the slowest of those changes is reported: what a concurrent CreateEndpoint would see.
 */
async function phase(rtnl: Rtnl, kind: 'veth' | 'macvlan', together: boolean, busy = false): Promise<Sample> {
  const names = Array.from({ length: LINKS }, (_, i) => `tslp${kind === 'veth' ? 'v' : 'm'}${i}`)
  for (const name of names) {
    if (kind === 'veth') await createLink(rtnl, { kind: 'veth', name, peer: { name: `${name}p` } })
    else await createLink(rtnl, { kind: 'macvlan', name, parent: 'tslpbase' })
  }
  await new Promise((r) => setTimeout(r, 20)) // let the creates settle out of the window
  const probe = lagProbe()
  let done = false
  let slowest = 0
  const changes = (async () => {
    while (busy && !done) {
      const t = performance.now()
      await setLink(rtnl, 'tslpbase', { mtu: 1500 })
      slowest = Math.max(slowest, performance.now() - t)
    }
  })()
  const t0 = performance.now()
  if (together) await Promise.all(names.map((n) => deleteLink(rtnl, n)))
  else for (const n of names) await deleteLink(rtnl, n)
  const wall = performance.now() - t0
  done = true
  await changes
  return { wall, ...(await probe.stop()), ...(busy ? { setLink: slowest } : {}) }
}

/** The probe on an idle loop, for as long as a deletion phase lasts: the floor of its numbers. */
async function idle(ms: number): Promise<Sample> {
  const probe = lagProbe()
  await new Promise((r) => setTimeout(r, ms))
  return { wall: ms, ...(await probe.stop()) }
}

async function inside(): Promise<void> {
  const rtnls = new Map(PATHS.map((p) => {
    const opts: RtnlOptions = p === 'default' ? {} : { offThread: p === 'worker' }
    return [p, new Rtnl(opts)] as const
  }))
  const first = [...rtnls.values()][0]!
  await createLink(first, { kind: 'veth', name: 'tslpbase', peer: { name: 'tslpbasep' }, up: true })
  // Warm each path once (socket open, a worker's start) so no path pays a one-off cost in the sample.
  for (const rtnl of rtnls.values()) {
    await createLink(rtnl, { kind: 'veth', name: 'tslpwarm', peer: { name: 'tslpwarmp' } })
    await deleteLink(rtnl, 'tslpwarm')
  }
  const rows: string[] = []
  const row = (what: string, p: string, xs: Sample[]) => rows.push(`| ${what} | ${p} | ${spread(xs.map((x) => x.wall))} | ${spread(xs.map((x) => x.stalled))} | ${fmt(median(xs.map((x) => x.stalled / LINKS)), 1)} | ${spread(xs.map((x) => x.worst))} | ${xs[0]?.setLink === undefined ? '' : spread(xs.map((x) => x.setLink!))} |`)
  const idles: Sample[] = []
  for (let r = 0; r < RUNS; r++) idles.push(await idle(150))
  row('nothing (idle loop, 150 ms)', '-', idles)
  const phases = [['veth', false, false], ['veth', true, false], ['macvlan', false, false], ['macvlan', true, false], ['veth', true, true]] as const
  for (const [kind, together, busy] of phases) {
    const samples = new Map<string, Sample[]>(PATHS.map((p) => [p, []]))
    for (let r = 0; r < RUNS; r++) {
      // Paths take turns going first, so a drift of the machine is shared.
      for (const p of r % 2 ? [...PATHS].reverse() : PATHS) samples.get(p)!.push(await phase(rtnls.get(p)!, kind, together, busy))
    }
    const what = `${kind}, ${together ? 'all at once' : 'one by one'}${busy ? ', setLink loop meanwhile' : ''}`
    for (const [p, xs] of samples) row(what, p, xs)
  }
  await deleteLink(first, 'tslpbase')
  for (const rtnl of rtnls.values()) rtnl.close()
  console.log(`${LINKS} links deleted per run, ${RUNS} runs; median [min–max] in ms\n`)
  console.log('| deleted | path | wall time | loop stalled (sum of stalls ≥ 2 ms) | stalled per deletion (median) | longest stall | slowest setLink meanwhile |')
  console.log('|---|---|---|---|---|---|---|')
  console.log(rows.join('\n'))
}

function outside(): void {
  const ns = `tslp-${process.pid}`
  execFileSync('ip', ['netns', 'add', ns])
  try {
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), '--inside'], { stdio: 'inherit' })
    process.exitCode = r.status ?? 1
  } finally {
    execFileSync('ip', ['netns', 'del', ns])
  }
}

if (process.argv.includes('--inside')) await inside()
else outside()
