/**
 * What must hold after every request, independent of how the request was generated:
 *  - answerProblems:      (b) the shape of the answer;
 *  - transitionProblems:  (d) after a 200, the store changed exactly as the method allows (a
 *                         small model of each method's effect on the store's records);
 *  - storeProblems:       (d) invariants of the store on its own;
 *  - fakeHostProblems:    (d) the fake host holds exactly what the store's records imply;
 *  - memoryProblems:      (d) the services' in-memory view equals the store.
 * (c), "a refused request changes nothing", is an exact comparison done by the runner.
 */
import { type SetEntry, allowEntries, deviceGroupOf, dnatRule, entryKey, needsRouteLocalnet, networkEntries } from '../../../src/core/edge-plan.js'
import { endpointAlias, macFromSeed, networkAlias } from '../../../src/core/names.js'
import { type HostObject, keyOf } from '../../../src/core/objects.js'
import { parsePolicy } from '../../../src/core/policy.js'
import type { EndpointRecord, NetworkRecord, PublishedPort } from '../../../src/core/records.js'
import type { FakeHost, FakeLink } from '../../../src/host/fake-host.js'
import { bridgeEdge, bridgeMode } from '../../../src/modes/bridge.js'
import { cidrValue, contains, ipValue, overlaps, sameIp, type CidrValue } from './ip.js'

export interface Violation {
  rule: string
  detail: string
}

const v = (rule: string, detail: string): Violation => ({ rule, detail })
const isObj = (x: unknown): x is Record<string, any> => typeof x === 'object' && x !== null && !Array.isArray(x)
const short = (s: string, n = 300) => (s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s)

// ---------------------------------------------------------------- (b) answers

/** Longest Err we accept as "a sentence" (tsnet echoes parts of the input into its messages). */
export const ERR_MAX = 16 * 1024

export function answerProblems(status: number, body: string): Violation[] {
  let json: unknown
  try {
    json = JSON.parse(body)
  } catch {
    return [v('bad-answer', `HTTP ${status} with a body that is not JSON: ${short(JSON.stringify(body))}`)]
  }
  if (status === 200) return isObj(json) ? [] : [v('bad-answer', `HTTP 200 with a body that is not a JSON object: ${short(body)}`)]
  const out: Violation[] = []
  if (status < 400 || status > 599) out.push(v('bad-answer', `refusal with HTTP ${status}, not an error status`))
  if (!isObj(json) || Object.keys(json).length !== 1 || typeof json.Err !== 'string') {
    out.push(v('bad-answer', `HTTP ${status} with a body that is not exactly {"Err": string}: ${short(body)}`))
    return out
  }
  const err = json.Err as string
  if (err.trim().length < 4) out.push(v('bad-answer', `HTTP ${status} with an empty or trivial Err ${JSON.stringify(err)}`))
  if (/^internal error/i.test(err)) out.push(v('internal-error', `HTTP ${status} {"Err": ${short(JSON.stringify(err))}}`))
  if (err.length > ERR_MAX) out.push(v('err-too-long', `HTTP ${status} with an Err of ${err.length} characters (more than ${ERR_MAX}): ${short(JSON.stringify(err), 200)}`))
  return out
}

/** "the request was refused by fastify before any handler" vs "a handler refused it". */
export function isParseOrSchemaRefusal(err: string): boolean {
  return /^(the request body (lacks|is not|must)|field \S+ |the request was refused: |tsnet does not implement )/.test(err)
}

// ---------------------------------------------------------------- the store

export const COLLECTIONS = ['networks', 'endpoints', 'pools', 'leases', 'meta'] as const
export type Coll = (typeof COLLECTIONS)[number]

export interface StoreView {
  /** Every file under the state directory: relative path → content. */
  files: Record<string, string>
  /** Per collection: record ID → file text. */
  texts: Record<Coll, Map<string, string>>
  /** Per collection: record ID → parsed record. */
  recs: Record<Coll, Map<string, any>>
  problems: Violation[]
}

export function parseStore(files: Record<string, string>): StoreView {
  const texts = Object.fromEntries(COLLECTIONS.map((c) => [c, new Map<string, string>()])) as StoreView['texts']
  const recs = Object.fromEntries(COLLECTIONS.map((c) => [c, new Map<string, any>()])) as StoreView['recs']
  const problems: Violation[] = []
  for (const [path, text] of Object.entries(files)) {
    const m = /^store\/([^/]+)\/([^/]+)\.json$/.exec(path)
    if (!m || !(COLLECTIONS as readonly string[]).includes(m[1] as string)) {
      problems.push(v('store-invariant', `unexpected file in the state directory: ${path}`))
      continue
    }
    const coll = m[1] as Coll
    let id: string
    try {
      id = decodeURIComponent(m[2] as string)
    } catch {
      problems.push(v('store-invariant', `file name ${path} is not an encoded ID`))
      continue
    }
    texts[coll].set(id, text)
    try {
      recs[coll].set(id, JSON.parse(text))
    } catch {
      problems.push(v('store-invariant', `store record ${path} is not JSON: ${short(text)}`))
    }
  }
  return { files, texts, recs, problems }
}

export function sameFiles(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a).sort()
  const kb = Object.keys(b).sort()
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k])
}

export function filesDiff(a: Record<string, string>, b: Record<string, string>): string[] {
  const out: string[] = []
  for (const k of Object.keys(a).sort()) {
    if (!(k in b)) out.push(`- ${k}`)
    else if (a[k] !== b[k]) out.push(`~ ${k}: ${short(a[k] ?? '', 200)} → ${short(b[k] ?? '', 200)}`)
  }
  for (const k of Object.keys(b).sort()) if (!(k in a)) out.push(`+ ${k}: ${short(b[k] ?? '', 200)}`)
  return out
}

