// Overlay mode on the real kernel, two simulated hosts and a hostile third one on an underlay,
// a whole `tsnet serve` (global scope) per host, no Docker: the data plane across hosts, MTU,
// announcements, VXLAN from an unknown host dropped (next to the same packet from a peer, which is
// learned), the host closed to overlay containers, peers leaving and coming back, a restart that
// keeps the data plane, coexistence with a Docker-style VXLAN device on the same port, and a
// removal that leaves nothing. Run as root: npx tap run test/integration/overlay.test.ts
import t from 'tap'
import { fileURLToPath } from 'node:url'
import { chainRules, createNetns, link } from './lib/netns.js'
import { call, container, discover, fdb, pings, startTsnet, underlay } from './lib/overlay-hosts.js'

t.setTimeout(240_000)
const NET = 'q1w2e3r4t5y6u7i8o9p0asdfg'
const EP_A = 'a1'.repeat(32)
const EP_B = 'b2'.repeat(32)
const SEND = fileURLToPath(new URL('./fixtures/send-vxlan.mjs', import.meta.url))
const VXLAN = 'tsvx-q1w2e3r4t5'

t.test('two hosts, one overlay network', async (t) => {
  const { hosts, dir } = await underlay(t, ['10.99.0.1', '10.99.0.2', '10.99.0.3'])
  const [A, B, R] = hosts as [typeof hosts[0], typeof hosts[0], typeof hosts[0]]
  // Docker's own overlay on host A: a VXLAN device on 4789 without a source address, VNI 4096.
  await A.ns.ok('ip', ['link', 'add', 'vx-001000', 'type', 'vxlan', 'id', '4096', 'dstport', '4789'])
  const a = await startTsnet(A, dir)
  const b = await startTsnet(B, dir)
  await discover(a, B.ip)
  await discover(b, A.ip)
  t.same(await a.ok('NetworkDriver.GetCapabilities', {}), { Scope: 'global', ConnectivityScope: 'global' })

  // A is the leader: it allocates; Swarm gives the options to every node's CreateNetwork.
  const ipv4 = [{ AddressSpace: 'LocalDefault', Pool: '10.210.0.0/24', Gateway: '10.210.0.1/24' }]
  const { Options: options } = await a.ok('NetworkDriver.AllocateNetwork', { NetworkID: NET, Options: {}, IPv4Data: ipv4 })
  t.same(options, { 'tsnet.mode': 'overlay', 'tsnet.vni': '256', 'tsnet.vxlan-port': '4789' })
  for (const p of [a, b]) await p.ok('NetworkDriver.CreateNetwork', { NetworkID: NET, Options: { 'com.docker.network.generic': options }, IPv4Data: ipv4, IPv6Data: [] })
  const vx = await link(A.ns, VXLAN)
  t.equal(vx?.mtu, 1450, 'vxlan MTU = underlay 1500 - 50')
  t.ok(await link(A.ns, 'vx-001000'), "Docker's VXLAN device on the same port stays (disjoint VNIs)")

  const ctrA = await container(t, A, NET, EP_A, '10.210.0.2/24')
  const learned = (await fdb(B.ns, VXLAN)).find((e) => e.mac === '02:42:0a:d2:00:02' && e.dst !== undefined)
  t.equal(learned?.dst, A.ip, "A's announcement at Join taught B where the new container is, before it sent anything")
  const ctrB = await container(t, B, NET, EP_B, '10.210.0.3/24')
  t.equal((await link(ctrA, 'eth0'))?.mtu, 1450, "the container's end has the overlay MTU")
  t.equal(await link(A.ns, `tsv${EP_A.slice(0, 12)}`), undefined, 'no host end: the container has a macvlan child of the VXLAN device')
  t.match(await ctrA.ok('ip', ['-d', 'link', 'show', 'eth0']), /macvlan mode bridge/, 'in bridge mode')

  await t.test('across hosts, by IP, and a full-size packet', async (t) => {
    t.ok(await pings(ctrA, '10.210.0.3'), 'A → B')
    t.ok(await pings(ctrB, '10.210.0.2'), 'B → A')
    t.ok(await pings(ctrA, '10.210.0.3', 2, 1422), '1422 bytes of ICMP payload fill the 1450 MTU exactly')
  })

  await t.test('VXLAN from a host that is not a peer is dropped; the same from a peer is learned', async (t) => {
    const send = (from: typeof A, mac: string, ip: string) => from.ns.ok(process.execPath, [SEND, from.ip, B.ip, '4789', '256', mac, ip])
    await send(R, '02:42:0a:d2:00:63', '10.210.0.99')
    await send(A, '02:42:0a:d2:00:62', '10.210.0.98')
    await new Promise((r) => setTimeout(r, 300))
    const macs = (await fdb(B.ns, VXLAN)).map((e) => e.mac)
    t.ok(macs.includes('02:42:0a:d2:00:62'), 'control: the packet from peer A was taken (B learned the MAC)')
    t.notOk(macs.includes('02:42:0a:d2:00:63'), 'the same packet from unknown host R was dropped before the vxlan device saw it')
    const rules = (await chainRules(B.ns, 'iptables', 'TSNET-INPUT')) ?? []
    t.ok(rules.some((r) => r.includes('--dport 4789') && r.includes('tsnet-vtep4')), 'by the VXLAN rule of TSNET-INPUT')
    // Peers' VXLAN leaves the chain at the VTEP pass, after the drop of what overlay devices send
    // and before the per-network drops, whose u32 matches it no longer runs.
    const kinds = rules.map((r) => (r.includes('tsnet:overlay-to-host') ? 'host' : r.includes('tsnet:vtep-pass') ? 'pass' : r.includes('-j DROP') ? 'vni' : 'other'))
    t.same(kinds, ['host', 'pass', 'vni'], 'TSNET-INPUT: overlay-to-host drop, VTEP pass, per-network drop, in that order')
    const counts = await B.ns.ok('iptables', ['-w', '10', '-v', '-x', '-n', '-L', 'TSNET-INPUT'])
    const packets = (tag: string) => Number(new RegExp(`^\\s*(\\d+)\\s+\\d+\\s+\\w+.*${tag}`, 'm').exec(counts)?.[1] ?? -1)
    t.ok(packets('tsnet:vtep-pass') >= 1, "the peer's datagram left through the VTEP pass")
    t.ok(packets('tsnet:net:') >= 1, "R's datagram was dropped by the network's rule")
  })

  // Every overlay container also sits on a local bridge (docker_gwbridge), and one with
  // CAP_NET_RAW can send the host VXLAN with a peer's source address, which TSNET-INPUT's source
  // check lets through. TSNET-PREROUTING's reverse-path check drops it; the peer's own datagram
  // (the test above) passes the same check.
  await t.test('VXLAN from a container on a local bridge that takes a peer\'s address is dropped', async (t) => {
    const c = await createNetns(t)
    await B.ns.ok('ip', ['link', 'add', 'gwt0', 'type', 'bridge'])
    t.teardown(() => B.ns.run('ip', ['link', 'del', 'gwt0']))
    await B.ns.ok('ip', ['addr', 'add', '172.31.0.1/24', 'dev', 'gwt0'])
    await B.ns.ok('ip', ['link', 'set', 'gwt0', 'up'])
    await B.ns.ok('ip', ['link', 'add', 'gwt1', 'master', 'gwt0', 'up', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', c.name])
    await c.ok('ip', ['addr', 'add', '172.31.0.2/24', 'dev', 'eth0'])
    await c.ok('ip', ['addr', 'add', `${A.ip}/32`, 'dev', 'eth0'])
    await c.ok('ip', ['link', 'set', 'eth0', 'up'])
    await c.ok(process.execPath, [SEND, A.ip, '172.31.0.1', '4789', '256', '02:42:0a:d2:00:61', '10.210.0.97'])
    await new Promise((r) => setTimeout(r, 300))
    t.notOk((await fdb(B.ns, VXLAN)).some((e) => e.mac === '02:42:0a:d2:00:61'), "dropped: it came from a local bridge, not from the peer's side")
    const counted = /^\s*(\d+)\s+\d+\s+DROP.*tsnet:vtep-spoof/m.exec(await B.ns.ok('iptables', ['-w', '10', '-t', 'mangle', '-v', '-x', '-n', '-L', 'TSNET-PREROUTING']))
    t.ok(Number(counted?.[1] ?? 0) >= 1, "by TSNET-PREROUTING's reverse-path rule")
  })

  await t.test('the host is closed to overlay containers, delivered or routed', async (t) => {
    // The VXLAN device's MAC (the same on every host: it is derived from the network): a frame to
    // it leaves A through VXLAN, and B's device hands it to B's own stack, not to a container.
    const mac = (await link(A.ns, VXLAN))?.address as string
    t.equal((await link(B.ns, VXLAN))?.address, mac, 'one MAC for the network on every host')
    const drops = async () => {
      let n = 0
      for (const h of [A, B]) {
        const m = /^\s*(\d+)\s+\d+\s+DROP.*tsnet:overlay-to-host/m.exec(await h.ns.ok('iptables', ['-w', '10', '-v', '-x', '-n', '-L', 'TSNET-INPUT']))
        n += Number(m?.[1] ?? 0)
      }
      return n
    }
    const before = await drops()
    for (const h of [A, B]) await h.ns.ok('sysctl', ['-qw', 'net.ipv4.ip_forward=1'])
    await ctrA.ok('ip', ['route', 'add', '10.99.0.0/24', 'dev', 'eth0'])
    for (const ip of ['10.99.0.1', '10.99.0.2', '10.99.0.3']) await ctrA.ok('ip', ['neigh', 'replace', ip, 'lladdr', mac, 'dev', 'eth0', 'nud', 'permanent'])
    t.ok(await pings(B.ns, '10.99.0.1'), 'control: host A answers pings on the underlay')
    t.notOk(await pings(ctrA, '10.99.0.1', 2), "host A's own address: dropped in TSNET-INPUT")
    t.notOk(await pings(ctrA, '10.99.0.2', 2), "host B's own address, which B's device takes in: dropped in TSNET-INPUT")
    t.notOk(await pings(ctrA, '10.99.0.3', 2), 'another host, routed: dropped (an overlay network routes nothing)')
    t.ok((await drops()) > before, 'the overlay-to-host rule counted the packets')
    for (const h of [A, B]) {
      t.equal(await h.ns.ok('cat', [`/proc/sys/net/ipv6/conf/${VXLAN}/disable_ipv6`]).then((s) => s.trim()), '1', `no IPv6 on ${h.ns.name}'s VXLAN device`)
    }
    await ctrA.ok('ip', ['route', 'del', '10.99.0.0/24', 'dev', 'eth0'])
  })

  await t.test('a host that leaves: its flood entry and what was learned behind it go at once; it comes back', async (t) => {
    t.ok((await fdb(A.ns, VXLAN)).some((e) => e.dst === B.ip && e.mac !== '00:00:00:00:00:00'), 'A learned something behind B')
    await discover(a, B.ip, false, false)
    t.same((await fdb(A.ns, VXLAN)).filter((e) => e.dst === B.ip), [], 'nothing toward B is left on A')
    t.notOk(await pings(ctrA, '10.210.0.3', 1), 'and nothing goes there')
    await discover(a, B.ip)
    t.ok(await pings(ctrA, '10.210.0.3'), 'told again, A reaches B again')
  })

  await t.test('a tsnet restart keeps the data plane and plans nothing', async (t) => {
    await a.stop()
    t.ok(await pings(ctrA, '10.210.0.3'), 'the kernel keeps forwarding while tsnet is down')
    await a.start()
    await discover(a, A.ip, true)
    t.same((await a.ok('Tsnet.Reconcile', { DryRun: true })).Changes, [], 'the reconcile after the restart plans nothing')
    t.ok(await pings(ctrA, '10.210.0.3'), 'and traffic still flows')
  })

  await t.test('removal leaves nothing of tsnet on either host', async (t) => {
    for (const [p, ep] of [[a, EP_A], [b, EP_B]] as const) {
      await p.ok('NetworkDriver.Leave', { NetworkID: NET, EndpointID: ep })
      await p.ok('NetworkDriver.DeleteEndpoint', { NetworkID: NET, EndpointID: ep })
      await p.ok('NetworkDriver.DeleteNetwork', { NetworkID: NET })
    }
    for (const h of [A, B]) {
      const names = (await h.ns.ok('ip', ['-o', 'link', 'show'])).split('\n').filter((l) => /: ts(br|vx|v|c|m)/.test(l))
      t.same(names, [], `${h.ns.name}: no tsnet link`)
      t.notMatch(await h.ns.ok('iptables-save', []), /TSNET/, `${h.ns.name}: no TSNET chain or rule`)
      t.equal((await h.ns.ok('ipset', ['list', '-n'])).trim(), '', `${h.ns.name}: no ipset`)
    }
    t.ok(await link(A.ns, 'vx-001000'), "Docker's device was never touched")
    await a.ok('NetworkDriver.FreeNetwork', { NetworkID: NET })
    t.same(await call(a.socket, 'NetworkDriver.AllocateNetwork', { NetworkID: 'n'.repeat(25), Options: {} }), { Options: { 'tsnet.mode': 'overlay', 'tsnet.vni': '256', 'tsnet.vxlan-port': '4789' } }, 'the freed VNI is given again')
  })
})
