// Issue 14's scale simulation, measured: one real tsnet host programs the endpoints of up to 200
// simulated hosts (25 endpoints each) that register in a real etcd as real hosts would. A
// report, not a test: it prints a table and writes bench/results/<date>-cluster-scale.md. Run as
// root after `npm run build`, under the machine-wide lock:
//   flock /tmp/tsnet-e2e.lock npm run bench:cluster
// Settings (environment): BENCH_CLUSTER_STEPS (default 50,100,200 hosts, each from zero),
// BENCH_CLUSTER_ETCD (members, default 1), BENCH_CLUSTER_PROFILE=1 (tsnet under the V8 profiler
// for the largest step's convergence: slower, not for the figures).
//
// The lab, all in namespaces this bench makes (swept with their processes on any exit):
//   bcl-ul   the underlay: a bridge, 10.253.0.0/24
//   bcl-h    the tsnet host, 10.253.0.1: `tsnet serve --etcd-endpoints http://10.253.0.10:2379`
//            driven over its socket as Docker drives it; its kernel is watched by netlink events
//   bcl-e0   etcd, 10.253.0.10 (bcl-e1, bcl-e2 at .11, .12 with three members)
//   bcl-s    the simulated hosts (bench/lib/cluster-sim.ts), 10.253.0.20
// The simulated hosts' VTEPs (10.97.0.0/16) exist nowhere: tsnet only writes FDB and neighbour
// entries pointing at them. Nothing sends a frame to those entries (no container is behind the
// local endpoints); the VXLAN device's transmit counters are read at the end to show it.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { fmt, median, p99 } from './lib/stats.js'

const STEPS = (process.env.BENCH_CLUSTER_STEPS ?? '50,100,200').split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0 && n <= 250)
const PER_HOST = 25
const CHANGES = 25
const MEMBERS = Number(process.env.BENCH_CLUSTER_ETCD ?? 1) === 3 ? 3 : 1
const PROFILE = process.env.BENCH_CLUSTER_PROFILE === '1'
const PROFILE_DIR = '/var/tmp/tsnet-cluster-profile'
const NET = 'sim'
const POOL = '10.96.0.0/16'
const LOCAL_ENDPOINTS = 3
const CONVERGE_TIMEOUT_MS = Number(process.env.BENCH_CLUSTER_TIMEOUT_S ?? 600) * 1000
/** How long to wait for tsnet to finish its work after the kernel converged. */
const QUIET_CAP_MS = Number(process.env.BENCH_CLUSTER_QUIET_CAP_S ?? 900) * 1000
if (PROFILE) {
  // Read once by the harness when it loads (below).
  process.env.TSE_TSNET_CLI = new URL('lib/profiled-cli.mjs', import.meta.url).pathname
  process.env.TSE_TSNET_SANDBOX = '0' // the profile is written outside the unit's sandbox
}
const { createEngineNetns, destroyEngine, nsExec, nsExecOk } = await import('../test/e2e/lib/engine.js')
const { createUnderlay } = await import('../test/e2e/lib/underlay.js')
const { startTsnet, pluginPost, REPO_ROOT } = await import('../test/e2e/lib/tsnet.js')
const { PluginClient } = await import('./lib/plugin-client.js')
const { KernelTable } = await import('./lib/fdb-watch.js')
const { SimHosts } = await import('./lib/cluster-sim-client.js')
const { etcdMissing, metric, metricAll, startEtcd } = await import('./lib/cluster-etcd.js')
const { hexId } = await import('./handlers.js')
const { cpuTables } = await import('./lib/profile-summary.js')
type Engine = import('../test/e2e/lib/engine.js').Engine
type Snapshot = import('./lib/cluster-sim-client.js').EtcdSnapshot
type SimEndpoint = import('./lib/cluster-sim-client.js').SimEndpoint

const log = (s: string) => console.log(`[bench:cluster] ${s}`)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const ms = (a: bigint | string, b: bigint | string) => Number(BigInt(b) - BigInt(a)) / 1e6
const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim() || 100)

/** tsnet's memory and CPU from /proc. */
function proc(pid: number) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN)
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024, cpuMs: (Number(f[11]) + Number(f[12])) * TICK_MS }
}
/** Resets VmHWM to the current RSS, so the next reading is this phase's peak. */
const resetPeak = (pid: number) => writeFileSync(`/proc/${pid}/clear_refs`, '5')

/** Waits until tsnet has used under 10% of a CPU for a whole second (its queued work is done); how long and how much CPU that took. */
async function quiet(pid: number, from: number, maxMs: number): Promise<{ afterMs: number; cpuMs: number; capped: boolean }> {
  const t0 = Date.now()
  let last = proc(pid).cpuMs
  let calm = 0
  while (Date.now() - t0 < maxMs) {
    await sleep(250)
    const cpu = proc(pid).cpuMs
    calm = cpu - last < 25 ? calm + 1 : 0
    last = cpu
    if (calm >= 4) return { afterMs: Date.now() - t0 - 1000, cpuMs: last - from, capped: false }
  }
  return { afterMs: Date.now() - t0, cpuMs: last - from, capped: true }
}

