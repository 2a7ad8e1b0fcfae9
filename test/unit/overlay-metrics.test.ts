// Metrics of overlay networks: how many other hosts of the swarm tsnet knows, and how often that
// changed, moved by Docker's own calls (DiscoverNew/DiscoverDelete through the plugin API) and by
// its peer lists, read from the text a Prometheus scrape gets.
import t from 'tap'
import { join } from 'node:path'
import { DOCKER_DEFAULT_POOLS_TEXT, parseDefaultPools } from '../../src/core/ipam.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { openServices } from '../../src/main.js'
import { buildApp } from '../../src/server/app.js'
import { log, tempDir } from './fixtures/util.js'

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

t.test('tsnet_overlay_peers follows the book; tsnet_overlay_peer_changes_total counts each host that came or went', async (t) => {
  const dir = await tempDir(t)
  const config = {
    socket: join(dir, 'tsnet.sock'), stateDir: dir, logLevel: 'silent', defaultPools: parseDefaultPools(DOCKER_DEFAULT_POOLS_TEXT),
    gcIntervalSec: 0, procSys: '/proc/sys', reconcileIntervalSec: 0, scope: 'global' as const, vniRange: { first: 256, last: 4095 }, vxlanPort: 4789,
  }
  const services = await openServices(config, new FakeHost(), log, undefined, { metrics: true })
  const ready = services.reconciler.boot().then(() => undefined)
  const app = buildApp({ logger: log, services, ready, metrics: services.metrics! })
  await ready
  t.teardown(() => { services.swarm.stop(); return app.close() })
  const discover = async (verb: 'DiscoverNew' | 'DiscoverDelete', address: string, self = false) => {
    const r = await app.inject({ method: 'POST', url: `/NetworkDriver.${verb}`, payload: JSON.stringify({ DiscoveryType: 1, DiscoveryData: { Address: address, Self: self } }) })
    t.equal(r.statusCode, 200, `${verb} ${address} answered`)
  }
  const scrape = () => services.metrics!.text()

  let text = await scrape()
  t.equal(sample(text, 'tsnet_overlay_peers'), 0, 'no peers yet')
  t.equal(sample(text, 'tsnet_overlay_peer_changes_total{change="added"}'), undefined, 'no change counted yet')
  await discover('DiscoverNew', '10.250.0.1', true)
  await discover('DiscoverNew', '10.250.0.2')
  await discover('DiscoverNew', '10.250.0.3')
  await discover('DiscoverNew', '10.250.0.3')
  text = await scrape()
  t.equal(sample(text, 'tsnet_overlay_peers'), 2, 'two other hosts (this node is not a peer)')
  t.equal(sample(text, 'tsnet_overlay_peer_changes_total{change="added"}'), 2, 'a repeated DiscoverNew is no change')
  await discover('DiscoverDelete', '10.250.0.2')
  await services.swarm.dockerPeers([['10.250.0.3', '10.250.0.4']], log)
  text = await scrape()
  t.equal(sample(text, 'tsnet_overlay_peers'), 2)
  t.equal(sample(text, 'tsnet_overlay_peer_changes_total{change="added"}'), 3, "a host from Docker's list counts")
  t.equal(sample(text, 'tsnet_overlay_peer_changes_total{change="removed"}'), 1, 'DiscoverDelete counts')
})
