// tsnet doctor's host checks for overlay networks, pure: the /proc/net/udp parser, a VXLAN port
// held by a process (the reading marks which sockets a process holds), an MTU the
// underlay cannot carry once wrapped, and overlay networks that reach no other host. Each with
// its positive control (the same reading, one value changed, and the finding appears).
import t from 'tap'
import type { NetworkRecord, OverlayNetwork } from '../../src/core/records.js'
import { buildDirectory } from '../../src/observe/directory.js'
import { hostFindings, type HostReadings } from '../../src/observe/host-checks.js'
import { lonelyOverlay, overlayMtu, unroutablePeers, vxlanPortTaken } from '../../src/observe/overlay-checks.js'
import { localAddressText, parseProcUdp } from '../../src/observe/proc-net-udp.js'

// As this kernel writes them (captured from /proc/net/udp and udp6 here).
const UDP4 = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  612: 00000000:12B5 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 0 2 0000000000000000 0
 1021: 0100007F:BB7F 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7924484 2 00000000af4e8055 0
`
const UDP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
13535: 00000000000000000000000001000000:12B5 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7924485 2 00000000af4e8055 0
`

t.test('/proc/net/udp: port, inode and address of each socket; the header is no socket', async (t) => {
  const v4 = parseProcUdp(UDP4, 4)
  t.same(v4.map((s) => [s.port, s.inode, localAddressText(s)]), [[4789, 0, '0.0.0.0'], [47999, 7924484, '127.0.0.1']])
  const v6 = parseProcUdp(UDP6, 6)
  t.same(v6.map((s) => [s.port, s.inode, localAddressText(s)]), [[4789, 7924485, '::1']])
  t.same(parseProcUdp('garbage\n\n', 4), [], 'nothing that is not a socket line')
})

const overlay = (id: string, extra: Partial<OverlayNetwork> = {}): OverlayNetwork => ({
  id, mode: 'overlay', spec: { bridge: `tsbr-${id.slice(0, 10)}`, vxlan: `tsvx-${id.slice(0, 10)}`, vni: 4097, port: 4789, underlayMtu: 1500 },
  mtu: 1450, internal: false, ipv6: false, ipv4Subnets: [{ pool: '10.210.0.0/24' }], ipv6Subnets: [], enableIpMasquerade: false, enableIcc: true,
  genericOptions: {}, createdAt: '2026-03-01T12:00:00Z', ...extra,
})
const O1 = 'q1w2e3r4t5y6u7i8o9p0asdfg'
const O2 = 'z1x2c3v4b5n6m7a8s9d0fghjk'
const nets: NetworkRecord[] = [overlay(O1), overlay(O2)]
const dir = buildDirectory(nets, [], new Map([[O1, 'ov1'], [O2, 'ov2']]), new Map())
const clean: HostReadings = {
  routes: [], uplink: { dev: 'eth0', mtu: 1500 }, brNetfilter: true, forwarding: {}, forwardPolicy: {},
  udp: parseProcUdp(UDP4, 4).map((s) => ({ ...s, process: s.port !== 4789 })), underlay: { dev: 'eth1', mtu: 1500, family: 4 }, swarm: { peers: 2, from: 'daemon' },
}

t.test('a clean overlay host: no finding (the control every case below changes one value of)', async (t) => {
  t.same(hostFindings(nets, clean, dir), [])
})

t.test("the VXLAN port: a kernel device's socket is fine, a process's socket on it is a finding, once for both networks", async (t) => {
  t.same(vxlanPortTaken(nets, clean, dir), [], 'a socket no process holds on 4789 is the VXLAN device')
  const squatted = { ...clean, udp: [...clean.udp!, ...parseProcUdp(UDP6, 6).map((s) => ({ ...s, process: true }))] }
  const found = vxlanPortTaken(nets, squatted, dir)
  t.equal(found.length, 1)
  t.match(found[0], {
    area: 'host', remedy: 'manual',
    problem: /^UDP port 4789, the VXLAN port of overlay network ov1 \(q1w2e3r4t5y6\), network ov2 \(z1x2c3v4b5n6\), is bound by a process's socket \(\[::1\]:4789, inode 7924485\), not by tsnet's VXLAN device/,
    fix: /ss -ulpn 'sport = :4789'.*tsnet doctor --fix/,
  })
  t.same(vxlanPortTaken([overlay(O1, { spec: { ...overlay(O1).spec, port: 4790 } })], squatted, dir), [], 'a process on another port is none of its business')
})

