// Issue 12 item 4: CreateEndpoint, Join and Leave write their records without waiting for an
// fsync (see DIES_WITH_THE_MACHINE in services/write-durability.ts), every other write still waits for
// one; and what a power loss can make of those records (absent, empty, as before Join, as before
// Leave) boots and converges with no address handed out twice and nothing left on the host once
// Docker cleans up.
import t from 'tap'
import { open, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { bridgeNameFor, hostVethFor } from '../../src/core/names.js'
import { OPT } from '../../src/protocol/types.js'
import { TestHost, epReq, netReq, openUnit, type Unit } from './fixtures/services.js'
import { captureLog } from './fixtures/gc-fakes.js'
import { dockerId, log } from './fixtures/util.js'

const NET = dockerId('0a')
const EP = dockerId('e1')
const POOL = '172.18.0.0/16'

/** fsyncs of files (datasync) and directories (sync) made while `fn` ran. */
async function syncsDuring(dir: string, fn: () => Promise<unknown>): Promise<{ sync: number; datasync: number }> {
  const probe = await open(join(dir, 'probe'), 'w')
  const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void>; datasync: () => Promise<void> }
  await probe.close()
  await rm(join(dir, 'probe'))
  const counts = { sync: 0, datasync: 0 }
  const { sync, datasync } = proto
  proto.sync = function (this: unknown) { counts.sync++; return sync.call(this) }
  proto.datasync = function (this: unknown) { counts.datasync++; return datasync.call(this) }
  try {
    await fn()
  } finally {
    proto.sync = sync
    proto.datasync = datasync
  }
  return counts
}

/** What Docker does for `docker network create` on tsnet's IPAM: the pool, the gateway, CreateNetwork. */
async function network(u: Unit): Promise<string> {
  const { PoolID } = await u.services.ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: POOL }, log)
  const gw = await u.services.ipam.requestAddress({ PoolID, Options: { [OPT.requestAddressType]: OPT.gatewayType } }, log)
  await u.services.driver.createNetwork(netReq(NET, POOL, gw.Address), log)
  return PoolID
}

const joinReq = { NetworkID: NET, EndpointID: EP, SandboxKey: '/var/run/docker/netns/c0ffee', Options: {} }
const none = { sync: 0, datasync: 0 }

t.test('CreateEndpoint, Join and Leave wait for no fsync; the address lease and the removals do', async (t) => {
  const u = await openUnit(t)
  const PoolID = await network(u)
  let address = ''
  const lease = await syncsDuring(u.dir, async () => { address = (await u.services.ipam.requestAddress({ PoolID }, log)).Address })
  t.ok(lease.datasync >= 1 && lease.sync >= 1, `RequestAddress: the lease's data and directory are synced (${JSON.stringify(lease)})`)
  t.same(await syncsDuring(u.dir, () => u.services.driver.createEndpoint(epReq(NET, EP, address), log)), none, 'CreateEndpoint: none')
  t.same(await syncsDuring(u.dir, () => u.services.driver.join(joinReq, log)), none, 'Join: none')
  t.match(await u.storedEndpoint(EP), { id: EP, joined: true, sandboxKey: joinReq.SandboxKey }, 'and both records are written')
  t.same(await syncsDuring(u.dir, () => u.services.driver.leave({ NetworkID: NET, EndpointID: EP }, log)), none, 'Leave: none')
  t.match(await u.storedEndpoint(EP), { id: EP, joined: false }, 'and its record is written')
  const removal = await syncsDuring(u.dir, () => u.services.driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log))
  t.ok(removal.sync >= 1, `DeleteEndpoint: the directory is synced (${JSON.stringify(removal)})`)
  const release = await syncsDuring(u.dir, () => u.services.ipam.releaseAddress({ PoolID, Address: address }, log))
  t.ok(release.sync >= 1, `ReleaseAddress: synced (${JSON.stringify(release)})`)
  // The positive control: the same counter sees a network's record being synced.
  const del = await syncsDuring(u.dir, () => u.services.driver.deleteNetwork({ NetworkID: NET }, log))
  t.ok(del.sync >= 1, 'DeleteNetwork: synced (the counter counts)')
})

const outcomes = {
  /** A new file whose directory entry never reached the disk. */
  absent: async (file: string) => { await rm(file) },
  /** Its directory entry reached the disk, its data did not. */
  empty: async (file: string) => { await writeFile(file, '') },
  /** Join's write was lost: the record as CreateEndpoint left it. */
  'not joined': async (file: string, beforeJoin: string) => { await writeFile(file, beforeJoin) },
  /** Leave's write was lost: the record as Join left it, though the container had left. */
  'still joined': async (file: string, _beforeJoin: string, joined: string) => { await writeFile(file, joined) },
}

for (const [outcome, damage] of Object.entries(outcomes)) {
  t.test(`power loss leaving the endpoint record ${outcome}: boots, never hands its address out again, converges once Docker cleans up`, async (t) => {
    const first = await openUnit(t)
    const PoolID = await network(first)
    const { Address } = await first.services.ipam.requestAddress({ PoolID }, log)
    await first.services.driver.createEndpoint(epReq(NET, EP, Address), log)
    const file = join(first.dir, 'store', 'endpoints', `${EP}.json`)
    const beforeJoin = await readFile(file, 'utf8')
    await first.services.driver.join(joinReq, log)
    const joined = await readFile(file, 'utf8')
    // Leave's loss needs a Leave; the others are a power loss while the container runs.
    if (outcome === 'still joined') await first.services.driver.leave({ NetworkID: NET, EndpointID: EP }, log)
    first.services.reconciler.stop()

    await damage(file, beforeJoin, joined)
    const host = new TestHost() // the kernel lost every link; the disk kept what it had synced
    const { logger, entries } = captureLog('error')
    const after = await openUnit(t, { dir: first.dir, host, logger })
    t.equal(entries.some((e) => (e as { store?: string }).store === 'quarantined'), outcome === 'empty', outcome === 'empty' ? 'the empty record is quarantined' : 'nothing quarantined')
    t.notOk(entries.some((e) => (e as { store?: string }).store !== 'quarantined'), 'no other error at boot')
    t.ok(after.host.links.has(bridgeNameFor(NET)), 'the network\'s bridge is back')

    // Docker restarts too; before it has cleaned up, a new container asks for an address.
    const other = await after.services.ipam.requestAddress({ PoolID }, log)
    t.not(other.Address, Address, 'the lease was durable: the address is not handed out twice')

    // Docker's cleanup of the dead container: DeleteEndpoint (of an endpoint tsnet may not know), ReleaseAddress.
    t.same(await after.services.driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log), {}, 'DeleteEndpoint answers {}')
    t.same(await after.services.ipam.releaseAddress({ PoolID, Address }, log), {}, 'ReleaseAddress answers {}')
    t.notOk(after.host.links.has(hostVethFor(EP)), 'no veth of the endpoint is left')
    t.same(after.services.driver.snapshot().endpoints, [], 'no endpoint record is left')
    t.same((await after.dryRun()).changes, [], 'a reconcile right after plans nothing')
    t.equal((await after.services.ipam.requestAddress({ PoolID, Address }, log)).Address, Address, 'the address is free again once Docker released it')
  })
}
