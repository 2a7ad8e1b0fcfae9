// One property over every kind of request Docker and the CLI send: right after it, a reconcile (the
// dry run doctor and /Tsnet.Reconcile use) plans nothing; and the same request again (Docker
// retries) applies nothing on the host, holds no port, and leaves host and store as they were.
import t from 'tap'
import { COMMON_OPTION } from '../../src/core/docker-keys.js'
import { OPT } from '../../src/protocol/types.js'
import { epReq, netReq, openUnit, tcp, udp, type Unit } from './fixtures/services.js'
import { dockerId, log } from './fixtures/util.js'

const NET = dockerId('0a')
const NET2 = dockerId('0b')
const EP = dockerId('e1')
const EP2 = dockerId('e2')
const EP3 = dockerId('e3')
const sandbox = (ep: string) => `/var/run/docker/netns/${ep.slice(0, 12)}`

/** What a request is, how to send it, and whether even its first call must change nothing (a retry of an earlier one). */
type Step = [string, (u: Unit) => Promise<unknown>, 'retry'?]

const maps = [tcp(80, 8080), udp(53, 5353, { HostIP: '127.0.0.1' })]
const steps: Step[] = [
  ['CreateNetwork with a policy, dual stack', (u) => u.services.driver.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24', { [COMMON_OPTION.allow]: 'ui tcp/443; 10.99.0.0/16 icmp' }, {}, { pool: 'fd00:1::/64', gw: 'fd00:1::1/64' }), log)],
  ['CreateNetwork, internal', (u) => u.services.driver.createNetwork(netReq(NET2, '10.2.0.0/24', '10.2.0.1/24', {}, { [OPT.internal]: true }), log)],
  ['CreateEndpoint', (u) => u.services.driver.createEndpoint(epReq(NET, EP, '10.1.0.2/24', '', 'fd00:1::2/64', maps), log)],
  ['Join', (u) => u.services.driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: sandbox(EP), Options: { [OPT.portMap]: maps } }, log)],
  ['ProgramExternalConnectivity', (u) => u.services.ports.program({ NetworkID: NET, EndpointID: EP, Options: { [OPT.portMap]: maps } }, log)],
  ['CreateEndpoint of a second container', (u) => u.services.driver.createEndpoint(epReq(NET, EP2, '10.1.0.3/24'), log)],
  ['Join of the second', (u) => u.services.driver.join({ NetworkID: NET, EndpointID: EP2, SandboxKey: sandbox(EP2) }, log)],
  ['ProgramExternalConnectivity of the second, an ephemeral port', (u) => u.services.ports.program({ NetworkID: NET, EndpointID: EP2, Options: { [OPT.portMap]: [tcp(80)] } }, log)],
  ['CreateEndpoint on the internal network', (u) => u.services.driver.createEndpoint(epReq(NET2, EP3, '10.2.0.2/24'), log)],
  ['Docker\'s names change', (u) => u.services.names.update([
    { id: dockerId('a1'), name: 'ui', driver: 'overlay', subnets: ['10.50.0.0/24'] }, { id: dockerId('b1'), name: 'bridge', driver: 'bridge', subnets: ['172.17.0.0/16'] },
  ])],
  ['CreateNetwork again, with endpoints, ports and a policy (Docker retries)', (u) => u.services.driver.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24', { [COMMON_OPTION.allow]: 'ui tcp/443; 10.99.0.0/16 icmp' }, {}, { pool: 'fd00:1::/64', gw: 'fd00:1::1/64' }), log), 'retry'],
  ['tsnet policy set', (u) => u.services.policy.setPolicy(NET, 'ui tcp/443,tcp/8443', log)],
  ['ProgramExternalConnectivity with other mappings', (u) => u.services.ports.program({ NetworkID: NET, EndpointID: EP, Options: { [OPT.portMap]: [tcp(80, 9090)] } }, log)],
  ['RevokeExternalConnectivity', (u) => u.services.ports.revoke({ NetworkID: NET, EndpointID: EP }, log)],
  ['Leave', (u) => u.services.driver.leave({ NetworkID: NET, EndpointID: EP }, log)],
  ['DeleteEndpoint', (u) => u.services.driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log)],
  ['tsnet policy set to nothing', (u) => u.services.policy.setPolicy(NET, '', log)],
  ['DeleteNetwork of the internal one, its endpoint still there', (u) => u.services.driver.deleteNetwork({ NetworkID: NET2 }, log)],
  ['Docker\'s names change again', (u) => u.services.names.update([])],
  ['DeleteNetwork with a publishing endpoint still there', (u) => u.services.driver.deleteNetwork({ NetworkID: NET }, log)],
]

t.test('after every kind of request a reconcile plans nothing, and the request again applies nothing', async (t) => {
  const u = await openUnit(t)
  const { host } = u
  for (const [what, request, retry] of steps) {
    const first = host.state()
    await request(u)
    if (retry) t.equal(host.state(), first, `${what}: changes nothing the first time either`)
    const report = await u.dryRun()
    t.same({ changes: report.changes, failed: report.failed, foreign: report.foreign }, { changes: [], failed: [], foreign: [] }, `${what}: a reconcile right after plans nothing`)
    const hostBefore = host.state()
    const sysctlsBefore = JSON.stringify([...host.sysctls].sort())
    const storeBefore = await u.storeState()
    const calls = host.calls.length
    await request(u)
    t.same(host.changesSince(calls), [], `${what}, repeated: no host change`)
    t.notOk(host.calls.slice(calls).includes('reservePort'), `${what}, repeated: no port reserved`)
    t.equal(host.state(), hostBefore, `${what}, repeated: the host is as it was`)
    t.equal(JSON.stringify([...host.sysctls].sort()), sysctlsBefore, `${what}, repeated: and so are the kernel settings`)
    t.equal(await u.storeState(), storeBefore, `${what}, repeated: the store is as it was`)
  }
  t.equal(host.state(), (await openUnit(t)).host.state(), 'nothing is left at the end')
})

t.test('a restart in between changes nothing either: the boot reconcile of a consistent host applies nothing', async (t) => {
  const u = await openUnit(t)
  for (const [, request] of steps.slice(0, 10)) await request(u)
  const before = u.host.state()
  u.host.applied.length = 0
  // The sockets go with the process; the boot takes the same ports again, and applies nothing else.
  const again = await u.restart()
  t.same(u.host.applied.filter((c) => !c.startsWith('create port ')), [], 'only the held ports were taken again')
  t.equal(u.host.state(), before)
  t.same((await again.dryRun()).changes, [])
})