interface Sample { s: number; tsnetCpu: number; etcdCpu: number; simCpu: number; fdb: number; neigh: number }
interface StatusProbe { s: number; ms: number; remote: number; registered: boolean; error?: string }
const cpuOf = (pid: number | undefined) => {
  try {
    return pid ? proc(pid).cpuMs : NaN
  } catch {
    return NaN
  }
}

/**
 * Until stopped: every `everyMs` the CPU share of tsnet, etcd and the simulated hosts and the
 * kernel table; and, one after another, /Tsnet.Status calls, each timed (tsnet's event loop: a
 * call waits while the loop is blocked) with the remote endpoints tsnet says it knows.
 */
function monitor(pids: { tsnet: number; etcd: number[]; sim: number | undefined }, socketPath: string, table: { fdbCount: number; neighCount: number }, everyMs = 2000) {
  const samples: Sample[] = []
  const status: StatusProbe[] = []
  const t0 = Date.now()
  let stopped = false
  const cpus = () => ({ tsnet: cpuOf(pids.tsnet), etcd: pids.etcd.reduce((a, p) => a + cpuOf(p), 0), sim: cpuOf(pids.sim) })
  const sampling = (async () => {
    let last = cpus()
    let lastT = Date.now()
    while (!stopped) {
      await sleep(everyMs)
      const now = cpus()
      const span = (Date.now() - lastT) / 100
      const x = {
        s: (Date.now() - t0) / 1000, tsnetCpu: (now.tsnet - last.tsnet) / span, etcdCpu: (now.etcd - last.etcd) / span, simCpu: (now.sim - last.sim) / span,
        fdb: table.fdbCount, neigh: table.neighCount,
      }
      samples.push(x)
      log(`  +${fmt(x.s, 0)} s: CPU tsnet ${fmt(x.tsnetCpu, 0)} %, etcd ${fmt(x.etcdCpu, 0)} %, simulated hosts ${fmt(x.simCpu, 0)} %; kernel ${x.fdb} fdb / ${x.neigh} neigh`)
      last = now
      lastT = Date.now()
    }
  })()
  const probing = (async () => {
    while (!stopped) {
      const sent = Date.now()
      const hr = process.hrtime.bigint()
      const p: StatusProbe = { s: (sent - t0) / 1000, ms: NaN, remote: NaN, registered: false }
      try {
        const r = await pluginPost(socketPath, '/Tsnet.Status', '{}', 30 * 60_000)
        const cluster = (JSON.parse(r.body) as { Status?: { cluster?: { remoteEndpoints?: number; registered?: boolean } } }).Status?.cluster
        p.remote = cluster?.remoteEndpoints ?? NaN
        p.registered = cluster?.registered === true
      } catch (err) {
        p.error = (err as Error).message
      }
      p.ms = Number(process.hrtime.bigint() - hr) / 1e6
      status.push(p)
      if (p.ms > 1000 || p.error) log(`  /Tsnet.Status sent at +${fmt(p.s, 0)} s answered after ${fmt(p.ms / 1000, 1)} s${p.error ? ` (${p.error})` : ''}: remote endpoints ${p.remote}, registered ${p.registered}`)
      await sleep(Math.max(0, 1000 - (Date.now() - sent)))
    }
  })()
  return { samples, status, stop: async () => { stopped = true; await Promise.all([sampling, probing]) } }
}

/** The spans in which the host was unregistered or had fewer locations than its local endpoints, from `t0`. */
function absences(seen: ReadonlyArray<{ at: string; registered: boolean; locations: number }>, t0: bigint): string {
  const spans: string[] = []
  let from: bigint | undefined
  let fewest = Infinity
  for (const x of seen) {
    const missing = !x.registered || x.locations < LOCAL_ENDPOINTS
    if (missing && from === undefined) from = BigInt(x.at)
    if (missing) fewest = Math.min(fewest, x.locations)
    if (!missing && from !== undefined) {
      spans.push(`unregistered from +${fmt(ms(t0, from) / 1000, 1)} s for ${fmt(ms(from, x.at) / 1000, 1)} s (its endpoint locations down to ${fewest})`)
      from = undefined
    }
  }
  if (from !== undefined) spans.push(`unregistered from +${fmt(ms(t0, from) / 1000, 1)} s until the end of the observation (locations down to ${fewest})`)
  return seen.length === 0 ? 'not observed' : spans.length ? spans.join('; ') : `registered with all ${LOCAL_ENDPOINTS} endpoint locations throughout`
}

