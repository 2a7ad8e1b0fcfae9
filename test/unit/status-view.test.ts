// tsnet status's model and text: Docker's names for networks and containers (the lease's owner
// when Docker is not asked), addresses, MACs and published ports, and one health line per kind
// of state the daemon reports (or "unknown" when it does not run). --json keeps the records whole.
import t from 'tap'
import type { BridgeNetwork, EndpointRecord, LeaseRecord, NetworkRecord, PoolRecord } from '../../src/core/records.js'
import type { DaemonStatus } from '../../src/observe/daemon-status.js'
import { gcLine, reconcileLine, statusText, when } from '../../src/observe/status-text.js'
import { statusModel, type StatusInput } from '../../src/observe/status-view.js'

const NOW = Date.parse('2026-03-01T12:00:00Z')
const ago = (s: number) => new Date(NOW - s * 1000).toISOString()
const A = 'aa'.repeat(32)
const B = 'bb'.repeat(32)
const E1 = 'e1'.repeat(32)
const E2 = 'e2'.repeat(32)

const network = (id: string, pool: string, extra: Partial<BridgeNetwork> = {}): NetworkRecord => ({
  id, mode: 'bridge', spec: { bridge: `tsbr-${id.slice(0, 10)}`, bridgeNamedByUser: false }, mtu: 1450, internal: false, ipv6: false,
  ipv4Subnets: [{ pool, gateway: pool.replace(/0\/24$/, '1/24') }], ipv6Subnets: [], enableIpMasquerade: true, enableIcc: true, genericOptions: {}, createdAt: ago(600), ...extra,
})
const endpoint = (id: string, networkId: string, address: string, extra: Partial<EndpointRecord> = {}): EndpointRecord => ({
  id, networkId, hostIf: `tsv${id.slice(0, 12)}`, containerIf: `tsc${id.slice(0, 12)}`, mac: '02:42:0a:00:00:02', macFromDocker: false, mtu: 1450, address,
  portMappings: [], exposedPorts: [], joined: true, createdAt: ago(500), ...extra,
})
const poolA: PoolRecord = { id: 'LocalDefault/10.1.0.0/24', addressSpace: 'LocalDefault', pool: '10.1.0.0/24', v6: false, options: {}, createdAt: ago(600) }
const poolB: PoolRecord = { ...poolA, id: 'LocalDefault/10.2.0.0/24', pool: '10.2.0.0/24' }
const leases: LeaseRecord[] = [
  { poolId: poolA.id, address: '10.1.0.1', kind: 'gateway', createdAt: ago(600) },
  { poolId: poolA.id, address: '10.1.0.2', kind: 'endpoint', owner: 'from-lease', createdAt: ago(500) },
  { poolId: poolB.id, address: '10.2.0.2', kind: 'endpoint', owner: 'wrong-pool', createdAt: ago(500) },
]

const input = (over: Partial<StatusInput> = {}): StatusInput => ({
  stateDir: '/var/lib/tsnet',
  networks: [
    network(A, '10.1.0.0/24', { genericOptions: { 'com.docker.network.bridge.enable_icc': 'false', 'tsnet.allow': 'ui tcp/8080' }, enableIcc: false, policy: 'ui tcp/8080' }),
    network(B, '10.2.0.0/24', { internal: true }),
  ],
  endpoints: [
    endpoint(E1, A, '10.1.0.2/24', { published: [{ family: 4, proto: 'tcp', hostIp: '', hostPort: 8080, containerIp: '10.1.0.2', containerPort: 80 }, { family: 6, proto: 'udp', hostIp: '::1', hostPort: 53, containerIp: 'fd00::2', containerPort: 5353 }] }),
    endpoint(E2, B, '10.2.0.3/24', { joined: false }),
  ],
  pools: [poolA, poolB],
  leases,
  names: { source: 'cache', networks: [{ id: A, name: 'web', driver: 'tsnet', subnets: ['10.1.0.0/24'] }] },
  containers: new Map(),
  daemon: { running: false, socket: '/run/docker/plugins/tsnet.sock', reason: 'not running (no socket file at /run/docker/plugins/tsnet.sock)' },
  ...over,
})