/** Line diff of two texts (multiset), for host snapshots. */
export function linesDiff(a: string, b: string): string[] {
  const la = a.split('\n')
  const lb = b.split('\n')
  const count = new Map<string, number>()
  for (const l of la) count.set(l, (count.get(l) ?? 0) + 1)
  const added: string[] = []
  for (const l of lb) {
    const n = count.get(l) ?? 0
    if (n > 0) count.set(l, n - 1)
    else added.push(`+ ${short(l, 400)}`)
  }
  const removed = [...count.entries()].flatMap(([l, n]) => Array<string>(n).fill(`- ${short(l, 400)}`))
  const out = [...removed, ...added]
  return out.length ? out : la.join('\n') === lb.join('\n') ? [] : ['(same lines in another order)']
}

// ---------------------------------------------------------------- (d) transitions after a 200

const str = (x: unknown): string | undefined => (typeof x === 'string' ? x : undefined)

/** IDs whose record differs between two views of one collection. */
function changedIds(before: StoreView, after: StoreView, coll: Coll): string[] {
  const out: string[] = []
  for (const [id, t] of before.texts[coll]) if (after.texts[coll].get(id) !== t) out.push(id)
  for (const id of after.texts[coll].keys()) if (!before.texts[coll].has(id)) out.push(id)
  return out
}

/** Every record that changed must be in `allowed` ("coll/id"). */
function onlyTouched(method: string, before: StoreView, after: StoreView, allowed: Set<string>): Violation[] {
  const out: Violation[] = []
  for (const c of COLLECTIONS) {
    for (const id of changedIds(before, after, c)) {
      if (!allowed.has(`${c}/${id}`)) {
        const what = !before.texts[c].has(id) ? 'added' : !after.texts[c].has(id) ? 'removed' : 'changed'
        out.push(v('wrong-transition', `${method} answered 200 and ${what} ${c} record ${JSON.stringify(id)}, which it has no business touching`))
      }
    }
  }
  return out
}

const V4_GATEWAY_TYPE = 'com.docker.network.gateway'
const PROTOCOLS: Record<number, string> = { 6: 'tcp', 17: 'udp', 132: 'sctp' }
const ipOnly = (cidr: unknown): string | undefined => (typeof cidr === 'string' && cidr !== '' ? cidr.split('/')[0] : undefined)

/** The port map of an accepted request, as the endpoint record keeps it. */
function portMapOf(r: Record<string, any>): Array<{ proto: string; containerPort: number; hostIp: string; hostPort: number; hostPortEnd: number }> {
  const raw = isObj(r.Options) ? r.Options['com.docker.network.portmap'] : undefined
  return (Array.isArray(raw) ? raw : []).map((m: Record<string, any>) => {
    const hostPort = typeof m.HostPort === 'number' ? m.HostPort : 0
    return { proto: PROTOCOLS[m.Proto] ?? '?', containerPort: m.Port, hostIp: typeof m.HostIP === 'string' ? m.HostIP : '', hostPort, hostPortEnd: m.HostPortEnd || hostPort }
  })
}

/**
 * After a 200: the allowed effect of each method on the store, and what its answer must say.
 * `req` is the parsed request body (it passed the schema, or the route has none).
 */
