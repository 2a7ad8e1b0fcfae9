// Stale UDP flows of a revoked published port (moby#8795), on the real kernel: a "host" namespace
// running tsnet's services over the real host layer (lib/services.ts: built as `tsnet serve`
// builds them, the host layer inside the namespace, holding the published port there), two "container" namespaces on its bridge, and
// a "LAN" namespace whose client keeps sending UDP from one source port to the host's published
// port. The port is revoked from the first container and published for the second; the client's
// packets must reach the second. The same run with a host whose forgetPortFlows does nothing shows
// the kernel's own behaviour (the packets keep going to the first container), so the test cannot
// pass without the clearing doing its work.
import t, { type Test } from 'tap'
import { type ChildProcess, spawn } from 'node:child_process'
import { containerVethFor } from '../../src/core/names.js'
import { createNetns, log, type Netns } from './lib/netns.js'
import { overriding, tsnetIn } from './lib/services.js'

const NET = 'c7'.repeat(32)
const EP1 = 'c1'.repeat(32)
const EP2 = 'c2'.repeat(32)
const HOST_IP = '192.168.77.1'
const CLIENT_IP = '192.168.77.2'
const PORT = 5000
const UDP = 17
const portMap = [{ Proto: UDP, IP: '', Port: PORT, HostIP: '', HostPort: PORT, HostPortEnd: PORT }]

/** Prints each datagram it receives on 0.0.0.0:PORT, one line each. */
const RECEIVER_JS = `
const s = require('dgram').createSocket('udp4')
s.on('message', (m) => console.log(String(m)))
s.bind(Number(process.argv[1]), '0.0.0.0', () => console.log('ready'))
`
/** Sends a counter to HOST:PORT every 50 ms from one source port (one conntrack flow). */
const SENDER_JS = `
const [host, port, from] = process.argv.slice(1)
const s = require('dgram').createSocket('udp4')
s.on('error', () => {})
let n = 0
s.bind(Number(from), () => { console.log('ready'); setInterval(() => s.send(String(n++), Number(port), host), 50) })
`

interface Proc {
  lines: string[]
}

function nodeIn(t: Test, ns: Netns, script: string, args: string[]): Promise<Proc> {
  const child: ChildProcess = spawn('nsenter', [`--net=/run/netns/${ns.name}`, process.execPath, '-e', script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines: string[] = []
  let buf = ''
  child.stdout?.on('data', (b: Buffer) => {
    buf += b.toString()
    const parts = buf.split('\n')
    buf = parts.pop() ?? ''
    lines.push(...parts)
  })
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  t.teardown(async () => {
    child.kill('SIGKILL')
    await exited
  })
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const poll = setInterval(() => {
      if (lines.includes('ready')) {
        clearInterval(poll)
        resolve({ lines })
      } else if (child.exitCode !== null || Date.now() - started > 10_000) {
        clearInterval(poll)
        reject(new Error(`node in ${ns.name} did not start (exit ${child.exitCode})`))
      }
    }, 20)
  })
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
/** Datagrams a receiver got (its lines but "ready"). */
const received = (p: Proc) => p.lines.filter((l) => l !== 'ready').length

async function waitForMore(p: Proc, than: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (received(p) > than) return true
    await sleep(50)
  }
  return received(p) > than
}

