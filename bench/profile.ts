// Where tsnet's time and memory go, at the size of issue 12's targets: tsnet (dist/cli.js) runs
// under the V8 profiler (bench/lib/profiled-cli.mjs) in a namespace of its own, driven over its
// socket as bench/handlers.ts drives it. Phases, each profiled on its own:
//   create   - PROFILE_ENDPOINTS endpoints (RequestAddress + CreateEndpoint + Join) at concurrency 16
//   c1       - PROFILE_SEQUENCES container lives (the nine calls) one at a time
//   heap     - memory figures and the live heap by object kind
//   boot     - a restart with the kernel intact: start-up, store load, boot reconcile
// A report, not a test: writes bench/results/<date>-profile.md. Run as root after `npm run build`:
//   npm run bench:profile   (PROFILE_NETWORKS, PROFILE_ENDPOINTS, PROFILE_SEQUENCES change the sizes)
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cpuTables, heapTable } from './lib/profile-summary.js'
import { PluginClient } from './lib/plugin-client.js'
import { median } from './lib/stats.js'

const NETWORKS = Number(process.env.PROFILE_NETWORKS ?? 1000)
const ENDPOINTS = Number(process.env.PROFILE_ENDPOINTS ?? 5000)
const SEQUENCES = Number(process.env.PROFILE_SEQUENCES ?? 300)
const dir = '/var/tmp/tsnet-profile'
// Set before the harness is loaded: it reads them once.
process.env.TSE_TSNET_CLI = new URL('lib/profiled-cli.mjs', import.meta.url).pathname
process.env.TSE_TSNET_SANDBOX = '0' // the profiles are written outside the unit's sandbox
const { createEngineNetns, destroyEngine } = await import('../test/e2e/lib/engine.js')
const { startTsnet } = await import('../test/e2e/lib/tsnet.js')
const { mapLimit } = await import('../test/e2e/lib/resilience.js')
const { REPO_ROOT } = await import('../test/e2e/lib/tsnet.js')
const { attach, createNetwork, hexId } = await import('./handlers.js')

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Ends the running profile as `name` (or takes the heap) and waits for the files. */
async function phaseDone(pid: number, name: string): Promise<void> {
  writeFileSync(join(dir, 'phase'), name)
  process.kill(pid, 'SIGUSR2')
  for (let i = 0; i < 600 && !existsSync(join(dir, `${name}.done`)); i++) await sleep(200)
  if (!existsSync(join(dir, `${name}.done`))) throw new Error(`tsnet wrote no ${name} profile`)
}

