// tsnet doctor's reading of /proc/net/udp on the real kernel, in a private namespace. On this
// kernel (6.18) a VXLAN device's socket has a nonzero inode too (asserted below, so a kernel that
// changes it shows here), so the reading marks the sockets some /proc/PID/fd holds: the device's
// is held by none, a process's is; the doctor's check tells them apart.
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readUdpSockets } from '../../src/cli/host-read.js'
import type { OverlayNetwork } from '../../src/core/records.js'
import { buildDirectory } from '../../src/observe/directory.js'
import { vxlanPortTaken } from '../../src/observe/overlay-checks.js'
import { createNetns } from './lib/netns.js'

const VXLAN_PORT = 47891
const PROCESS_PORT = 47892

const overlay = (port: number): OverlayNetwork => ({
  id: 'q1w2e3r4t5y6u7i8o9p0asdfg', mode: 'overlay', spec: { bridge: 'tsbr-q1w2e3r4t5', vxlan: 'tsit-vx', vni: 42, port, underlayMtu: 1500 },
  mtu: 1450, internal: false, ipv6: false, ipv4Subnets: [{ pool: '10.210.0.0/24' }], ipv6Subnets: [], enableIpMasquerade: false, enableIcc: true,
  genericOptions: {}, createdAt: '2026-03-01T12:00:00Z',
})

t.test("a VXLAN device's socket is held by no process, a bound process socket is", async (t) => {
  const ns = await createNetns(t)
  await ns.ok('ip', ['link', 'add', 'tsit-vx', 'type', 'vxlan', 'id', '42', 'dstport', String(VXLAN_PORT), 'nolearning'])
  await ns.ok('ip', ['link', 'set', 'dev', 'tsit-vx', 'up'])
  // A process in the namespace holding another port; its /proc/PID/net is the namespace's.
  const child = spawn('nsenter', [`--net=/run/netns/${ns.name}`, process.execPath, '-e',
    `const s = require('dgram').createSocket('udp4'); s.bind(${PROCESS_PORT}, '127.0.0.1', () => console.log('bound')); setTimeout(() => {}, 60000)`], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const [line] = await Promise.race([once(child.stdout, 'data'), once(child, 'exit').then(() => { throw new Error('the UDP process exited') })])
  t.equal(String(line).trim(), 'bound')

  const ports = new Set([VXLAN_PORT, PROCESS_PORT])
  const sockets = await readUdpSockets(ports, `/proc/${child.pid}/net`)
  t.ok(sockets, 'the files were read')
  const device = sockets!.filter((s) => s.port === VXLAN_PORT)
  const process_ = sockets!.filter((s) => s.port === PROCESS_PORT)
  t.ok(device.length > 0, "the VXLAN device's socket is listed")
  t.ok(device.every((s) => s.inode !== 0), 'with a nonzero inode on this kernel: the inode alone cannot tell')
  t.ok(device.every((s) => s.process === false), 'held by no process')
  t.equal(process_.length, 1, "the process's socket is listed")
  t.equal(process_[0]!.process, true, 'held by the process')

  const dir = buildDirectory([], [], new Map(), new Map())
  t.same(vxlanPortTaken([overlay(VXLAN_PORT)], { routes: [], brNetfilter: true, forwarding: {}, forwardPolicy: {}, udp: sockets! }, dir), [],
    "the device's own port: no finding")
  const found = vxlanPortTaken([overlay(PROCESS_PORT)], { routes: [], brNetfilter: true, forwarding: {}, forwardPolicy: {}, udp: sockets! }, dir)
  t.comment(found.map((f) => `${f.problem}\n  fix: ${f.fix}`).join('\n'))
  t.match(found,
    [{ problem: new RegExp(`UDP port ${PROCESS_PORT}, .* bound by a process's socket \\(127\\.0\\.0\\.1:${PROCESS_PORT}, inode \\d+\\)`) }],
    "positive control: a network whose port a process holds is a finding")

  await ns.ok('ip', ['link', 'set', 'dev', 'tsit-vx', 'down'])
  const after = await readUdpSockets(ports, `/proc/${child.pid}/net`)
  t.same(after!.filter((s) => s.port === VXLAN_PORT), [], 'a VXLAN device that is down holds no socket (so the reading is of the device)')
})
