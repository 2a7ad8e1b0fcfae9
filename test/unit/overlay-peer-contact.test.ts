// The swarm's hosts with their last contact: the pure book keeps when Docker last named each
// peer, the swarm service stamps it and persists it (at most once a minute when only times
// moved), a restart keeps it, an older book without times still loads, and `tsnet status`
// shows it from the daemon or, without one, from the stored book "as of the last run".
import t from 'tap'
import type { Logger } from 'pino'
import { parseDefaultPools, DOCKER_DEFAULT_POOLS_TEXT } from '../../src/core/ipam.js'
import { checkStoredRecord } from '../../src/core/record-check.js'
import type { OverlayNetwork } from '../../src/core/records.js'
import type { Config } from '../../src/config.js'
import type { Clock } from '../../src/engine/clock.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { openServices } from '../../src/main.js'
import { EMPTY_BOOK, contactAdvanced, departed, discovered, fromDocker, peerEntries, remembered, sameBook } from '../../src/modes/overlay-peers.js'
import { statusText } from '../../src/observe/status-text.js'
import { statusModel } from '../../src/observe/status-view.js'
import { FileStore } from '../../src/store/file-store.js'
import { log, tempDir } from './fixtures/util.js'

const L: Logger = log
const T0 = Date.parse('2026-03-01T12:00:00Z')
const at = (s: number) => new Date(T0 + s * 1000).toISOString()

t.test('the pure book: DiscoverNew and Docker lists stamp a last contact; a departed peer takes its time along', async (t) => {
  let b = discovered(EMPTY_BOOK, '10.0.0.1', true, at(0))
  t.same(b.contact ?? {}, {}, 'this node has no last contact')
  b = discovered(b, '10.0.0.2', false, at(1))
  t.same(b.contact, { '10.0.0.2': at(1) })
  const again = discovered(b, '10.0.0.2', false, at(5))
  t.same(again.contact, { '10.0.0.2': at(5) }, 'a repeated DiscoverNew moves the time')
  t.ok(sameBook(b, again), 'but not the peers')
  b = fromDocker(again, [['10.0.0.1', '10.0.0.3']], at(9))
  t.same(peerEntries(b), [
    { address: '10.0.0.2', source: 'discovery', lastContact: at(5) },
    { address: '10.0.0.3', source: 'docker', lastContact: at(9) },
  ], 'a list stamps only the hosts it names (not this node)')
  t.same(remembered(b).contact, b.contact, 'a restart keeps the times of the last run')
  const gone = fromDocker(remembered(b), [['10.0.0.2']], at(20))
  t.same(gone.contact, { '10.0.0.2': at(20) }, 'a peer no list shows goes with its time')
  t.same(departed(b, '10.0.0.2').contact, { '10.0.0.3': at(9) }, 'DiscoverDelete drops the time')
})

t.test('an older book without times still reads; the record check takes both and refuses a bad time map', async (t) => {
  const old = { self: '10.0.0.1', peers: { '10.0.0.2': 'discovery' as const } }
  t.same(peerEntries(old), [{ address: '10.0.0.2', source: 'discovery' }], 'no last contact, no crash')
  t.equal(checkStoredRecord('meta', 'swarm-peers', old), undefined, 'the old shape loads')
  t.equal(checkStoredRecord('meta', 'swarm-peers', { ...old, contact: { '10.0.0.2': at(0) } }), undefined, 'the new shape loads')
  t.match(checkStoredRecord('meta', 'swarm-peers', { ...old, contact: { '10.0.0.2': 7 } }), /contact\.10\.0\.0\.2/, 'positive control: a bad time is refused')
  t.notOk(contactAdvanced({ ...old, contact: { '10.0.0.2': at(0) } }, { ...old, contact: { '10.0.0.2': at(59) } }, 60_000), 'under a minute: not worth a write')
  t.ok(contactAdvanced({ ...old, contact: { '10.0.0.2': at(0) } }, { ...old, contact: { '10.0.0.2': at(60) } }, 60_000), 'a minute: written')
  t.ok(contactAdvanced(old, { ...old, contact: { '10.0.0.2': at(1) } }, 60_000), 'a first time: written')
})

