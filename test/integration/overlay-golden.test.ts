// Golden firewall state of a host with one overlay network (two other hosts known, one
// container): a whole tsnet serve (global scope) in a throwaway namespace, then iptables-save,
// ip6tables-save and ipset save, normalised as edge-golden.test.ts does. Bridge-only hosts never
// get TSNET-INPUT or the VTEP sets, so the other goldens do not change; this one shows them.
// Regenerate on purpose with `npm run goldens` and read the diff.
import t from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { container, discover, startTsnet, underlay } from './lib/overlay-hosts.js'
import { firewallDump } from './lib/firewall-dump.js'

const GOLDEN = fileURLToPath(new URL('../golden/overlay.txt', import.meta.url))
const UPDATE = process.env.TSNET_UPDATE_GOLDENS === '1'
const NET = 'g0l1d2e3n4o5v6e7r8l9a0yab'

const dump = firewallDump

t.test('overlay: one network, two other hosts, one container', async (t) => {
  const { hosts, dir } = await underlay(t, ['10.99.0.1'])
  const h = hosts[0] as (typeof hosts)[0]
  const p = await startTsnet(h, dir)
  await discover(p, '10.99.0.2')
  await discover(p, '10.99.0.3')
  const options = { 'tsnet.mode': 'overlay', 'tsnet.vni': '300', 'tsnet.vxlan-port': '4789' }
  await p.ok('NetworkDriver.CreateNetwork', { NetworkID: NET, Options: { 'com.docker.network.generic': options }, IPv4Data: [{ Pool: '10.210.0.0/24', Gateway: '10.210.0.1/24' }], IPv6Data: [] })
  await container(t, h, NET, 'c'.repeat(64), '10.210.0.2/24')
  const got = await dump(h.ns)
  if (UPDATE) {
    await writeFile(GOLDEN, got)
    t.pass('golden written')
    return
  }
  t.equal(got, await readFile(GOLDEN, 'utf8'), 'firewall state matches test/golden/overlay.txt')
})
