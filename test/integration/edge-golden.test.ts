// Golden firewall state per option combination: tsnet's services (built as `tsnet serve` builds
// them) over the real host layer in a throwaway netns (lib/services.ts), then iptables-save, ip6tables-save and ipset save, normalised (no counters,
// timestamps or hash seeds; set members sorted). Any drift fails; rule changes are reviewed on
// purpose by regenerating with `npm run goldens` and reading the diff.
import t from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { NamedNetwork } from '../../src/docker/docker-view.js'
import type { Services } from '../../src/main.js'
import { createNetns, log } from './lib/netns.js'
import { tsnetIn } from './lib/services.js'
import { firewallDump } from './lib/firewall-dump.js'

const GOLDEN_DIR = fileURLToPath(new URL('../golden/', import.meta.url))
const UPDATE = process.env.TSNET_UPDATE_GOLDENS === '1'

const id = (c: string) => c.repeat(64)
const generic = 'com.docker.network.generic'

function network(nid: string, v4: string, opts: { generic?: Record<string, string>; internal?: boolean; v6?: string } = {}) {
  const gw = (pool: string) => pool.replace(/0\/(\d+)$/, '1/$1').replace(/::\/(\d+)$/, '::1/$1')
  return {
    NetworkID: nid,
    Options: { [generic]: opts.generic ?? {}, ...(opts.internal ? { 'com.docker.network.internal': true } : {}), ...(opts.v6 ? { 'com.docker.network.enable_ipv6': true } : {}) },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: v4, Gateway: gw(v4) }],
    IPv6Data: opts.v6 ? [{ AddressSpace: 'LocalDefault', Pool: opts.v6, Gateway: gw(opts.v6) }] : [],
  }
}

const dump = firewallDump

interface Case {
  name: string
  /** Docker's networks as tsnet's copy of their names holds them. */
  names?: NamedNetwork[]
  run(s: Services): Promise<void>
}

const EP = (c: string, networkId: string, address: string, addressV6 = '') => ({
  NetworkID: networkId, EndpointID: id(c), Interface: { Address: address, AddressIPv6: addressV6, MacAddress: '' }, Options: {},
})

const CASES: Case[] = [
  { name: 'default', async run(s) { await s.driver.createNetwork(network(id('a'), '10.60.1.0/24'), log) } },
  { name: 'internal', async run(s) { await s.driver.createNetwork(network(id('a'), '10.60.1.0/24', { internal: true }), log) } },
  { name: 'icc-off', async run(s) { await s.driver.createNetwork(network(id('a'), '10.60.1.0/24', { generic: { 'com.docker.network.bridge.enable_icc': 'false' } }), log) } },
  { name: 'masquerade-off', async run(s) { await s.driver.createNetwork(network(id('a'), '10.60.1.0/24', { generic: { 'com.docker.network.bridge.enable_ip_masquerade': 'false' } }), log) } },
  { name: 'dual-stack', async run(s) { await s.driver.createNetwork(network(id('a'), '10.60.1.0/24', { v6: 'fd60:1::/64' }), log) } },
  {
    name: 'policy',
    names: [
      { id: id('a'), name: 'ui', driver: 'tsnet', subnets: ['10.61.1.0/24'] },
      { id: id('d'), name: 'bridge', driver: 'bridge', subnets: ['172.17.0.0/16'] },
    ],
    async run(s) {
      await s.driver.createNetwork(network(id('a'), '10.61.1.0/24'), log)
      await s.driver.createNetwork(network(id('b'), '10.61.2.0/24', { generic: { 'tsnet.allow': 'ui tcp/8080; 192.0.2.0/24 tcp/443,icmp' } }), log)
      await s.driver.createEndpoint(EP('e', id('b'), '10.61.2.2/24'), log)
    },
  },
  {
    name: 'published',
    async run(s) {
      await s.driver.createNetwork(network(id('a'), '10.62.1.0/24', { v6: 'fd62:1::/64' }), log)
      await s.driver.createEndpoint(EP('e', id('a'), '10.62.1.2/24', 'fd62:1::2/64'), log)
      await s.driver.join({ NetworkID: id('a'), EndpointID: id('e'), SandboxKey: '/var/run/docker/netns/x', Options: {} }, log)
      await s.ports.program({
        NetworkID: id('a'), EndpointID: id('e'), Options: { 'com.docker.network.portmap': [
          { Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 },
          { Proto: 17, IP: '', Port: 53, HostIP: '127.0.0.1', HostPort: 5353, HostPortEnd: 5353 },
          { Proto: 132, IP: '', Port: 9, HostIP: '', HostPort: 9009, HostPortEnd: 9009 },
        ] },
      }, log)
    },
  },
  {
    name: 'all-deleted',
    async run(s) {
      await s.driver.createNetwork(network(id('a'), '10.60.1.0/24'), log)
      await s.driver.createEndpoint(EP('e', id('a'), '10.60.1.2/24'), log)
      await s.driver.deleteNetwork({ NetworkID: id('a') }, log)
    },
  },
]

for (const c of CASES) {
  t.test(`golden firewall state: ${c.name}`, async (t) => {
    const ns = await createNetns(t)
    const tsnet = await tsnetIn(t, ns, c.names ? { names: c.names } : {})
    await c.run(tsnet.services)
    const got = await dump(ns)
    const file = join(GOLDEN_DIR, `${c.name}.txt`)
    if (UPDATE) {
      await writeFile(file, got)
      t.pass(`wrote ${file}`)
      return
    }
    const want = await readFile(file, 'utf8').catch(() => '(no golden file: run `npm run goldens`)')
    t.equal(got, want, `${c.name}: iptables-save, ip6tables-save and ipset save match test/golden/${c.name}.txt (regenerate on purpose with npm run goldens)`)
  })
}
