/** `tsnet status`: what the store holds, read-only, without talking to the running daemon. */
import { parseArgs } from 'node:util'
import { resolve } from 'node:path'
import { DEFAULT_STATE_DIR } from './config.js'
import type { EndpointRecord, LeaseRecord, NetworkRecord, PoolRecord, PublishedPort } from './core/records.js'
import { bindAddressOf } from './core/ports.js'
import { checkStoredRecord } from './core/record-check.js'
import { FileStore } from './store/file-store.js'

export async function statusCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseArgs({ args: argv, strict: true, options: { 'state-dir': { type: 'string' }, json: { type: 'boolean' } } })
  const stateDir = resolve(values['state-dir'] ?? env.TSNET_STATE_DIR ?? DEFAULT_STATE_DIR)
  // The daemon may be writing meanwhile: read only, and refuse records it would refuse.
  const store = await FileStore.open(stateDir, undefined, { readOnly: true, check: checkStoredRecord })
  const networks = (await store.list<NetworkRecord>('networks')).map((r) => r.value)
  const endpoints = (await store.list<EndpointRecord>('endpoints')).map((r) => r.value)
  const pools = (await store.list<PoolRecord>('pools')).map((r) => r.value)
  const leases = (await store.list<LeaseRecord>('leases')).map((r) => r.value)
  if (values.json) {
    console.log(JSON.stringify({ networks, endpoints, pools, leases }, null, 2))
    return 0
  }
  console.log(`state: ${stateDir}`)
  console.log(`networks: ${networks.length}`)
  for (const n of networks) {
    const subnets = [...n.ipv4Subnets, ...n.ipv6Subnets].map((s) => `${s.pool}${s.gateway ? ` gw ${s.gateway}` : ''}`).join(', ')
    const flags = [n.internal ? 'internal' : '', n.enableIcc ? '' : 'icc off', n.enableIpMasquerade ? '' : 'no masquerade'].filter(Boolean).join(', ')
    console.log(`  ${n.id.slice(0, 12)}  ${n.mode === 'bridge' ? `bridge ${n.spec.bridge}` : `${n.mode} on ${n.spec.parent}${n.spec.macvlanMode === 'bridge' ? '' : ` (${n.spec.macvlanMode})`}`}  mtu ${n.mtu}${flags ? `  ${flags}` : ''}  ${subnets}${n.policy ? `  allow: ${n.policy}` : ''}`)
    for (const e of endpoints.filter((x) => x.networkId === n.id)) {
      const host = (p: PublishedPort) => (p.family === 6 ? `[${bindAddressOf(p)}]` : bindAddressOf(p))
      const dest = (p: PublishedPort) => (p.family === 6 ? `[${p.containerIp}]` : p.containerIp)
      const ports = (e.published ?? []).map((p) => `${host(p)}:${p.hostPort}->${dest(p)}:${p.containerPort}/${p.proto}`).join(' ')
      console.log(`    endpoint ${e.id.slice(0, 12)}  ${e.hostIf ?? e.containerIf}  ${e.mac}  ${[e.address, e.addressV6].filter(Boolean).join(' ')}${e.joined ? '  joined' : ''}${ports ? `  ports ${ports}` : ''}`)
    }
  }
  console.log(`pools: ${pools.length}`)
  for (const p of pools) {
    const used = leases.filter((l) => l.poolId === p.id).map((l) => l.address)
    console.log(`  ${p.id}  ${used.length} leased${used.length ? `: ${used.join(' ')}` : ''}`)
  }
  return 0
}