export function transitionProblems(method: string, req: unknown, resp: unknown, before: StoreView, after: StoreView, hostRoutes: readonly string[]): Violation[] {
  const out: Violation[] = []
  const r = isObj(req) ? req : {}
  const a = isObj(resp) ? resp : {}
  const fail = (detail: string) => out.push(v('wrong-transition', `${method}: ${detail}`))
  const touched = new Set<string>()
  const N = str(r.NetworkID) ?? ''
  const E = str(r.EndpointID) ?? ''
  const epBefore = before.recs.endpoints.get(E)
  const epAfter = after.recs.endpoints.get(E)
  const inNetwork = epBefore !== undefined && epBefore.networkId === N

  switch (method) {
    case 'NetworkDriver.CreateNetwork': {
      touched.add(`networks/${N}`)
      const rec = after.recs.networks.get(N)
      if (!rec) fail(`answered 200 but network ${N} is not in the store`)
      else if (rec.id !== N) fail(`the stored record of ${N} has id ${JSON.stringify(rec.id)}`)
      if (before.texts.networks.has(N) && before.texts.networks.get(N) !== after.texts.networks.get(N)) {
        fail(`a repeated CreateNetwork changed the stored network ${N}`)
      }
      if (Object.keys(a).length !== 0) fail(`answer should be {} but is ${short(JSON.stringify(resp))}`)
      if (rec && isObj(r.Options) && isObj(r.Options['com.docker.network.generic'])) {
        const name = r.Options['com.docker.network.generic']['com.docker.network.bridge.name']
        if (typeof name === 'string' && rec.spec?.bridge !== name) fail(`asked for bridge ${JSON.stringify(name)} but the record says ${JSON.stringify(rec.spec?.bridge)}`)
      }
      break
    }
    case 'NetworkDriver.DeleteNetwork': {
      touched.add(`networks/${N}`)
      for (const [id, e] of before.recs.endpoints) if (e.networkId === N) touched.add(`endpoints/${id}`)
      if (after.recs.networks.has(N)) fail(`answered 200 but network ${N} is still in the store`)
      for (const [id, e] of after.recs.endpoints) if (e.networkId === N) fail(`answered 200 but endpoint ${id} of the deleted network is still in the store`)
      break
    }
    case 'NetworkDriver.CreateEndpoint': {
      touched.add(`endpoints/${E}`)
      if (!before.recs.networks.has(N)) fail(`answered 200 for network ${N}, which was not in the store`)
      if (!epAfter) fail(`answered 200 but endpoint ${E} is not in the store`)
      else {
        if (epAfter.networkId !== N) fail(`endpoint ${E} was created under network ${N} but the record says ${epAfter.networkId}`)
        if (epBefore && before.texts.endpoints.get(E) !== after.texts.endpoints.get(E)) fail(`a repeated CreateEndpoint changed the stored endpoint ${E}`)
        const iface = isObj(r.Interface) ? r.Interface : {}
        if (typeof iface.Address === 'string' && iface.Address !== '' && !epBefore && epAfter.address !== iface.Address) {
          fail(`asked for address ${iface.Address} but the record says ${JSON.stringify(epAfter.address)}`)
        }
        if (typeof iface.AddressIPv6 === 'string' && iface.AddressIPv6 !== '' && !epBefore && epAfter.addressV6 !== iface.AddressIPv6) {
          fail(`asked for IPv6 address ${iface.AddressIPv6} but the record says ${JSON.stringify(epAfter.addressV6)}`)
        }
        const given = typeof iface.MacAddress === 'string' && iface.MacAddress !== '' ? iface.MacAddress.toLowerCase() : undefined
        const answered = isObj(a.Interface) ? a.Interface.MacAddress : undefined
        if (given !== undefined) {
          if (epAfter.mac !== given) fail(`Docker gave MAC ${given} but the record says ${epAfter.mac}`)
          if (answered !== undefined) fail(`Docker gave the MAC, yet the answer sets Interface.MacAddress (${answered}): Docker treats that as a change`)
        } else if (answered !== epAfter.mac) {
          fail(`tsnet chose MAC ${epAfter.mac} but answered Interface.MacAddress ${JSON.stringify(answered)}`)
        }
        if (isObj(a.Interface) && (a.Interface.Address !== undefined || a.Interface.AddressIPv6 !== undefined)) {
          fail(`the answer changes the address Docker gave: ${short(JSON.stringify(resp))}`)
        }
      }
      break
    }
    case 'NetworkDriver.Join': {
      touched.add(`endpoints/${E}`)
      if (!inNetwork) fail(`answered 200 for endpoint ${E} of network ${N}, which the store did not hold`)
      else if (!epAfter || epAfter.joined !== true || epAfter.sandboxKey !== r.SandboxKey) {
        fail(`answered 200 but the record says joined=${epAfter?.joined} sandboxKey=${JSON.stringify(epAfter?.sandboxKey)}`)
      }
      const name = isObj(a.InterfaceName) ? a.InterfaceName : undefined
      if (!name || typeof name.SrcName !== 'string' || typeof name.DstPrefix !== 'string' || name.DstPrefix === '') {
        fail(`the answer lacks InterfaceName.SrcName/DstPrefix: ${short(JSON.stringify(resp))}`)
      } else if (epAfter && name.SrcName !== epAfter.containerIf) {
        fail(`the answer names interface ${name.SrcName} but the endpoint's container end is ${epAfter.containerIf}`)
      }
      const net = before.recs.networks.get(N)
      if (net && epAfter) {
        if (net.internal && (a.Gateway !== undefined || a.GatewayIPv6 !== undefined)) fail('an internal network answered with a gateway')
        for (const [key, subnets, addr] of [['Gateway', net.ipv4Subnets, epAfter.address], ['GatewayIPv6', net.ipv6Subnets, epAfter.addressV6]] as const) {
          if (a[key] === undefined) continue
          const gw = ipValue(a[key])
          const ok = gw && (subnets as any[]).some((s) => {
            const g = cidrValue(s.gateway)
            const p = cidrValue(s.pool)
            const e = cidrValue(addr)
            return g && p && e && sameIp(g, gw) && contains(p, e)
          })
          if (!ok) fail(`${key} ${JSON.stringify(a[key])} is not the gateway of a subnet holding the endpoint's address ${addr}`)
        }
      }
      break
    }
    case 'NetworkDriver.Leave': {
      if (inNetwork && epBefore.joined) {
        touched.add(`endpoints/${E}`)
        if (!epAfter || epAfter.joined !== false || epAfter.sandboxKey !== undefined) fail(`answered 200 but the record still says joined=${epAfter?.joined} sandboxKey=${epAfter?.sandboxKey}`)
      }
      break
    }
    case 'NetworkDriver.DeleteEndpoint': {
      if (inNetwork) {
        touched.add(`endpoints/${E}`)
        if (epAfter) fail(`answered 200 but endpoint ${E} is still in the store`)
      }
      break
    }
    case 'NetworkDriver.ProgramExternalConnectivity': {
      const net = before.recs.networks.get(N)
      if (!inNetwork || !net) {
        fail(`answered 200 for endpoint ${E} of network ${N}, which the store did not hold`)
        break
      }
      if (Object.keys(a).length !== 0) fail(`answer should be {} but is ${short(JSON.stringify(resp))}`)
      const maps = portMapOf(r)
      if (net.internal) {
        if (maps.some((m) => m.hostPort !== 0 || m.hostIp !== '')) fail(`network ${N} is internal, yet a mapping with a host port or address was accepted`)
        break // nothing is published, nothing changes
      }
      if (maps.length === 0 && !epBefore.published?.length) break // nothing to publish, nothing published: nothing changes
      touched.add(`endpoints/${E}`)
      if (!epAfter) break
      const mapped = (epAfter.portMappings ?? []) as Array<Record<string, unknown>>
      if (JSON.stringify(mapped) !== JSON.stringify(maps)) fail(`the endpoint records port mappings ${short(JSON.stringify(mapped))}, the request asked for ${short(JSON.stringify(maps))}`)
      const published = (epAfter.published ?? []) as PublishedPort[]
      const addrOf: Record<number, string | undefined> = { 4: ipOnly(epAfter.address), 6: ipOnly(epAfter.addressV6) }
      let k = 0
      for (const m of maps) {
        const families = m.hostIp === '' ? ([4, 6] as const).filter((f) => addrOf[f] !== undefined) : [m.hostIp.includes(':') ? 6 : 4]
        const mine = published.slice(k, k + families.length)
        k += families.length
        const where = `mapping ${m.proto}/${m.containerPort}`
        if (mine.length !== families.length) {
          fail(`${where}: published ${mine.length} ports, expected one per family [${families.join(', ')}]`)
          continue
        }
        const hostPort = mine[0]?.hostPort
        mine.forEach((p, i) => {
          if (p.family !== families[i] || p.proto !== m.proto || p.containerPort !== m.containerPort || p.hostIp !== m.hostIp || p.hostPort !== hostPort) {
            fail(`${where}: published ${JSON.stringify(p)} does not match the mapping`)
          }
          if (p.containerIp !== addrOf[p.family]) fail(`${where}: leads to ${p.containerIp}, the endpoint's IPv${p.family} address is ${addrOf[p.family]}`)
        })
        if (m.hostPort !== 0 && (hostPort === undefined || hostPort < m.hostPort || hostPort > m.hostPortEnd)) fail(`${where}: host port ${hostPort} is outside ${m.hostPort}-${m.hostPortEnd}`)
        if (m.hostPort === 0 && (!Number.isInteger(hostPort) || (hostPort as number) < 1)) fail(`${where}: host port ${hostPort} was chosen`)
      }
      if (k !== published.length) fail(`the endpoint records ${published.length} published ports, the mappings explain ${k}`)
      break
    }
    case 'NetworkDriver.RevokeExternalConnectivity': {
      if (inNetwork && epBefore.published?.length) {
        touched.add(`endpoints/${E}`)
        if (!epAfter) fail(`answered 200 but endpoint ${E} is gone from the store`)
        else if (epAfter.published !== undefined) fail(`answered 200 but the endpoint still records published ports ${short(JSON.stringify(epAfter.published))}`)
      }
      if (Object.keys(a).length !== 0) fail(`answer should be {} but is ${short(JSON.stringify(resp))}`)
      break
    }
    case 'NetworkDriver.EndpointOperInfo': {
      if (!isObj(a.Value)) fail(`the answer has no Value object: ${short(JSON.stringify(resp))}`)
      else if (epBefore && a.Value.hostInterface !== epBefore.hostIf) fail(`Value.hostInterface ${a.Value.hostInterface} is not the endpoint's ${epBefore.hostIf}`)
      break
    }
    case 'NetworkDriver.AllocateNetwork':
      if (!isObj(a.Options)) fail(`the answer has no Options object: ${short(JSON.stringify(resp))}`)
      break
    case 'NetworkDriver.GetCapabilities':
      if (a.Scope !== 'local') fail(`Scope is ${JSON.stringify(a.Scope)}`)
      break
    case 'Plugin.Activate':
      if (!Array.isArray(a.Implements) || !a.Implements.includes('NetworkDriver') || !a.Implements.includes('IpamDriver')) fail(`Implements is ${JSON.stringify(a.Implements)}`)
      break
    case 'IpamDriver.RequestPool': {
      const id = str(a.PoolID)
      const pool = cidrValue(a.Pool)
      if (!id || !pool || !isObj(a.Data)) {
        fail(`the answer is not {PoolID, Pool, Data}: ${short(JSON.stringify(resp))}`)
        break
      }
      touched.add(`pools/${id}`)
      if (before.recs.pools.has(id)) fail(`handed out pool ${id}, which was already allocated`)
      const rec = after.recs.pools.get(id)
      if (!rec) fail(`answered pool ${id} but it is not in the store`)
      else {
        if (rec.pool !== a.Pool) fail(`answered Pool ${a.Pool} but stored ${rec.pool}`)
        if (rec.addressSpace !== r.AddressSpace) fail(`asked for address space ${r.AddressSpace}, stored ${rec.addressSpace}`)
      }
      const v6 = r.V6 === true
      if (pool.family !== (v6 ? 6 : 4)) fail(`asked for IPv${v6 ? 6 : 4}, got pool ${a.Pool}`)
      if (pool.value !== pool.network) fail(`pool ${a.Pool} is not canonical`)
      const asked = cidrValue(r.Pool)
      const sizeOnly = asked && asked.value === 0n && asked.bits > 0 && (r.SubPool ?? '') === ''
      if (asked && !sizeOnly && (asked.network !== pool.network || asked.bits !== pool.bits)) fail(`asked for ${r.Pool}, got ${a.Pool}`)
      if (asked && sizeOnly && asked.bits !== pool.bits) fail(`asked for a /${asked.bits}, got ${a.Pool}`)
      if ((!asked || sizeOnly) && r.AddressSpace === 'LocalDefault') {
        for (const route of hostRoutes) {
          const rc = cidrValue(route)
          if (rc && overlaps(rc, pool)) fail(`chose pool ${a.Pool}, which overlaps ${route}, a prefix the host routes`)
        }
      }
      const sub = cidrValue(r.SubPool)
      if (sub && rec && rec.subPool === undefined) fail(`asked for IP range ${r.SubPool} but the record has none`)
      break
    }
    case 'IpamDriver.ReleasePool': {
      const P = str(r.PoolID) ?? ''
      touched.add(`pools/${P}`)
      for (const [id, l] of before.recs.leases) if (l.poolId === P) touched.add(`leases/${id}`)
      if (after.recs.pools.has(P)) fail(`answered 200 but pool ${P} is still in the store`)
      for (const [id, l] of after.recs.leases) if (l.poolId === P) fail(`answered 200 but lease ${id} of the released pool remains`)
      break
    }
    case 'IpamDriver.RequestAddress': {
      const P = str(r.PoolID) ?? ''
      const pool = cidrValue(before.recs.pools.get(P)?.pool)
      const got = cidrValue(a.Address)
      if (!pool) fail(`answered 200 for pool ${P}, which was not in the store`)
      if (!got || !isObj(a.Data)) {
        fail(`the answer is not {Address: CIDR, Data}: ${short(JSON.stringify(resp))}`)
        break
      }
      const added = changedIds(before, after, 'leases').filter((id) => !before.texts.leases.has(id))
      if (added.length !== 1) fail(`answered ${a.Address} but ${added.length} leases were added (${added.join(', ')})`)
      for (const id of added) touched.add(`leases/${id}`)
      const lease = added.length === 1 ? after.recs.leases.get(added[0] as string) : undefined
      if (lease) {
        if (lease.poolId !== P) fail(`the new lease belongs to pool ${lease.poolId}, not ${P}`)
        const la = ipValue(lease.address)
        if (!la || !sameIp(la, got)) fail(`answered ${a.Address} but leased ${lease.address}`)
        const wantGateway = isObj(r.Options) && r.Options.RequestAddressType === V4_GATEWAY_TYPE
        if ((lease.kind === 'gateway') !== wantGateway) fail(`the lease kind is ${lease.kind}`)
      }
      if (pool) {
        if (got.bits !== pool.bits) fail(`answered ${a.Address} but the pool is a /${pool.bits}`)
        if (!contains(pool, got)) fail(`answered ${a.Address}, outside pool ${P}`)
        const total = pool.family === 4 ? 32 : 128
        if (pool.bits < total - 1 && (got.value === pool.network || (pool.family === 4 && got.value === pool.last))) {
          fail(`answered ${a.Address}, the network or broadcast address of ${P}`)
        }
        for (const l of before.recs.leases.values()) {
          const la = ipValue(l.address)
          if (l.poolId === P && la && sameIp(la, got)) fail(`answered ${a.Address}, which was already leased in ${P}`)
        }
        const preferred = typeof r.Address === 'string' && r.Address !== '' ? ipValue(r.Address) ?? cidrValue(r.Address) : undefined
        if (preferred && !sameIp(preferred, got)) fail(`asked for ${r.Address}, got ${a.Address}`)
        const range = cidrValue(before.recs.pools.get(P)?.subPool)
        if (!r.Address && range && !contains(range, got)) fail(`answered ${a.Address}, outside the pool's IP range ${range.network}/${range.bits}`)
      }
      break
    }
    case 'IpamDriver.ReleaseAddress': {
      const P = str(r.PoolID) ?? ''
      const removed = changedIds(before, after, 'leases')
      const wanted = ipValue(r.Address) ?? cidrValue(r.Address)
      if (removed.length > 1) fail(`released ${removed.length} leases (${removed.join(', ')})`)
      for (const [id, l] of after.recs.leases) {
        const la = ipValue(l.address)
        if (l.poolId === P && la && wanted && sameIp(la, wanted) && before.texts.leases.has(id)) fail(`answered 200 but lease ${id} is still in the store`)
      }
      for (const id of removed) {
        const l = before.recs.leases.get(id)
        const la = ipValue(l?.address)
        if (!l || after.texts.leases.has(id)) fail(`changed lease ${id} instead of removing it`)
        else if (l.poolId !== P || !la || !wanted || !sameIp(la, wanted)) fail(`released lease ${id}, not address ${r.Address} of pool ${P}`)
        touched.add(`leases/${id}`)
      }
      break
    }
    default:
      break // everything else must not change the store at all
  }
  out.push(...onlyTouched(method, before, after, touched))
  return out
}