/** etcd figures between two snapshots. */
function etcdDelta(a: Snapshot, b: Snapshot) {
  const d = (name: string, labels: Record<string, string> = {}) => metricAll(b.texts, name, labels) - metricAll(a.texts, name, labels)
  const seconds = ms(a.at, b.at) / 1000
  return {
    seconds,
    puts: d('etcd_mvcc_put_total'), deletes: d('etcd_mvcc_delete_total'), txns: d('etcd_mvcc_txn_total'), ranges: d('etcd_mvcc_range_total'),
    proposals: d('etcd_server_proposals_committed_total'),
    rpcs: d('grpc_server_handled_total'),
    rpcTxn: d('grpc_server_handled_total', { grpc_method: 'Txn' }),
    rpcRange: d('grpc_server_handled_total', { grpc_method: 'Range' }),
    keepalives: d('grpc_server_msg_received_total', { grpc_method: 'LeaseKeepAlive' }),
    watchEvents: d('etcd_debugging_mvcc_events_total'),
    rxMb: d('etcd_network_client_grpc_received_bytes_total') / 2 ** 20, txMb: d('etcd_network_client_grpc_sent_bytes_total') / 2 ** 20,
    cpuS: d('process_cpu_seconds_total'),
    fsyncs: d('etcd_disk_wal_fsync_duration_seconds_count'),
  }
}
const etcdState = (s: Snapshot) => ({
  dbMb: Math.max(...s.texts.map((t) => metric(t, 'etcd_mvcc_db_total_size_in_bytes'))) / 2 ** 20,
  dbInUseMb: Math.max(...s.texts.map((t) => metric(t, 'etcd_mvcc_db_total_size_in_use_in_bytes'))) / 2 ** 20,
  keysInMvcc: Math.max(...s.texts.map((t) => metric(t, 'etcd_debugging_mvcc_keys_total'))),
  watchers: metricAll(s.texts, 'etcd_debugging_mvcc_watcher_total'),
  watchStreams: metricAll(s.texts, 'etcd_debugging_mvcc_watch_stream_total'),
  leases: metricAll(s.texts, 'etcd_debugging_lease_granted_total') - metricAll(s.texts, 'etcd_debugging_lease_revoked_total'),
  etcdRssMb: Math.max(...s.texts.map((t) => metric(t, 'process_resident_memory_bytes'))) / 2 ** 20,
  clientConns: metricAll(s.texts, 'grpc_server_started_total') - metricAll(s.texts, 'grpc_server_handled_total'),
  keys: s.keys,
})

async function tsnetMetrics(host: Engine) {
  const text = (await nsExec(host, ['curl', '-s', '--max-time', '5', 'http://127.0.0.1:9464/metrics'])).stdout
  return {
    applies: metric(text, 'tsnet_host_apply_duration_seconds_count'), applySeconds: metric(text, 'tsnet_host_apply_duration_seconds_sum'),
    fdb: metric(text, 'tsnet_host_changes_total', { kind: 'fdb' }), neigh: metric(text, 'tsnet_host_changes_total', { kind: 'neigh' }),
    reconciles: metric(text, 'tsnet_reconcile_runs_total'), reconcileSeconds: metric(text, 'tsnet_reconcile_duration_seconds_sum'),
  }
}

interface StepResult {
  hosts: number
  endpoints: number
  upMs: number
  poolConflicts: number
  writtenMs: number
  convergeMs: number
  quietAfterMs: number
  cpuConvergeMs: number
  cpuToQuietMs: number
  rssBeforeMb: number
  rssAfterMb: number
  peakMb: number
  applies: number
  applySeconds: number
  etcd: ReturnType<typeof etcdDelta>
  state: ReturnType<typeof etcdState>
  probeMs: number[]
  probeErrors: string[]
  notConverged: string
  samples: Sample[]
  /** When the tsnet host's registration or endpoint locations were missing from etcd, as its peers saw it */
  peerView: string
  status: StatusProbe[]
  quietCapped: boolean
  leaveMs: number
  leaveQuietMs: number
  releaseConflicts: number
  simRssMb: number
}