t.test('names: Docker first, then the lease owner of the same address in the network\'s own pool', async (t) => {
  let m = statusModel(input())
  t.equal(m.networks[0]?.name, 'web', "the network's cached name")
  t.equal(m.networks[1]?.name, undefined, 'no name for a network Docker did not list')
  t.match(m.endpoints[0], { container: 'from-lease', containerFrom: 'lease' }, "the lease's owner")
  t.equal(m.endpoints[1]?.container, undefined, 'a lease with another address in another pool is not taken')
  m = statusModel(input({ containers: new Map([[E1, '/c1']]) }))
  t.match(m.endpoints[0], { container: 'c1', containerFrom: 'docker' }, "Docker's name wins, without its slash")
})

t.test('--json keeps the records whole, with names, bridge and store counts added', async (t) => {
  const m = JSON.parse(JSON.stringify(statusModel(input()))) as Record<string, any>
  t.match(m.networks[0], { id: A, name: 'web', bridge: `tsbr-${A.slice(0, 10)}`, spec: { bridge: `tsbr-${A.slice(0, 10)}` }, mtu: 1450, policy: 'ui tcp/8080' })
  t.match(m.endpoints[0], { id: E1, address: '10.1.0.2/24', mac: '02:42:0a:00:00:02', published: [{ hostPort: 8080, proto: 'tcp', containerPort: 80 }] })
  t.match(m.store, { kind: 'embedded', path: '/var/lib/tsnet/store', reachable: true, networks: 2, endpoints: 2, pools: 2, leases: 3 })
  t.same(m.leases.length, 3)
  t.match(m.daemon, { running: false })
})

t.test('the text: networks with mode, bridge, MTU, subnets, options and policy; containers with addresses, MACs and ports', async (t) => {
  const text = statusText(statusModel(input({ containers: new Map([[E1, 'c1']]) })), NOW)
  t.match(text, 'daemon: not running (no socket file at /run/docker/plugins/tsnet.sock); what follows is what the store holds')
  t.match(text, `networks: 2\n  web (${A.slice(0, 12)})  bridge tsbr-${A.slice(0, 10)}  mtu 1450  10.1.0.0/24 gw 10.1.0.1  icc off\n`)
  t.match(text, '    options: com.docker.network.bridge.enable_icc=false\n    allow: ui tcp/8080\n')
  t.match(text, `    c1  10.1.0.2/24  02:42:0a:00:00:02  tsv${E1.slice(0, 12)}  joined  ports 0.0.0.0:8080->10.1.0.2:80/tcp [::1]:53->[fd00::2]:5353/udp\n`)
  t.match(text, `  ${B.slice(0, 12)}  bridge tsbr-${B.slice(0, 10)}  mtu 1450  10.2.0.0/24 gw 10.2.0.1  internal\n    endpoint ${E2.slice(0, 12)}  10.2.0.3/24`)
  t.match(text, '  reconcile  unknown: only the running daemon knows')
  t.match(text, '  store      embedded at /var/lib/tsnet/store, reachable: 2 network(s), 2 endpoint(s), 2 pool(s), 3 lease(s)')
  t.match(text, 'pools: 2\n  LocalDefault/10.1.0.0/24  2 leased: 10.1.0.1 10.1.0.2\n')
})

const daemon = (over: Partial<DaemonStatus> = {}): DaemonStatus => ({
  pid: 42, version: '0.1.0', startedAt: ago(3600), socket: '/s.sock', stateDir: '/var/lib/tsnet', reconcileIntervalSec: 30,
  gc: { state: 'off', reason: 'no Docker API (--docker-host is empty)' }, docker: { state: 'off' }, ...over,
})