// ---------------------------------------------------------------- (d) invariants of the store

export function storeProblems(s: StoreView): Violation[] {
  const out = [...s.problems]
  const fail = (detail: string) => out.push(v('store-invariant', detail))
  const { networks, endpoints, pools, leases } = s.recs
  const bridges = new Map<string, string>()
  for (const [id, n] of networks) {
    if (n.id !== id) fail(`network file ${id} holds network ${n.id}`)
    if (n.mode !== 'bridge') fail(`network ${id} has mode ${JSON.stringify(n.mode)}; this version serves bridge only`)
    if ('bridge' in n) fail(`network ${id} keeps a top-level bridge field (schema 1) beside spec`)
    const bridge = n.spec?.bridge
    if (typeof bridge !== 'string' || !/^[A-Za-z0-9_.-]{1,15}$/.test(bridge) || bridge === '.' || bridge === '..') fail(`network ${id} has an unusable bridge name ${JSON.stringify(bridge)}`)
    if (typeof n.spec?.bridgeNamedByUser !== 'boolean') fail(`network ${id} does not say whether its bridge was named with -o (spec ${JSON.stringify(n.spec)})`)
    const other = bridges.get(bridge)
    if (other !== undefined) fail(`networks ${other} and ${id} share bridge ${bridge}`)
    bridges.set(bridge, id)
    if (!Number.isInteger(n.mtu) || n.mtu < 68 || n.mtu > 65535) fail(`network ${id} has MTU ${n.mtu}`)
    for (const [fam, list] of [[4, n.ipv4Subnets], [6, n.ipv6Subnets]] as const) {
      for (const sub of (list ?? []) as any[]) {
        const p = cidrValue(sub.pool)
        if (!p || p.family !== fam) fail(`network ${id} has an IPv${fam} subnet ${JSON.stringify(sub.pool)} that is not an IPv${fam} CIDR`)
        const g = sub.gateway === undefined ? undefined : cidrValue(sub.gateway)
        if (sub.gateway !== undefined && (!g || !p || !contains(p, g))) fail(`network ${id} has gateway ${JSON.stringify(sub.gateway)} outside its subnet ${sub.pool}`)
      }
    }
  }
  const hostIfs = new Map<string, string>()
  const ctrIfs = new Map<string, string>()
  for (const [id, e] of endpoints) {
    if (e.id !== id) fail(`endpoint file ${id} holds endpoint ${e.id}`)
    const n = networks.get(e.networkId)
    if (!n) fail(`endpoint ${id} belongs to network ${e.networkId}, which is not in the store`)
    if (typeof e.hostIf !== 'string') fail(`endpoint ${id} of a bridge network has no host veth`)
    for (const [map, name, what] of [[hostIfs, e.hostIf, 'host veth'], [ctrIfs, e.containerIf, 'container veth']] as const) {
      const other = map.get(name)
      if (other !== undefined) fail(`endpoints ${other} and ${id} share the ${what} ${name}`)
      map.set(name, id)
      if (bridges.has(name)) fail(`endpoint ${id}'s ${what} ${name} is also the bridge of network ${bridges.get(name)}`)
    }
    if (e.hostIf === e.containerIf) fail(`endpoint ${id} uses ${e.hostIf} for both ends`)
    if (n) {
      if (e.mtu !== n.mtu) fail(`endpoint ${id} has MTU ${e.mtu}, its network ${n.mtu}`)
      for (const [addr, list] of [[e.address, n.ipv4Subnets], [e.addressV6, n.ipv6Subnets]] as const) {
        if (addr === undefined) continue
        const a = cidrValue(addr)
        if (!a || !(list as any[]).some((sub) => { const p = cidrValue(sub.pool); return p && (p.bits === 0 || contains(p, a)) })) {
          fail(`endpoint ${id}'s address ${addr} lies in no subnet of network ${n.id}`)
        }
      }
    }
    if (typeof e.mac !== 'string' || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(e.mac) || parseInt(e.mac.slice(0, 2), 16) & 1) fail(`endpoint ${id} has MAC ${e.mac}`)
    if (e.joined !== true && e.sandboxKey !== undefined) fail(`endpoint ${id} is not joined but has a sandbox key`)
    if (e.published !== undefined) {
      if (!Array.isArray(e.published)) fail(`endpoint ${id} has a malformed published list ${JSON.stringify(e.published)}`)
      else if (e.published.length > 0 && n?.internal) fail(`endpoint ${id} publishes ports on the internal network ${n.id}`)
    }
  }
  // No two endpoints hold one host port on overlapping addresses.
  const wild = (ip: string) => ip === '' || ip === '0.0.0.0' || ip === '::'
  const held: Array<{ id: string; p: PublishedPort }> = []
  for (const [id, e] of endpoints) {
    for (const p of (Array.isArray(e.published) ? e.published : []) as PublishedPort[]) {
      const clash = held.find((h) => h.id !== id && h.p.proto === p.proto && h.p.hostPort === p.hostPort && (wild(h.p.hostIp) || wild(p.hostIp) || h.p.hostIp === p.hostIp))
      if (clash) fail(`endpoints ${clash.id} and ${id} both publish ${p.proto}/${p.hostPort}`)
      held.push({ id, p })
    }
  }
  const poolPrefixes: Array<{ id: string; space: string; p: CidrValue }> = []
  for (const [id, p] of pools) {
    if (p.id !== id) fail(`pool file ${id} holds pool ${p.id}`)
    const c = cidrValue(p.pool)
    if (!c || c.value !== c.network) {
      fail(`pool ${id} has a non-canonical subnet ${p.pool}`)
      continue
    }
    if ((c.family === 6) !== (p.v6 === true)) fail(`pool ${id} is ${p.pool} but v6=${p.v6}`)
    for (const q of poolPrefixes) if (q.space === p.addressSpace && overlaps(q.p, c)) fail(`pools ${q.id} and ${id} overlap in address space ${p.addressSpace}`)
    poolPrefixes.push({ id, space: p.addressSpace, p: c })
    const range = p.subPool === undefined ? undefined : cidrValue(p.subPool)
    if (p.subPool !== undefined && (!range || !contains(c, range) || range.bits < c.bits)) fail(`pool ${id}'s IP range ${p.subPool} is not inside ${p.pool}`)
  }
  const seen = new Map<string, string>()
  for (const [id, l] of leases) {
    if (id !== `${l.poolId}#${l.address}`) fail(`lease file ${id} holds a lease of ${l.poolId}#${l.address}`)
    const pool = cidrValue(pools.get(l.poolId)?.pool)
    const a = ipValue(l.address)
    if (!pools.has(l.poolId)) fail(`lease ${id} belongs to pool ${l.poolId}, which is not in the store`)
    else if (!pool || !a || !contains(pool, a)) fail(`lease ${id}: ${l.address} lies outside its pool ${pools.get(l.poolId)?.pool}`)
    if (a) {
      const key = `${l.poolId}|${a.family}|${a.value}`
      const other = seen.get(key)
      if (other !== undefined) fail(`leases ${other} and ${id} hold the same address`)
      seen.set(key, id)
    }
  }
  return out
}

