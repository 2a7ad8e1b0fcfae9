// Metrics (issue 15): the services as serve builds them with metrics on, over a FakeHost, driven
// through the fastify app with Docker's calls; the counters and gauges are read from the same
// text a Prometheus scrape gets, and the listener is a real HTTP server on loopback.
import t, { type Test } from 'tap'
import { join } from 'node:path'
import { DOCKER_DEFAULT_POOLS_TEXT, parseDefaultPools } from '../../src/core/ipam.js'
import { loadConfig, parseListenAddress } from '../../src/config.js'
import { keyOf } from '../../src/core/objects.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { openServices } from '../../src/main.js'
import { buildApp } from '../../src/server/app.js'
import { serveMetrics } from '../../src/server/metrics-server.js'
import { Metrics } from '../../src/services/metrics.js'
import { dockerId, log, tempDir } from './fixtures/util.js'

/** The value of one sample line (`name{labels} value`), or undefined when the line is absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

async function open(t: Test) {
  const dir = await tempDir(t)
  const host = new FakeHost()
  const config = {
    socket: join(dir, 'tsnet.sock'), stateDir: dir, logLevel: 'silent', defaultPools: parseDefaultPools(DOCKER_DEFAULT_POOLS_TEXT),
    gcIntervalSec: 0, procSys: '/proc/sys', reconcileIntervalSec: 0,
  }
  const services = await openServices(config, host, log, undefined, { metrics: true })
  const metrics = services.metrics!
  // As serve: requests wait for the boot reconcile (here it is over before the first scrape).
  const ready = services.reconciler.boot().then(() => undefined)
  const app = buildApp({ logger: log, services, ready, metrics })
  await ready
  t.teardown(() => app.close())
  const call = async (path: string, body: unknown) => {
    const r = await app.inject({ method: 'POST', url: `/${path}`, payload: `${JSON.stringify(body)}\n` })
    return { status: r.statusCode, json: r.json() as Record<string, any> }
  }
  return { host, services, metrics, call, scrape: () => metrics.text() }
}

const NET = dockerId('aa')
const EP = dockerId('e1')

t.test('Docker calls, host changes, sizes and pool usage move as a container comes and goes', async (t) => {
  const { call, scrape } = await open(t)
  const before = await scrape()
  t.equal(sample(before, 'tsnet_networks'), 0, 'no networks at first')
  t.equal(sample(before, 'tsnet_reconcile_runs_total{trigger="boot"}'), 1, 'the boot reconcile is counted')

  const pool = await call('IpamDriver.RequestPool', { AddressSpace: 'LocalDefault', Pool: '10.40.0.0/24', SubPool: '', Options: {}, V6: false })
  t.equal(pool.status, 200, JSON.stringify(pool.json))
  const poolId = pool.json.PoolID as string
  await call('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } })
  const created = await call('NetworkDriver.CreateNetwork', {
    NetworkID: NET, Options: { 'com.docker.network.generic': {}, 'com.docker.network.enable_ipv6': false },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.40.0.0/24', Gateway: '10.40.0.1/24' }], IPv6Data: [],
  })
  t.equal(created.status, 200, JSON.stringify(created.json))
  const addr = await call('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: {} })
  const portMap = [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 }]
  const opts = { 'com.docker.network.portmap': portMap, 'com.docker.network.exposedports': [] }
  t.equal((await call('NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: EP, Interface: { Address: addr.json.Address, AddressIPv6: '', MacAddress: '' }, Options: opts })).status, 200)
  t.equal((await call('NetworkDriver.Join', { NetworkID: NET, EndpointID: EP, SandboxKey: '/var/run/docker/netns/x', Options: opts })).status, 200)
  t.equal((await call('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET, EndpointID: EP, Options: opts })).status, 200)

  const running = await scrape()
  t.equal(sample(running, 'tsnet_networks'), 1)
  t.equal(sample(running, 'tsnet_endpoints{joined="true"}'), 1)
  t.equal(sample(running, 'tsnet_published_ports{proto="tcp"}'), 1)
  t.equal(sample(running, `tsnet_ipam_pool_addresses{pool="10.40.0.0/24",network="${NET.slice(0, 12)}"}`), 256, 'the pool size, by network')
  t.equal(sample(running, `tsnet_ipam_pool_leased_addresses{pool="10.40.0.0/24",network="${NET.slice(0, 12)}"}`), 2, 'gateway and container leased')
  t.equal(sample(running, 'tsnet_request_duration_seconds_count{call="NetworkDriver.Join"}'), 1, 'one Join timed')
  t.equal(sample(running, 'tsnet_request_duration_seconds_count{call="IpamDriver.RequestAddress"}'), 2)
  t.ok(sample(running, 'tsnet_host_changes_total{kind="link",op="create"}')! >= 2, 'bridge and veth created on the host')
  t.ok(sample(running, 'tsnet_host_changes_total{kind="dnat",op="create"}')! >= 1, 'the DNAT rule of the published port')
  t.ok(sample(running, 'tsnet_host_apply_duration_seconds_count')! >= 1, 'host batches timed')

  const bad = await call('NetworkDriver.Join', { NetworkID: NET })
  t.equal(bad.status, 500)
  const refused = await scrape()
  t.equal(sample(refused, 'tsnet_request_errors_total{call="NetworkDriver.Join",kind="invalid"}'), 1, 'an invalid body is counted as invalid')

  await call('NetworkDriver.RevokeExternalConnectivity', { NetworkID: NET, EndpointID: EP })
  await call('NetworkDriver.Leave', { NetworkID: NET, EndpointID: EP })
  await call('NetworkDriver.DeleteEndpoint', { NetworkID: NET, EndpointID: EP })
  await call('IpamDriver.ReleaseAddress', { PoolID: poolId, Address: addr.json.Address.split('/')[0] })
  const gone = await scrape()
  t.equal(sample(gone, 'tsnet_endpoints{joined="true"}'), 0)
  t.equal(sample(gone, 'tsnet_endpoints{joined="false"}'), 0)
  t.equal(sample(gone, 'tsnet_published_ports{proto="tcp"}'), 0, 'the port is no longer published')
  t.equal(sample(gone, `tsnet_ipam_pool_leased_addresses{pool="10.40.0.0/24",network="${NET.slice(0, 12)}"}`), 1, 'only the gateway left')
  t.ok(sample(gone, 'tsnet_host_changes_total{kind="link",op="delete"}')! >= 1, 'the veth deleted')
})

t.test('reconcile: runs, repairs and drift of the last pass; a failed host batch', async (t) => {
  const { host, services, call, scrape } = await open(t)
  await call('NetworkDriver.CreateNetwork', {
    NetworkID: NET, Options: { 'com.docker.network.generic': {}, 'com.docker.network.enable_ipv6': false },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.41.0.0/24', Gateway: '10.41.0.1/24' }], IPv6Data: [],
  })
  const bridge = [...host.links.keys()].find((n) => n.startsWith('tsbr-'))!
  host.objects.delete(keyOf({ kind: 'link', name: bridge } as never))
  for (const [k, o] of host.objects) if (o.kind === 'addr' && o.link === bridge) host.objects.delete(k)
  const report = await services.reconciler.pass('periodic')
  t.ok(report.changes.length > 0, `the pass repaired: ${report.changes.join('; ')}`)
  const text = await scrape()
  t.equal(sample(text, 'tsnet_reconcile_runs_total{trigger="periodic"}'), 1)
  t.equal(sample(text, 'tsnet_reconcile_repairs_total'), report.changes.length, 'every repair counted')
  t.equal(sample(text, 'tsnet_reconcile_drift_objects{state="repaired"}'), report.changes.length)
  await services.reconciler.pass('periodic')
  t.equal(sample(await scrape(), 'tsnet_reconcile_drift_objects{state="repaired"}'), 0, 'the next pass found nothing')

  host.failNext.add('link:create')
  const failed = await call('NetworkDriver.CreateNetwork', {
    NetworkID: dockerId('bb'), Options: { 'com.docker.network.generic': {}, 'com.docker.network.enable_ipv6': false },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.42.0.0/24', Gateway: '10.42.0.1/24' }], IPv6Data: [],
  })
  t.equal(failed.status, 500)
  const after = await scrape()
  t.ok(sample(after, 'tsnet_host_apply_errors_total')! >= 1, 'the failed host batch counted')
  t.equal(sample(after, 'tsnet_request_errors_total{call="NetworkDriver.CreateNetwork",kind="host"}'), 1, 'the call counted as a host error')
})

t.test('garbage collection passes and what they collected, by kind', async (t) => {
  const m = new Metrics({ networks: () => [], endpoints: () => [], pools: () => [], nameOf: () => undefined }, { process: false })
  m.gcPassed({ ran: false, reason: 'Docker does not answer' })
  m.gcPassed({ ran: true, unexplained: 2, collected: [{ kind: 'endpoint', networkId: NET, endpointId: EP } as never, { kind: 'lease', poolId: 'p', address: '10.0.0.9', createdAt: '' } as never] })
  const text = await m.text()
  t.equal(sample(text, 'tsnet_gc_runs_total{result="waiting"}'), 1)
  t.equal(sample(text, 'tsnet_gc_runs_total{result="ran"}'), 1)
  t.equal(sample(text, 'tsnet_gc_collected_total{kind="endpoint"}'), 1)
  t.equal(sample(text, 'tsnet_gc_collected_total{kind="lease"}'), 1)
  t.notMatch(text, /process_cpu/, 'process metrics only when asked for')
})

t.test('the listener: GET /metrics on loopback with process metrics, nothing else', async (t) => {
  const { metrics } = await open(t)
  const server = await serveMetrics(metrics, { host: '127.0.0.1', port: 0 }, log)
  t.teardown(() => server.close())
  const port = (server.address() as { port: number }).port
  const r = await fetch(`http://127.0.0.1:${port}/metrics`)
  t.equal(r.status, 200)
  t.match(r.headers.get('content-type'), /^text\/plain; version=0.0.4/)
  const text = await r.text()
  t.match(text, /\n# TYPE tsnet_request_duration_seconds histogram\n/)
  t.match(text, /\nprocess_cpu_seconds_total \d/, 'process metrics')
  t.match(text, /\nnodejs_heap_size_used_bytes \d/)
  for (const line of text.split('\n').filter((l) => l.startsWith('# TYPE tsnet_'))) {
    const [, , name, type] = line.split(' ')
    if (type === 'counter') t.match(name, /_total$/, `${name}: a counter ends in _total`)
    if (type === 'histogram') t.match(name, /_seconds$/, `${name}: durations in seconds`)
  }
  t.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 404)
  t.equal((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' })).status, 404)
})

t.test('--metrics-address: off by default, an IP literal and a port, or a clear refusal', async (t) => {
  const base = ['--proc-sys', '/proc/sys']
  t.equal(loadConfig(base, {}).metricsAddress, undefined, 'off by default')
  t.same(loadConfig([...base, '--metrics-address', '127.0.0.1:9464'], {}).metricsAddress, { host: '127.0.0.1', port: 9464 })
  t.same(loadConfig(base, { TSNET_METRICS_ADDRESS: '[::1]:9464' }).metricsAddress, { host: '::1', port: 9464 }, 'from the environment (the managed plugin)')
  t.equal(loadConfig(base, { TSNET_METRICS_ADDRESS: '' }).metricsAddress, undefined, 'empty: off')
  for (const bad of ['localhost:9464', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:70000', '300.1.1.1:80', '::1:9464', ':9464']) {
    t.equal(parseListenAddress(bad), undefined, `${bad} refused`)
    t.throws(() => loadConfig([...base, '--metrics-address', bad], {}), /setting --metrics-address \(env TSNET_METRICS_ADDRESS\): ".*" is not IP:PORT/)
  }
})