async function main(): Promise<void> {
  if (etcdMissing) throw new Error(etcdMissing)
  if (!existsSync(join(REPO_ROOT, 'dist', 'cli.js'))) throw new Error('dist/cli.js is missing: npm run build first')
  const started = Date.now()
  const date = new Date().toISOString().slice(0, 10)
  const engines: Engine[] = []
  let sim: InstanceType<typeof SimHosts> | undefined
  let table: InstanceType<typeof KernelTable> | undefined
  let stopTsnet: (() => Promise<unknown>) | undefined
  const results: StepResult[] = []
  const extra: string[] = []
  try {
    const underlay = await createUnderlay('bcl-ul')
    engines.push(underlay.ns)
    const memberIps = Array.from({ length: MEMBERS }, (_, i) => `10.253.0.${10 + i}`)
    const members = await startEtcd(underlay, memberIps.map((_, i) => `bcl-e${i}`), memberIps)
    engines.push(...members.map((m) => m.ns))
    const etcdUrls = members.map((m) => m.clientUrl)
    log(`etcd: ${MEMBERS} member(s) at ${etcdUrls.join(',')}`)
    const host = await createEngineNetns('bcl-h')
    engines.push(host)
    await underlay.attach(host, '10.253.0.1')
    const simNs = await createEngineNetns('bcl-s')
    engines.push(simNs)
    await underlay.attach(simNs, '10.253.0.20')

    if (PROFILE) {
      rmSync(PROFILE_DIR, { recursive: true, force: true })
      mkdirSync(PROFILE_DIR, { recursive: true })
    }
    const ts = await startTsnet(host, {
      logLevel: 'info',
      env: { DOCKER_HOST: '', ...(PROFILE ? { TSNET_PROFILE_DIR: PROFILE_DIR } : {}) },
      extraArgs: ['--etcd-endpoints', etcdUrls.join(','), '--metrics-address', '127.0.0.1:9464'],
    })
    stopTsnet = () => ts.stop()
    log(`tsnet pid ${ts.pid}${PROFILE ? ' (under the V8 profiler)' : ''}`)

    // The network on the tsnet host, as `docker network create -d tsnet --ipam-driver tsnet -o tsnet.overlay=sim --ipam-opt tsnet.overlay=sim --subnet 10.96.0.0/16` calls it.
    const c = new PluginClient(ts.socketPath, 4)
    const poolId = (await c.call<{ PoolID: string }>('IpamDriver.RequestPool', { AddressSpace: 'LocalDefault', Pool: POOL, SubPool: '', Options: { 'tsnet.overlay': NET }, V6: false })).reply.PoolID
    const gw = (await c.call<{ Address: string }>('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } })).reply.Address
    const netId = hexId()
    await c.call('NetworkDriver.CreateNetwork', {
      NetworkID: netId, Options: { 'com.docker.network.generic': { 'tsnet.overlay': NET }, 'com.docker.network.enable_ipv6': false },
      IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: POOL, Gateway: gw }], IPv6Data: [],
    })
    /** A local container's endpoint: RequestAddress + CreateEndpoint + Join, and the time of the three. */
    const attachLocal = async () => {
      const t0 = process.hrtime.bigint()
      const addr = (await c.call<{ Address: string }>('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: {} })).reply.Address
      const ep = hexId()
      await c.call('NetworkDriver.CreateEndpoint', { NetworkID: netId, EndpointID: ep, Interface: { Address: addr, AddressIPv6: '', MacAddress: '' }, Options: {} })
      await c.call('NetworkDriver.Join', { NetworkID: netId, EndpointID: ep, SandboxKey: `/var/run/docker/netns/${ep.slice(0, 12)}`, Options: {} })
      return { ep, addr, ms: Number(process.hrtime.bigint() - t0) / 1e6 }
    }
    const detachLocal = async (x: { ep: string; addr: string }) => {
      await c.call('NetworkDriver.Leave', { NetworkID: netId, EndpointID: x.ep })
      await c.call('NetworkDriver.DeleteEndpoint', { NetworkID: netId, EndpointID: x.ep })
      await c.call('IpamDriver.ReleaseAddress', { PoolID: poolId, Address: x.addr.split('/')[0] })
    }
    for (let i = 0; i < LOCAL_ENDPOINTS; i++) await attachLocal()
    const vxlan = `tsvx-${netId.slice(0, 10)}`
    const tsnetHostId = (JSON.parse((await pluginPost(ts.socketPath, '/Tsnet.Status', '{}')).body) as { Status?: { cluster?: { hostId?: string } } }).Status?.cluster?.hostId ?? ''
    log(`network ${NET} (${netId.slice(0, 12)}) on the tsnet host: ${POOL}, VXLAN device ${vxlan}, ${LOCAL_ENDPOINTS} local endpoints`)

    table = new KernelTable()
    await table.start(host.netnsPath, vxlan)
    sim = new SimHosts(simNs.netnsPath, etcdUrls)
    await sim.memory()
    const largest = Math.max(...STEPS)

    for (const n of STEPS) {
      const prefix = `s${n}`
      await sleep(1000)
      const before = proc(ts.pid)
      const tm0 = await tsnetMetrics(host)
      resetPeak(ts.pid)
      const up = await sim.up(prefix, 0, n)
      log(`${n} hosts: registered and joined in ${fmt(ms(up.started, up.done), 0)} ms (${up.poolConflicts} RequestPool conflicts retried)`)
      await sleep(1000)
      const cpu0 = proc(ts.pid).cpuMs
      const m1 = await sim.metrics()
      const profiling = PROFILE && n === largest
      if (profiling) {
        writeFileSync(join(PROFILE_DIR, 'phase'), 'setup')
        process.kill(ts.pid, 'SIGUSR2')
      }
      // Docker calls on the tsnet host while it converges: how long a local container waits.
      let converging = true
      const probeMs: number[] = []
      const probeErrors: string[] = []
      const probe = (async () => {
        while (converging) {
          await sleep(500)
          if (!converging) break
          const t = process.hrtime.bigint()
          try {
            const x = await attachLocal()
            probeMs.push(x.ms)
            await detachLocal(x)
          } catch (err) {
            probeErrors.push(`${(err as Error).message} after ${fmt(Number(process.hrtime.bigint() - t) / 1e6, 0)} ms`)
          }
        }
      })()
      const mon = monitor({ tsnet: ts.pid, etcd: members.map((m) => m.pid), sim: sim.pid }, ts.socketPath, table)
      if (tsnetHostId) await sim.observe(tsnetHostId)
      const eps = await sim.endpoints(prefix, PER_HOST)
      const written = ms(eps.started, eps.written)
      log(`${n} hosts: ${eps.endpoints.length} endpoints claimed and registered in ${fmt(written, 0)} ms; waiting for the kernel`)
      let convergedAt: bigint | undefined
      let notConverged = ''
      try {
        convergedAt = await table.programmed(eps.endpoints, CONVERGE_TIMEOUT_MS)
      } catch (err) {
        notConverged = (err as Error).message
        log(`${n} hosts: NOT CONVERGED: ${notConverged}`)
      }
      const cpuAtConverge = proc(ts.pid).cpuMs
      const convergeMs = convergedAt === undefined ? NaN : ms(eps.started, convergedAt)
      log(`${n} hosts: kernel holds all ${eps.endpoints.length} FDB + neighbour entries ${fmt(convergeMs, 0)} ms after the first claim (${fmt(convergeMs - written, 0)} ms after the last write); waiting for tsnet to be quiet`)
      // tsnet may go on working after the kernel is right: until it is quiet, Docker calls and status calls go on.
      const q = await quiet(ts.pid, cpu0, QUIET_CAP_MS)
      converging = false
      await probe
      await mon.stop()
      const seen = tsnetHostId ? (await sim.observeStop()).seen : []
      const peerView = absences(seen, BigInt(eps.started))
      log(`${n} hosts: the tsnet host as its peers saw it in etcd: ${peerView}`)
      if (profiling) {
        writeFileSync(join(PROFILE_DIR, 'phase'), 'converge')
        process.kill(ts.pid, 'SIGUSR2')
        for (let i = 0; i < 300 && !existsSync(join(PROFILE_DIR, 'converge.done')); i++) await sleep(200)
      }
      const after = proc(ts.pid)
      const m2 = await sim.metrics()
      const tm2 = await tsnetMetrics(host)
      const maxStatus = Math.max(0, ...mon.status.map((x) => x.ms))
      log(`${n} hosts: tsnet quiet ${fmt(q.afterMs, 0)} ms after convergence${q.capped ? ' (GAVE UP WAITING)' : ''}, ${fmt(q.cpuMs - (cpuAtConverge - cpu0), 0)} ms of CPU after it; longest /Tsnet.Status ${fmt(maxStatus, 0)} ms; RSS ${fmt(before.rssMb, 0)} → ${fmt(after.rssMb, 0)} MB (peak ${fmt(after.hwmMb, 0)})`)
      const r: StepResult = {
        hosts: n, endpoints: eps.endpoints.length, upMs: ms(up.started, up.done), poolConflicts: up.poolConflicts, writtenMs: written, convergeMs,
        quietAfterMs: q.afterMs, cpuConvergeMs: cpuAtConverge - cpu0, cpuToQuietMs: q.cpuMs, rssBeforeMb: before.rssMb, rssAfterMb: after.rssMb, peakMb: after.hwmMb,
        applies: tm2.applies - tm0.applies, applySeconds: tm2.applySeconds - tm0.applySeconds,
        etcd: etcdDelta(m1, m2), state: etcdState(m2), probeMs, probeErrors, notConverged, samples: mon.samples, status: mon.status, peerView, quietCapped: q.capped, leaveMs: NaN, leaveQuietMs: NaN, releaseConflicts: 0, simRssMb: (await sim.memory()).rssMb,
      }

      let live: SimEndpoint[] = eps.endpoints
      if (n === largest && !notConverged) {
        // At rest: what 200 hosts cost etcd and tsnet when nothing changes.
        const restCpu0 = proc(ts.pid).cpuMs
        const r0 = await sim.metrics()
        const tr0 = await tsnetMetrics(host)
        await sleep(30_000)
        const r1 = await sim.metrics()
        const tr1 = await tsnetMetrics(host)
        const rest = etcdDelta(r0, r1)
        const restCpu = proc(ts.pid).cpuMs - restCpu0
        extra.push(`### At rest, ${n} hosts (${rest.seconds.toFixed(0)} s window, nothing changing)`, '',
          `| what | per second |`, `|---|---|`,
          `| etcd RPCs handled (all methods; keepalive messages ride one stream per client) | ${fmt(rest.rpcs / rest.seconds, 1)} |`,
          `| etcd Range RPCs | ${fmt(rest.rpcRange / rest.seconds, 1)} |`,
          `| etcd Txn RPCs | ${fmt(rest.rpcTxn / rest.seconds, 1)} |`,
          `| lease keepalive messages received | ${fmt(rest.keepalives / rest.seconds, 1)} |`,
          `| etcd puts / deletes | ${fmt(rest.puts / rest.seconds, 2)} / ${fmt(rest.deletes / rest.seconds, 2)} |`,
          `| etcd bytes received / sent | ${fmt(rest.rxMb * 1024 / rest.seconds, 1)} / ${fmt(rest.txMb * 1024 / rest.seconds, 1)} KiB |`,
          `| etcd CPU | ${fmt(rest.cpuS / rest.seconds * 100, 1)} % of a core |`,
          `| tsnet CPU | ${fmt(restCpu / rest.seconds / 10, 1)} % of a core (${tr1.reconciles - tr0.reconciles} periodic reconcile(s) in the window, ${fmt((tr1.reconcileSeconds - tr0.reconcileSeconds) * 1000, 0)} ms) |`, '')
        log(`at rest: etcd ${fmt(rest.rpcs / rest.seconds, 1)} RPC/s, ${fmt(rest.keepalives / rest.seconds, 1)} keepalives/s, ${fmt(rest.cpuS / rest.seconds * 100, 1)} % CPU; tsnet ${fmt(restCpu / rest.seconds / 10, 1)} % CPU`)

        // One change at a time: an endpoint registered on another host, then removed.
        const hostIds = [...new Set(live.map((e) => e.host))]
        const added: Array<{ host: string; e: SimEndpoint; ms: number; ackMs: number }> = []
        for (let i = 0; i < CHANGES; i++) {
          const h = hostIds[(i * 7) % hostIds.length] as string
          const a = await sim.add(h)
          const at = await table.programmed([a.endpoint], 60_000)
          added.push({ host: h, e: a.endpoint, ms: ms(a.t0, at), ackMs: ms(a.t0, a.acked) })
          await sleep(200)
        }
        const removedMs: number[] = []
        const removedAck: number[] = []
        await Promise.all(added.map(async (x, i) => {
          await sleep(i * 500)
          const rm = await sim!.remove(x.host, x.e.endpointId)
          const at = await table!.gone([x.e], 60_000)
          removedMs.push(ms(rm.t0, at))
          removedAck.push(ms(rm.t0, rm.acked))
        }))
        const addMs = added.map((x) => x.ms)
        log(`one endpoint added: p50 ${fmt(median(addMs), 0)} ms, p99 ${fmt(p99(addMs), 0)} ms; removed: p50 ${fmt(median(removedMs), 0)} ms, p99 ${fmt(p99(removedMs), 0)} ms`)

        // Two hosts go: one crashes (keepalives stop; etcd expires its lease), one leaves (its lease revoked).
        const [crashed, leaving] = [hostIds[1] as string, hostIds[2] as string]
        const [cr, lv] = await Promise.all([sim.crash(crashed), sim.leave({ host: leaving })])
        const [crAt, lvAt] = await Promise.all([table.gone(cr.endpoints, 60_000), table.gone(lv.endpoints, 60_000)])
        const crashMs = ms(cr.t0, crAt)
        const leaveMs = ms(lv.t0, lvAt)
        log(`a host's death: its ${cr.endpoints.length} endpoints gone from the kernel ${fmt(crashMs, 0)} ms after its keepalives stopped; a revoked host's ${lv.endpoints.length} in ${fmt(leaveMs, 0)} ms`)
        await sim.releaseCrashed(crashed)
        live = live.filter((e) => e.host !== crashed && e.host !== leaving)
        extra.push(`### Changes at ${n} hosts (${n * PER_HOST} remote endpoints present)`, '',
          '| change | n | p50 ms | p99 ms | max ms | etcd write acknowledged, p50 ms |', '|---|---|---|---|---|---|',
          `| an endpoint registered on a remote host → its FDB and neighbour entry in the kernel | ${addMs.length} | ${fmt(median(addMs), 0)} | ${fmt(p99(addMs), 0)} | ${fmt(Math.max(...addMs), 0)} | ${fmt(median(added.map((x) => x.ackMs)), 1)} |`,
          `| an endpoint deleted on a remote host → its entries gone (tsnet keeps a deleted location 3 s: REMOVE_AFTER_MS) | ${removedMs.length} | ${fmt(median(removedMs), 0)} | ${fmt(p99(removedMs), 0)} | ${fmt(Math.max(...removedMs), 0)} | ${fmt(median(removedAck), 1)} |`,
          `| a host crashes (its keepalives stop, lease TTL 10 s) → its ${cr.endpoints.length} endpoints' entries gone | 1 | ${fmt(crashMs, 0)} | | | |`,
          `| a host leaves (its lease revoked) → its ${lv.endpoints.length} endpoints' entries gone | 1 | ${fmt(leaveMs, 0)} | | | |`, '',
          'Deletions were started 500 ms apart (each measured on its own), so the 3 s holds overlap; additions one at a time.', '')
      }

      // Everyone leaves at once (leases revoked), then their addresses and memberships are released.
      const lvAll = await sim.leave({ prefix })
      const goneAt = await table.gone(live, 120_000).catch((err: unknown) => {
        log(`${n} hosts: entries NOT GONE after everyone left: ${(err as Error).message}`)
        return undefined
      })
      r.leaveMs = goneAt === undefined ? NaN : ms(lvAll.t0, goneAt)
      log(`${n} hosts: all revoked at once, their ${live.length} endpoints gone from the kernel in ${fmt(r.leaveMs, 0)} ms`)
      const lq = await quiet(ts.pid, 0, QUIET_CAP_MS)
      r.leaveQuietMs = ms(lvAll.t0, process.hrtime.bigint())
      log(`${n} hosts: tsnet quiet ${fmt(r.leaveQuietMs / 1000, 1)} s after they left${lq.capped ? ' (GAVE UP WAITING)' : ''}`)
      r.releaseConflicts = (await sim.release(prefix)).poolConflicts
      results.push(r)
    }

    // Nothing was sent to the simulated VTEPs.
    const stats = JSON.parse(await nsExecOk(host, ['ip', '-s', '-j', 'link', 'show', 'dev', vxlan])) as Array<{ stats64?: { tx?: Record<string, number> } }>
    const tx = stats[0]?.stats64?.tx ?? {}
    extra.push(`VXLAN device ${vxlan} after the run: tx packets ${tx.packets}, bytes ${tx.bytes}, errors ${tx.errors}, dropped ${tx.dropped}, carrier errors ${tx.carrier_errors} (nothing was sent toward the simulated VTEPs). Kernel table resyncs of the watcher: ${table.resyncs}; netlink events heard: ${table.events}.`, '')
    const warnings = readFileSync(ts.logPath, 'utf8').split('\n').filter((l) => /"level":(40|50|60)/.test(l))
    extra.push(`tsnet logged ${warnings.length} warning(s) or error(s)${warnings.length ? `; the first: \`${warnings[0]?.slice(0, 300)}\`` : ''}.`, '')
    // Its own keepalive, from its side: ClusterLiveness logs this when its lease lapsed and it registers again.
    const lapses = warnings.filter((l) => l.includes('host lease lost')).map((l) => /"time":"([^"]+)"/.exec(l)?.[1] ?? '?')
    extra.push(`tsnet's own lease lapsed (\`host lease lost\` in its log) ${lapses.length} time(s)${lapses.length ? `: at ${lapses.join(', ')}` : ''}.`, '')

    if (PROFILE && existsSync(join(PROFILE_DIR, 'converge.cpuprofile'))) {
      const p = cpuTables(join(PROFILE_DIR, 'converge.cpuprofile'), 15, (name) => name.includes(' dist/'))
      extra.push(`### Where tsnet's time went while ${largest} hosts converged (V8 profile, ${fmt(p.totalMs / 1000, 1)} s sampled, ${PROFILE_DIR}/converge.cpuprofile)`, '',
        '| self ms | share | function |', '|---|---|---|', ...p.self.map((x) => `| ${fmt(x.ms, 0)} | ${fmt(x.share * 100, 1)} % | ${x.what} |`), '',
        '| inclusive ms | share | tsnet function |', '|---|---|---|', ...p.inclusive.map((x) => `| ${fmt(x.ms, 0)} | ${fmt(x.share * 100, 1)} % | ${x.what} |`), '')
    }
  } finally {
    await sim?.stop().catch((err: unknown) => log(`stopping the simulated hosts: ${String(err)}`))
    await table?.stop().catch(() => undefined)
    await stopTsnet?.().catch(() => undefined)
    for (const e of engines.reverse()) await destroyEngine(e).catch((err: unknown) => log(`destroying ${e.name}: ${String(err)}`))
  }

  const sh = (cmd: string, args: string[]) => { try { return execFileSync(cmd, args).toString().trim().split('\n')[0] } catch { return '?' } }
  const maxOf = (xs: number[]) => (xs.length ? Math.max(...xs) : NaN)
  const out: string[] = [`# tsnet cluster networks at scale, by simulation, ${date}`, '',
    `- ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, kernel ${sh('uname', ['-r'])}; node ${process.version}; ${sh('/usr/bin/etcd', ['--version'])}, ${MEMBERS} member(s), its defaults (no auto-compaction)`,
    `- tsnet ${sh('git', ['-C', REPO_ROOT, 'describe', '--always', '--dirty'])}${PROFILE ? ' **under the V8 profiler: times are inflated**' : ''}; \`flock /tmp/tsnet-e2e.lock npm run bench:cluster\` (bench/cluster-scale.ts)`,
    `- One real tsnet host (\`tsnet serve --etcd-endpoints ... --metrics-address 127.0.0.1:9464\`, log level info, defaults otherwise) with network \`${NET}\` (${POOL}) and ${LOCAL_ENDPOINTS} local endpoints. N simulated hosts in one process, each with its own etcd client and lease (TTL 10 s), writing through tsnet's own ClusterLiveness, ClusterIpam and ClusterLocations: registration, RequestPool (members), then ${PER_HOST} endpoints per host (RequestAddress claim + location), all hosts at once.`,
    '- Converged: the tsnet host\'s kernel holds every remote endpoint\'s FDB entry (MAC → VTEP) and neighbour entry (IP → MAC) on its VXLAN device, seen by netlink events (nothing polled). Times start at the first claim of the burst. Quiet: tsnet used under 10 % of a core for a whole second.',
    '- All of it shares 2 cores: tsnet, etcd and the simulated hosts\' process (see the CPU timeline); on real hosts the simulated hosts\' share would be elsewhere.', '',
    '## Convergence, work after it, memory', '',
    '| hosts | endpoints | hosts up (register + RequestPool) ms | RequestPool conflicts retried (join / leave) | all written to etcd ms | kernel converged ms | tsnet busy after convergence s | tsnet CPU to converge s | tsnet CPU after convergence s | tsnet CPU for the burst, total s | longest /Tsnet.Status s | host change batches (apply s) | RSS before → after MB | peak RSS MB | everyone leaves: entries gone ms / tsnet quiet s |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.hosts} | ${r.endpoints} | ${fmt(r.upMs, 0)} | ${r.poolConflicts} / ${r.releaseConflicts} | ${fmt(r.writtenMs, 0)} | **${r.notConverged ? 'not converged' : fmt(r.convergeMs, 0)}** | **${fmt(r.quietAfterMs / 1000, 1)}**${r.quietCapped ? ' (gave up)' : ''} | ${fmt(r.cpuConvergeMs / 1000, 1)} | ${fmt((r.cpuToQuietMs - r.cpuConvergeMs) / 1000, 1)} | **${fmt(r.cpuToQuietMs / 1000, 1)}** | ${fmt(maxOf(r.status.map((x) => x.ms)) / 1000, 1)} | ${r.applies} (${fmt(r.applySeconds, 1)}) | ${fmt(r.rssBeforeMb, 0)} → ${fmt(r.rssAfterMb, 0)} | ${fmt(r.peakMb, 0)} | ${fmt(r.leaveMs, 0)} / ${fmt(r.leaveQuietMs / 1000, 1)} |`), '']
  if (results.length > 1) {
    const a = results[0] as StepResult
    const after = (r: StepResult) => r.cpuToQuietMs - r.cpuConvergeMs
    out.push('Growth against the smallest step:', '',
      ...results.slice(1).map((r) => `- ${a.hosts} → ${r.hosts} hosts (${fmt(r.endpoints / a.endpoints, 1)}× endpoints): convergence ${fmt(r.convergeMs / a.convergeMs, 2)}×; tsnet busy after convergence ${fmt(r.quietAfterMs / a.quietAfterMs, 1)}×; tsnet CPU for the burst ${fmt(r.cpuToQuietMs / a.cpuToQuietMs, 1)}× (to converge ${fmt(r.cpuConvergeMs / a.cpuConvergeMs, 2)}×, after ${fmt(after(r) / after(a), 1)}×); peak RSS ${fmt(r.peakMb / a.peakMb, 2)}×, RSS after ${fmt(r.rssAfterMb / a.rssAfterMb, 2)}×`), '')
  }
  out.push('Docker calls on the tsnet host from the burst until tsnet was quiet (a local container, one at a time, 500 ms apart: RequestAddress + CreateEndpoint + Join timed together, then Leave, DeleteEndpoint, ReleaseAddress):', '',
    ...results.map((r) => `- ${r.hosts} hosts: ${r.probeMs.length} answered, RequestAddress + CreateEndpoint + Join p50 ${fmt(median(r.probeMs), 1)} ms, max ${fmt(maxOf(r.probeMs), 1)} ms; ${r.probeErrors.length} failed${r.probeErrors.length ? `: ${[...new Set(r.probeErrors.map((e) => e.replace(/after \d+ ms/, '').trim()))].slice(0, 3).join('; ')} (after ${r.probeErrors.map((e) => /after (\d+) ms/.exec(e)?.[1]).join(', ')} ms)` : ''}`), '')
  out.push('The tsnet host itself, as its peers saw it in etcd during the same time (its registration and its endpoints\' locations, read every 500 ms by the simulated hosts\' process; a peer drops a host\'s endpoints 3 s after their locations go):', '',
    ...results.map((r) => `- ${r.hosts} hosts: ${r.peerView}`), '')
  const big = results.at(-1)
  if (big && big.samples.length > 0) {
    const every = Math.max(1, Math.ceil(big.samples.length / 24))
    out.push(`Timeline at ${big.hosts} hosts, from the start of the burst (CPU: % of one core over the last 2 s; /Tsnet.Status calls run one after another, each timed):`, '',
      '| s | tsnet CPU % | etcd CPU % | simulated hosts CPU % | kernel FDB / neighbour entries |', '|---|---|---|---|---|',
      ...big.samples.filter((_, i) => i % every === 0 || i === big.samples.length - 1).map((x) => `| ${fmt(x.s, 0)} | ${fmt(x.tsnetCpu, 0)} | ${fmt(x.etcdCpu, 0)} | ${fmt(x.simCpu, 0)} | ${x.fdb} / ${x.neigh} |`), '',
      `/Tsnet.Status answers slower than 1 s: ${big.status.filter((x) => x.ms > 1000).map((x) => `sent at +${fmt(x.s, 0)} s, answered after ${fmt(x.ms / 1000, 1)} s (${x.error ?? `${x.remote} remote endpoints known`})`).join('; ') || 'none'}.`, '')
  }
  out.push('## etcd load', '', 'From the first claim until tsnet was quiet, and etcd\'s state after:', '',
    '| hosts | seconds | Txn RPCs | Range RPCs | puts | deletes | keepalive messages | watch events | received / sent MiB | WAL fsyncs | etcd CPU s | keys (hosts / endpoints / claims) | db size MiB (in use) | etcd RSS MiB | watchers |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.hosts} | ${fmt(r.etcd.seconds, 1)} | ${r.etcd.rpcTxn} | ${r.etcd.rpcRange} | ${r.etcd.puts} | ${r.etcd.deletes} | ${r.etcd.keepalives} | ${r.etcd.watchEvents} | ${fmt(r.etcd.rxMb, 1)} / ${fmt(r.etcd.txMb, 1)} | ${r.etcd.fsyncs} | ${fmt(r.etcd.cpuS, 1)} | ${r.state.keys.total} (${r.state.keys.hosts} / ${r.state.keys.endpoints} / ${r.state.keys.addresses}) | ${fmt(r.state.dbMb, 1)} (${fmt(r.state.dbInUseMb, 1)}) | ${fmt(r.state.etcdRssMb, 0)} | ${r.state.watchers} |`), '',
    `The simulated hosts' process (${results.at(-1)?.hosts ?? 0} etcd clients, TypeScript loaded from source) used ${fmt(results.at(-1)?.simRssMb ?? NaN, 0)} MB RSS.`, '')
  out.push(...extra, `Total run time ${Math.round((Date.now() - started) / 1000)} s.`, '')
  const report = out.join('\n')
  const dir = join(REPO_ROOT, 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  // Only the default settings write the plain name: a smoke run or a variant never replaces the figures.
  const variant = `${process.env.BENCH_CLUSTER_STEPS ? `-steps-${STEPS.join('-')}` : ''}${MEMBERS === 3 ? '-etcd3' : ''}${PROFILE ? '-profile' : ''}`
  const file = join(dir, `${date}-cluster-scale${variant}.md`)
  writeFileSync(file, report)
  console.log(report)
  log(`written to ${file}`)
}


main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