// ---------------------------------------------------------------- (d) the fake host against the store

/** A stored network, read as this version's record (the store writes schema 2). */
const bridgeOf = (n: any): string => String(n.spec?.bridge)

/**
 * The fake host against the store's records, in two ways. First, read as the kernel would show
 * it: each network's bridge with its gateways, MTU, MAC and device group, each endpoint's veth
 * pair on its bridge, the edge (docs/network-edge.md), the kernel settings the records call for;
 * nothing unexplained; foreign objects untouched. Second, as objects: exactly what the mode
 * renders for the stored records is on the host, and nothing else of tsnet's.
 */
export function fakeHostProblems(s: StoreView, host: FakeHost, foreign: ReadonlyMap<string, string>): Violation[] {
  const out: Violation[] = []
  const fail = (detail: string) => out.push(v('host-mismatch', detail))
  for (const [key, json] of foreign) {
    const o = host.objects.get(key)
    if (!o) fail(`the foreign object ${key} is gone`)
    else if (JSON.stringify(o) !== json) fail(`the foreign object ${key} changed: ${json} → ${JSON.stringify(o)}`)
  }
  const links = host.links
  const expectedLinks = new Set<string>([...foreign.keys()].filter((k) => k.startsWith('link ')).map((k) => k.slice('link '.length)))
  for (const n of s.recs.networks.values()) {
    const bridge = bridgeOf(n)
    expectedLinks.add(bridge)
    const l = links.get(bridge)
    if (!l) {
      fail(`network ${n.id}'s bridge ${bridge} does not exist`)
      continue
    }
    if (l.type !== 'bridge' || l.alias !== networkAlias(n.id) || l.mtu !== n.mtu || !l.up || l.mac !== macFromSeed(n.id) || l.master !== undefined) {
      fail(`bridge ${bridge} of network ${n.id} is not as recorded: ${JSON.stringify(l)}`)
    }
    if (l.group !== deviceGroupOf(n)) fail(`bridge ${bridge} of network ${n.id} has device group ${l.group}, the record implies ${deviceGroupOf(n)}`)
    const gws = [...n.ipv4Subnets, ...n.ipv6Subnets].flatMap((sub: any) => (sub.gateway ? [sub.gateway as string] : []))
    if ([...new Set(gws)].sort().join(' ') !== [...l.addresses].sort().join(' ')) fail(`bridge ${bridge} has addresses [${l.addresses.join(', ')}], the gateways are [${gws.join(', ')}]`)
  }
  for (const e of s.recs.endpoints.values()) {
    expectedLinks.add(e.hostIf)
    expectedLinks.add(e.containerIf)
    const n = s.recs.networks.get(e.networkId)
    const h = links.get(e.hostIf)
    const c = links.get(e.containerIf)
    if (!h || h.type !== 'veth' || h.alias !== endpointAlias(e.id) || h.master !== (n ? bridgeOf(n) : undefined) || h.mtu !== e.mtu || h.peer !== e.containerIf || !h.up) {
      fail(`host veth ${e.hostIf} of endpoint ${e.id} is not as recorded: ${JSON.stringify(h)}`)
    }
    if (!c || c.type !== 'veth' || c.mac !== e.mac || c.mtu !== e.mtu || c.peer !== e.hostIf) {
      fail(`container veth ${e.containerIf} of endpoint ${e.id} is not as recorded: ${JSON.stringify(c)}`)
    }
  }
  for (const name of links.keys()) if (!expectedLinks.has(name)) fail(`link ${name} exists but no record explains it: ${JSON.stringify(links.get(name))}`)
  const edge = expectedEdge(s)
  const same = (what: string, have: string[], want: string[]) => {
    const diff = linesDiff([...want].sort().join('\n'), [...have].sort().join('\n'))
    if (diff.length) fail(`${what} are not what the records imply:\n        ${diff.join('\n        ')}`)
  }
  out.push(...entryProblems(new Map([...host.sets.values()].map((e) => [entryKey(e), e.comment])), edge.entries))
  same('DNAT rules', [...host.portRules], edge.portRules.map((r) => `${r.family} ${r.rule}`))
  same('held host ports', [...host.heldPorts].filter((p) => !foreignPorts(foreign).has(p)), edge.heldPorts)
  if (host.edge !== edge.base) fail(`tsnet's chains are ${host.edge ? 'present' : 'absent'}, but ${s.recs.networks.size} networks exist`)
  out.push(...sysctlProblems(s, host))
  out.push(...renderedProblems(s, host, foreign))
  return out
}