t.test('the swarm service stamps, persists at most once a minute when only times move, and a restart keeps them', async (t) => {
  const dir = await tempDir(t)
  let now = T0
  const clock: Clock = { now: () => now, iso: () => new Date(now).toISOString() }
  const config: Config = {
    socket: `${dir}/tsnet.sock`, stateDir: dir, logLevel: 'silent', defaultPools: parseDefaultPools(DOCKER_DEFAULT_POOLS_TEXT),
    gcIntervalSec: 0, procSys: '/proc/sys', reconcileIntervalSec: 0, scope: 'global', vniRange: { first: 256, last: 4095 }, vxlanPort: 4789,
  }
  const host = new FakeHost()
  const stored = async () => {
    const store = await FileStore.open(dir, undefined, { readOnly: true })
    const v = (await store.get<{ contact?: Record<string, string> }>('meta/swarm-peers'))?.value
    await store.close()
    return v?.contact
  }
  const s = await openServices(config, host, L, clock)
  const changes: Array<[number, number]> = []
  s.swarm.onChange = (added, gone) => changes.push([added, gone])
  await s.swarm.discoverNew({ DiscoveryType: 1, DiscoveryData: { Address: '10.250.0.1', Self: true } }, L)
  await s.swarm.discoverNew({ DiscoveryType: 1, DiscoveryData: { Address: '10.250.0.2', Self: false } }, L)
  t.same(s.daemon.status().overlay, { self: '10.250.0.1', peers: [{ address: '10.250.0.2', source: 'discovery', lastContact: at(0) }] }, '/Tsnet.Status has the book')
  now = T0 + 10_000
  await s.swarm.dockerPeers([['10.250.0.1', '10.250.0.2']], L)
  t.equal(s.swarm.status().peers[0]?.lastContact, at(10), 'the list moved the time in memory')
  t.same(await stored(), { '10.250.0.2': at(0) }, 'but 10 s is not worth a write')
  now = T0 + 70_000
  await s.swarm.dockerPeers([['10.250.0.2', '10.250.0.3']], L)
  t.same(await stored(), { '10.250.0.2': at(70), '10.250.0.3': at(70) }, 'a new peer is written with its time')
  t.same(changes, [[1, 0], [1, 0]], 'each change of the peers is told (metrics), not a mere new time')
  s.swarm.stop()
  const again = await openServices(config, host, L, clock)
  t.same(again.swarm.status().peers.map((p) => [p.address, p.source, p.lastContact]),
    [['10.250.0.2', 'docker', at(70)], ['10.250.0.3', 'docker', at(70)]], 'a restart keeps the last contacts (each to be confirmed again)')
  again.swarm.stop()
})

const overlay: OverlayNetwork = {
  id: 'q1w2e3r4t5y6u7i8o9p0asdfg', mode: 'overlay', spec: { bridge: 'tsbr-q1w2e3r4t5', vxlan: 'tsvx-q1w2e3r4t5', vni: 4097, port: 4789, underlayMtu: 1500 },
  mtu: 1450, internal: false, ipv6: false, ipv4Subnets: [{ pool: '10.210.0.0/24' }], ipv6Subnets: [], enableIpMasquerade: false, enableIcc: true, genericOptions: {}, createdAt: at(0),
}
const base = {
  stateDir: '/var/lib/tsnet', networks: [overlay], endpoints: [], pools: [], leases: [], names: { source: 'none' as const, networks: [] }, containers: new Map<string, string>(),
}
const stopped = { running: false as const, socket: '/run/x.sock', reason: 'not running (no socket file at /run/x.sock)' }

t.test('status: VNI, VXLAN device and port per overlay network; peers from the daemon, else from the stored book', async (t) => {
  const daemonStatus = {
    pid: 1, version: '0', startedAt: at(0), socket: '/run/x.sock', stateDir: '/var/lib/tsnet', reconcileIntervalSec: 0,
    gc: { state: 'off' as const, reason: 'x' }, docker: { state: 'off' as const },
    overlay: { self: '10.250.0.1', peers: [{ address: '10.250.0.2', source: 'discovery' as const, lastContact: at(30) }, { address: '10.250.0.3', source: 'docker' as const }] },
  }
  const live = statusModel({ ...base, daemon: { running: true, socket: '/run/x.sock', status: daemonStatus }, peerBook: { peers: { '10.9.9.9': 'docker' } } })
  t.same(live.peers, { ...daemonStatus.overlay, from: 'daemon' }, "the daemon's book wins over the stored one")
  const text = statusText(live, T0 + 90_000)
  t.match(text, /overlay vni 4097 vxlan tsvx-q1w2e3r4t5 udp\/4789 bridge tsbr-q1w2e3r4t5 {2}mtu 1450/)
  t.match(text, /swarm peers: 2 \(the daemon now\)\n {2}this node {2}10\.250\.0\.1\n {2}10\.250\.0\.2 {2}DiscoverNew from Docker {2}last contact 2026-03-01T12:00:30Z \(1 min ago\)\n {2}10\.250\.0\.3 {2}Docker's network peer list {2}last contact never recorded/)

  const offline = statusModel({ ...base, daemon: stopped, peerBook: { self: '10.250.0.1', peers: { '10.250.0.2': 'discovery' }, contact: { '10.250.0.2': at(0) } } })
  t.equal(offline.peers?.from, 'store')
  t.match(statusText(offline, T0), /swarm peers: 1 \(as of the daemon's last run \(meta\/swarm-peers\)/)

  const lonely = statusText(statusModel({ ...base, daemon: stopped }), T0)
  t.match(lonely, /swarm peers: 0 .*\n {2}this node {2}not told yet.*\n {2}no other host known: overlay networks reach no other host/)
  t.equal(statusModel({ ...base, networks: [], daemon: stopped }).peers, undefined, 'positive control: no overlay, no book, no peers section')
})