t.test('MTU: the underlay must carry the network MTU plus 50 (IPv4) or 70 (IPv6) bytes of VXLAN', async (t) => {
  t.same(overlayMtu(nets, clean, dir), [], '1450 over 1500 fits')
  const big = [overlay(O1, { mtu: 1451 })]
  t.match(overlayMtu(big, clean, dir), [{ problem: /overlay network ov1 \(q1w2e3r4t5y6\) has MTU 1451, but its underlay eth1 carries 1500 and VXLAN takes 50 bytes of it: packets over 1450 bytes/, fix: /-o com\.docker\.network\.driver\.mtu=1450/ }])
  t.match(overlayMtu(nets, { ...clean, underlay: { dev: 'eth1', mtu: 1500, family: 6 } }, dir), [{ problem: /takes 70 bytes/ }, { problem: /ov2/ }], 'an IPv6 underlay takes 70')
  const noUnderlay: HostReadings = { ...clean }
  delete noUnderlay.underlay
  t.match(overlayMtu(big, noUnderlay, dir), [{ problem: /underlay eth0 carries 1500/ }], 'without the swarm address, the uplink stands in')
})

t.test('no peers while overlay networks exist: the network reaches no other host', async (t) => {
  t.same(lonelyOverlay(nets, clean, dir), [], 'two peers known')
  const alone = lonelyOverlay(nets, { ...clean, swarm: { peers: 0, from: 'store' } }, dir)
  t.match(alone, [{ area: 'host', problem: /^network ov1 \(q1w2e3r4t5y6\), network ov2 \(z1x2c3v4b5n6\) are overlay networks, but the stored peer book holds no other host of the swarm: the network reaches no other host$/, fix: /docker swarm join-token worker/ }])
  const none: HostReadings = { ...clean }
  delete none.swarm
  t.match(lonelyOverlay([overlay(O1)], none, dir), [{ problem: /^network ov1 \(q1w2e3r4t5y6\) is an overlay network, but tsnet knows no other host/ }])
  t.same(lonelyOverlay([], { ...clean, swarm: { peers: 0, from: 'daemon' } }, dir), [], 'no overlay network: nothing to reach')
})

t.test('a swarm host this one has no route to is a finding; a connected or default route covers it', async (t) => {
  const readings: HostReadings = {
    ...clean, routes: [{ dst: '10.251.0.0/24', dev: 'eth1' }], defaultRoutes: [],
    swarm: { peers: 3, from: 'daemon', addresses: ['10.251.0.2', '10.252.0.9', 'fd00:9::2'] },
  }
  const found = unroutablePeers(nets, readings, dir)
  t.same(found.map((f) => f.problem.split(' is unreachable')[0]), ['swarm host 10.252.0.9', 'swarm host fd00:9::2'],
    'the peers outside every route, and not the one on the connected subnet')
  t.match(found[0]?.fix, /ip route add 10\.252\.0\.9\/32 via/)
  t.same(unroutablePeers(nets, { ...readings, defaultRoutes: [4, 6] }, dir), [], 'positive control: default routes of both families reach them all')
  t.same(unroutablePeers(nets, { ...readings, defaultRoutes: undefined }, dir), [], 'routes not read: no verdict')
  t.same(unroutablePeers([], readings, dir), [], 'no overlay network: no verdict')
  t.equal(hostFindings(nets, readings, dir).filter((f) => f.problem.includes('unreachable from here')).length, 2, 'doctor runs the check')
})