/** Host ports held by foreign objects (none today; a test may add some). */
function foreignPorts(foreign: ReadonlyMap<string, string>): Set<string> {
  return new Set([...foreign.values()].map((j) => JSON.parse(j) as HostObject).flatMap((o) => (o.kind === 'portHold' ? [`${o.proto}/${o.port}`] : [])))
}

/**
 * The kernel settings the records call for (issue 10): accept_ra off on every bridge,
 * route_localnet on exactly where a container behind the bridge is published on an IPv4
 * loopback or wildcard address, forwarding on while a network that is not internal needs it,
 * bridge netfilter on while any network exists. (tsnet never takes a setting back: what no
 * record wants any more may stay.)
 */
function sysctlProblems(s: StoreView, host: FakeHost): Violation[] {
  const out: Violation[] = []
  const have = host.sysctls
  const want = new Map<string, string>()
  const networks = [...s.recs.networks.values()]
  for (const n of networks) {
    const bridge = bridgeOf(n)
    const published = [...s.recs.endpoints.values()].filter((e) => e.networkId === n.id).flatMap((e) => (e.published ?? []) as PublishedPort[])
    want.set(`net/ipv4/conf/${bridge}/route_localnet`, needsRouteLocalnet(published) ? '1' : '0')
    want.set(`net/ipv6/conf/${bridge}/accept_ra`, '0')
    want.set('net/bridge/bridge-nf-call-iptables', '1')
    want.set('net/bridge/bridge-nf-call-ip6tables', '1')
    if (!n.internal) want.set('net/ipv4/ip_forward', '1')
    if (!n.internal && n.ipv6) want.set('net/ipv6/conf/all/forwarding', '1')
  }
  for (const [path, value] of want) {
    if (have.get(path) !== value) out.push(v('host-mismatch', `kernel setting ${path} is ${JSON.stringify(have.get(path))}, the records call for ${value}`))
  }
  return out
}