t.test('health lines from the daemon', async (t) => {
  t.equal(when(ago(90), NOW), `${ago(90).replace('.000Z', 'Z')} (1 min ago)`)
  t.match(reconcileLine(daemon(), NOW), /^boot reconcile in progress; then every 30 s/)
  const pass = { at: ago(10), kind: 'periodic' as const, changes: [], failed: [], missing: [], foreign: [], ms: 12 }
  const repair = { ...pass, at: ago(600), kind: 'event' as const, changes: ['create link tsbr-aa', 'create addr tsbr-aa 10.1.0.1/24', 'update chains', 'create set x y'] }
  t.equal(reconcileLine(daemon({ reconcile: pass, lastRepair: repair }), NOW),
    `last ${ago(10).replace('.000Z', 'Z')} (10 s ago), periodic, 12 ms: nothing to repair; last repair ${ago(600).replace('.000Z', 'Z')} (10 min ago): ` +
    'create link tsbr-aa, create addr tsbr-aa 10.1.0.1/24, update chains and 1 more; every 30 s and when a tsnet link goes')
  t.match(reconcileLine(daemon({ reconcile: { ...repair, failed: [{ change: 'create link x', error: 'EPERM' }] }, reconcileIntervalSec: 0 }), NOW),
    /repaired 4: .*; 1 failed: create link x \(EPERM\); automatic repair off \(--reconcile-interval 0\)$/)
  t.equal(gcLine({ state: 'off', reason: 'no Docker API' }, NOW), 'off: no Docker API')
  t.match(gcLine({ state: 'waiting', since: ago(400), reason: 'Docker does not answer: connect ENOENT /x.sock' }, NOW), /^waiting for Docker since .* \(6 min ago\): Docker does not answer: connect ENOENT/)
  t.match(gcLine({ state: 'refused', since: ago(5), reason: 'the store belongs to Docker engine A' }, NOW), /^REFUSED since .*: the store belongs to Docker engine A$/)
  t.match(gcLine({ state: 'running', since: ago(3600), lastPass: { at: ago(20), unexplained: 2, collected: 1 } }, NOW), /^running since .* \(1 h ago\); last pass .* \(20 s ago\): 2 record\(s\) Docker does not explain, 1 collected$/)

  const silent = statusText(statusModel(input({ daemon: { running: true, socket: '/s.sock', status: daemon({ docker: { state: 'silent', dockerHost: 'unix:///wrong.sock', since: ago(360), reason: 'connect ENOENT' } }) } })), NOW)
  t.match(silent, 'daemon: running, pid 42, version 0.1.0')
  t.match(silent, /  docker     NOT ANSWERING at unix:\/\/\/wrong.sock since .* \(6 min ago\): connect ENOENT; names as the daemon last saw them/)
  t.match(silent, /  gc         off: no Docker API/)
  const cluster = (c: Partial<NonNullable<DaemonStatus['cluster']>>) => statusText(statusModel(input({ daemon: { running: true, socket: '/s.sock', status: daemon({ cluster: { hostId: 'h-1', registered: false, leader: false, remoteEndpoints: 12, ...c } }) } })), NOW)
  t.match(cluster({ remotesFrom: 'saved copy' }), /  cluster    host h-1, NOT registered in etcd .*, 12 remote endpoint\(s\) known \(from the copy saved on disk: etcd not listed yet\)/,
    'after a restart with etcd away, the remote endpoints rendered from the saved copy are counted and said to be so')
  t.notMatch(cluster({ registered: true, remotesFrom: 'etcd' }), /saved on disk/, 'control: once etcd listed, no such remark')
  const off = statusText(statusModel(input({ names: { source: 'none', networks: [] }, daemon: { running: true, socket: '/s.sock', status: daemon() } })), NOW)
  t.match(off, '  docker     off in the daemon: no --docker-host, so garbage collection and policies that name networks are off; no names (give --docker-host to read them from Docker)')
})