async function main(): Promise<void> {
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const env = { DOCKER_HOST: '', TSNET_PROFILE_DIR: dir }
  const e = await createEngineNetns('bench-prof')
  const out: string[] = [`# Where tsnet's time goes, ${new Date().toISOString().slice(0, 10)}`, '',
    `tsnet at ${NETWORKS} networks; phases profiled on their own with the V8 sampling profiler (\`npm run bench:profile\`, bench/profile.ts).`,
    'Self: time in the function itself ("(idle)": the event loop waited: for the kernel, the disk, or the next request). Inclusive: with what it called, for tsnet\'s own functions.', '']
  let ts = await startTsnet(e, { logLevel: 'info', env })
  try {
    const c = new PluginClient(ts.socketPath)
    const nets = await mapLimit(8, Array.from({ length: NETWORKS }, (_, k) => k), (k) => createNetwork(c, k))
    await phaseDone(ts.pid, 'networks')
    const t0 = Date.now()
    await mapLimit(16, Array.from({ length: ENDPOINTS }, (_, i) => i), (i) => attach(c, nets[i % nets.length] as (typeof nets)[number]))
    const createMs = Date.now() - t0
    await phaseDone(ts.pid, 'create')
    const perCall = new Map<string, number[]>()
    for (let i = 0; i < SEQUENCES; i++) {
      const n = nets[(i * 7919) % nets.length] as (typeof nets)[number]
      const ep = hexId()
      const ref = { NetworkID: n.id, EndpointID: ep }
      const ports = { 'com.docker.network.portmap': [], 'com.docker.network.endpoint.exposedports': [] }
      const time = async <T>(m: string, body: unknown) => {
        const r = await c.call<T>(m, body)
        const xs = perCall.get(m) ?? []
        xs.push(r.ms)
        perCall.set(m, xs)
        return r.reply
      }
      const { Address } = await time<{ Address: string }>('IpamDriver.RequestAddress', { PoolID: n.poolId, Address: '', Options: {} })
      await time('NetworkDriver.CreateEndpoint', { ...ref, Interface: { Address, AddressIPv6: '', MacAddress: '' }, Options: ports })
      await time('NetworkDriver.Join', { ...ref, SandboxKey: `/var/run/docker/netns/${ep.slice(0, 12)}`, Options: ports })
      await time('NetworkDriver.ProgramExternalConnectivity', { ...ref, Options: ports })
      await time('NetworkDriver.RevokeExternalConnectivity', ref)
      await time('NetworkDriver.Leave', ref)
      await time('NetworkDriver.DeleteEndpoint', ref)
      await time('IpamDriver.ReleaseAddress', { PoolID: n.poolId, Address: Address.split('/')[0] })
    }
    await phaseDone(ts.pid, 'c1')
    // Before the snapshot, which V8 builds in memory of its own.
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${ts.pid}/status`, 'utf8'))?.[1])
    await phaseDone(ts.pid, 'heap')
    c.close()
    await ts.stop()
    const t1 = Date.now()
    ts = await startTsnet(e, { logLevel: 'info', env })
    const c2 = new PluginClient(ts.socketPath)
    await c2.call('NetworkDriver.GetCapabilities', {}) // answered once the boot reconcile is done
    c2.close()
    const bootMs = Date.now() - t1
    await phaseDone(ts.pid, 'boot')

    const own = (n: string) => n.includes('dist/') && !n.includes('node_modules')
    const section = (title: string, file: string, note: string) => {
      const p = cpuTables(join(dir, `${file}.cpuprofile`), 15, own)
      out.push(`## ${title}`, '', `${note} Profile: ${p.totalMs.toFixed(0)} ms.`, '', '| self ms | share | function |', '|---:|---:|---|',
        ...p.self.map((r) => `| ${r.ms.toFixed(0)} | ${(100 * r.share).toFixed(1)} % | \`${r.what}\` |`), '',
        '| inclusive ms | share | tsnet function |', '|---:|---:|---|',
        ...p.inclusive.map((r) => `| ${r.ms.toFixed(0)} | ${(100 * r.share).toFixed(1)} % | \`${r.what}\` |`), '')
    }
    section(`${ENDPOINTS} endpoints at concurrency 16`, 'create', `RequestAddress + CreateEndpoint + Join of each: ${createMs} ms in all.`)
    const p50 = [...perCall].map(([m, xs]) => `${m.split('.')[1]} ${median(xs).toFixed(2)} ms`).join(', ')
    section(`${SEQUENCES} container lives at concurrency 1`, 'c1', `p50 per call: ${p50}.`)
    section('Restart with the kernel intact', 'boot', `From start to the first answer after the boot reconcile: ${bootMs} ms.`)
    const mem = JSON.parse(readFileSync(join(dir, 'memory.json'), 'utf8')) as Record<string, number>
    const heap = heapTable(join(dir, 'heap.heapsnapshot'), 12)
    const mb = (b: number | undefined) => ((b ?? NaN) / 2 ** 20).toFixed(0)
    out.push('## Memory', '', `After the container lives: RSS ${(rssKb / 1024).toFixed(0)} MB; V8 heap ${mb(mem.heapUsed)} MB used of ${mb(mem.heapTotal)} MB; external ${mb(mem.external)} MB. ` +
      `The snapshot's live heap: ${heap.totalMb.toFixed(0)} MB.`, '', '| MB | count | kind |', '|---:|---:|---|',
      ...heap.rows.map((r) => `| ${r.mb.toFixed(1)} | ${r.count} | ${r.what} |`), '')
  } finally {
    await ts.stop().catch(() => undefined)
    await destroyEngine(e)
  }
  const file = join(REPO_ROOT, 'bench', 'results', `${new Date().toISOString().slice(0, 10)}-profile.md`)
  writeFileSync(file, `${out.join('\n')}\n`)
  console.log(out.join('\n'))
  console.log(`written: ${file}`)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