/** What "the same" means when comparing a rendered object with the host's: `recreate` only says what a reconcile may do. */
const objectText = (o: HostObject) => JSON.stringify(o.kind === 'link' ? { ...o, recreate: undefined } : o)

/**
 * The host holds exactly the objects bridge mode renders for the stored records (kernel settings:
 * those wanted are there; others are shared with the host and may stay). A key several owners
 * want may carry any of their objects.
 */
function renderedProblems(s: StoreView, host: FakeHost, foreign: ReadonlyMap<string, string>): Violation[] {
  const out: Violation[] = []
  const fail = (detail: string) => out.push(v('host-mismatch', detail))
  const ctx = { facts: host.hostFacts, resolve: () => [] }
  const wanted = new Map<string, Set<string>>()
  const want = (objects: HostObject[]) => {
    for (const o of objects) {
      const k = keyOf(o)
      const texts = wanted.get(k) ?? new Set<string>()
      texts.add(objectText(o))
      wanted.set(k, texts)
    }
  }
  const endpoints = [...s.recs.endpoints.values()] as EndpointRecord[]
  for (const n of s.recs.networks.values() as Iterable<NetworkRecord>) {
    try {
      want(bridgeMode.renderNetwork(n, endpoints.filter((e) => e.networkId === n.id), ctx))
    } catch (err) {
      fail(`the stored network ${n.id} cannot be rendered: ${err instanceof Error ? err.message : String(err)}`)
    }
  }
  for (const e of endpoints) {
    const n = s.recs.networks.get(e.networkId) as NetworkRecord | undefined
    if (!n) continue
    try {
      want(bridgeMode.renderEndpoint(e, n, ctx))
    } catch (err) {
      fail(`the stored endpoint ${e.id} cannot be rendered: ${err instanceof Error ? err.message : String(err)}`)
    }
  }
  for (const [k, texts] of wanted) {
    const o = host.objects.get(k)
    if (!o) fail(`${k}, which the records want, is not on the host`)
    else if (!texts.has(objectText(o))) fail(`${k} is ${objectText(o)} on the host, the records want ${[...texts].join(' or ')}`)
  }
  for (const [k, o] of host.objects) {
    if (wanted.has(k) || foreign.has(k) || o.kind === 'sysctl') continue
    fail(`${k} is on the host, but no record wants it: ${JSON.stringify(o)}`)
  }
  return out
}