/** host, two containers on a tsnet network, a LAN client sending to HOST_IP:PORT; EP1 publishes PORT. */
async function world(t: Test, forget: boolean) {
  const [host, c1, c2, lan] = [await createNetns(t), await createNetns(t), await createNetns(t), await createNetns(t)]
  await host.ok('ip', ['link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', lan.name])
  await host.ok('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', 'lan0'])
  await host.ok('ip', ['link', 'set', 'lan0', 'up'])
  await lan.ok('ip', ['addr', 'add', `${CLIENT_IP}/24`, 'dev', 'eth0'])
  await lan.ok('ip', ['link', 'set', 'eth0', 'up'])

  // `forget: false` plays a tsnet that never clears conntrack entries.
  const tsnet = await tsnetIn(t, host, forget ? {} : { wrap: (h) => overriding(h, { forgetPortFlows: async () => undefined }) })
  const svc = tsnet.services
  await svc.driver.createNetwork({
    NetworkID: NET, Options: { 'com.docker.network.generic': {} }, IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.77.1.0/24', Gateway: '10.77.1.1/24' }], IPv6Data: [],
  }, log)
  const containers: Array<[string, Netns, string]> = [[EP1, c1, '10.77.1.2'], [EP2, c2, '10.77.1.3']]
  for (const [ep, ns, ip] of containers) {
    await svc.driver.createEndpoint({ NetworkID: NET, EndpointID: ep, Interface: { Address: `${ip}/24`, AddressIPv6: '', MacAddress: '' }, Options: {} }, log)
    await svc.driver.join({ NetworkID: NET, EndpointID: ep, SandboxKey: `/run/netns/${ns.name}`, Options: {} }, log)
    const dev = containerVethFor(ep)
    await host.ok('ip', ['link', 'set', 'dev', dev, 'netns', ns.name])
    await ns.ok('ip', ['addr', 'add', `${ip}/24`, 'dev', dev])
    await ns.ok('ip', ['link', 'set', 'dev', dev, 'up'])
    await ns.ok('ip', ['route', 'add', 'default', 'via', '10.77.1.1'])
  }
  const r1 = await nodeIn(t, c1, RECEIVER_JS, [String(PORT)])
  const r2 = await nodeIn(t, c2, RECEIVER_JS, [String(PORT)])
  const program = (ep: string) => svc.ports.program({ NetworkID: NET, EndpointID: ep, Options: { 'com.docker.network.portmap': portMap } }, log)
  const revoke = (ep: string) => svc.ports.revoke({ NetworkID: NET, EndpointID: ep }, log)
  await program(EP1)
  await nodeIn(t, lan, SENDER_JS, [HOST_IP, String(PORT), '40000'])
  t.ok(await waitForMore(r1, 3, 5_000), `precondition: the LAN client's packets reach container 1 through the published port (${received(r1)} so far)`)
  t.equal(received(r2), 0, 'precondition: container 2 got nothing')
  const flows = async () => (await host.run('conntrack', ['-L', '-p', 'udp', '--orig-port-dst', String(PORT)])).stdout.trim()
  return { host, r1, r2, program, revoke, flows }
}

t.test('a revoked UDP port: the client that keeps sending reaches the container that publishes it next', async (t) => {
  const { r1, r2, program, revoke, flows } = await world(t, true)
  t.match(await flows(), /dst=192\.168\.77\.1 .*dport=5000 .*src=10\.77\.1\.2 /, 'the flow is DNATed to container 1')
  await revoke(EP1)
  const atRevoke = received(r1)
  await sleep(300) // packets arrive while no rule holds the port: they start a flow of their own, not NATed
  t.match(await flows(), /dst=192\.168\.77\.1 .*dport=5000 .*src=192\.168\.77\.1 /, 'between Revoke and Program the flow goes to the host itself (Program must forget it too)')
  await program(EP2)
  t.ok(await waitForMore(r2, 3, 3_000), `after Revoke and Program for container 2, the client's packets reach container 2 (${received(r2)})`)
  const settled = received(r1)
  await sleep(500)
  t.equal(received(r1), settled, `and no longer container 1 (${settled - atRevoke} of its packets came after the revoke)`)
  t.match(await flows(), /src=10\.77\.1\.3 /, 'the flow now leads to container 2')
  t.notMatch(await flows(), /src=10\.77\.1\.2 /, 'and none to container 1')
})

t.test('control: without forgetting the flows, the client keeps reaching the revoked container', async (t) => {
  const { r1, r2, program, revoke, flows } = await world(t, false)
  await revoke(EP1)
  await sleep(300)
  await program(EP2)
  const before = received(r1)
  t.ok(await waitForMore(r1, before + 3, 3_000), `container 1 keeps getting the client's packets after the revoke (${received(r1) - before} more)`)
  t.equal(received(r2), 0, 'container 2, which publishes the port now, gets none: the old conntrack entry still decides (moby#8795)')
  t.match(await flows(), /src=10\.77\.1\.2 /, 'the kernel\'s flow still leads to container 1')
})