/**
 * The edge the records imply (docs/network-edge.md): tsnet's chains while any network exists,
 * each network's subnet and policy entries, each bridge's device group, one DNAT rule per
 * published port and family, one held port per published mapping. No Docker names are known
 * here (the fuzzed app has no directory), so policies resolve only their addresses.
 */
export interface ExpectedEdge {
  base: boolean
  /** By `set entry`: the entry and the comments it may carry (one per network that needs it: networks may share a subnet). */
  entries: Map<string, { entry: SetEntry; owners: Set<string> }>
  portRules: Array<{ family: 4 | 6; rule: string }>
  heldPorts: string[]
  groups: Map<string, number>
}

export function expectedEdge(s: StoreView): ExpectedEdge {
  const entries: ExpectedEdge['entries'] = new Map()
  const groups = new Map<string, number>()
  const endpoints = [...s.recs.endpoints.values()] as EndpointRecord[]
  for (const n of s.recs.networks.values() as Iterable<NetworkRecord>) {
    groups.set(bridgeOf(n), deviceGroupOf(n))
    const rules = n.policy ? parsePolicy(n.policy) : []
    const edge = bridgeEdge(n, bridgeOf(n))
    for (const e of [...networkEntries(edge), ...allowEntries(edge, endpoints.filter((x) => x.networkId === n.id), rules, () => [])]) {
      const known = entries.get(entryKey(e))
      if (known) known.owners.add(e.comment)
      else entries.set(entryKey(e), { entry: e, owners: new Set([e.comment]) })
    }
  }
  const portRules = endpoints.flatMap((e) => (e.published ?? []).map((p) => ({ family: p.family, rule: dnatRule(e.id, p) })))
  const heldPorts = [...new Set(endpoints.flatMap((e) => (e.published ?? []).map((p) => `${p.proto}/${p.hostPort}`)))]
  return { base: s.recs.networks.size > 0, entries, portRules, heldPorts, groups }
}

/** `have`: `set entry` → comment, as the host holds them. One violation per missing, unexplained or misattributed entry. */
export function entryProblems(have: ReadonlyMap<string, string>, want: ExpectedEdge['entries']): Violation[] {
  const out: Violation[] = []
  for (const [key, w] of want) {
    const comment = have.get(key)
    const owners = [...w.owners].join(', ')
    if (comment === undefined) out.push(v('host-mismatch', `ipset entry ${key} that network ${owners} needs is missing`))
    else if (!w.owners.has(comment)) out.push(v('host-mismatch', `ipset entry ${key} is commented ${comment}, but belongs to ${owners}`))
  }
  for (const [key, comment] of have) if (!want.has(key)) out.push(v('host-mismatch', `ipset entry ${key} (${comment}) exists but no record explains it`))
  return out
}

// ---------------------------------------------------------------- (d) the services' memory against the store

export function memoryProblems(
  s: StoreView,
  net: { networks: unknown[]; endpoints: unknown[] },
  pools: Array<Record<string, unknown> & { leases: string[] }>,
): Violation[] {
  const out: Violation[] = []
  const fail = (detail: string) => out.push(v('memory-mismatch', detail))
  const compare = (coll: Coll, mem: unknown[]) => {
    const ids = new Set<string>()
    for (const rec of mem as Array<{ id: string }>) {
      ids.add(rec.id)
      const text = s.texts[coll].get(rec.id)
      if (text === undefined) fail(`tsnet holds ${coll} record ${rec.id} in memory but not in the store`)
      else if (text !== JSON.stringify(rec)) fail(`${coll} record ${rec.id} differs between memory and store: ${short(JSON.stringify(rec))} vs ${short(text)}`)
    }
    for (const id of s.texts[coll].keys()) if (!ids.has(id)) fail(`${coll} record ${id} is in the store but not in tsnet's memory`)
  }
  compare('networks', net.networks)
  compare('endpoints', net.endpoints)
  const poolRecs = pools.map(({ leases: _l, ...rest }) => rest)
  compare('pools', poolRecs)
  const memLeases = new Set(pools.flatMap((p) => p.leases.map((a) => `${String(p.id)}#${a}`)))
  const storeLeases = new Set(s.texts.leases.keys())
  for (const l of memLeases) if (!storeLeases.has(l)) fail(`lease ${l} is in tsnet's memory but not in the store`)
  for (const l of storeLeases) if (!memLeases.has(l)) fail(`lease ${l} is in the store but not in tsnet's memory`)
  return out
}
