/**
 * Shapes of the stored records, checked as they are loaded: a record that parses as JSON but is
 * not what the code reading it expects (null, a number, a list, a field missing or of the wrong
 * type, a name the kernel would refuse) is reported here, and the store moves it aside instead of
 * letting it stop tsnet or reach a host command. Strict about what the services rely on; fields
 * the checks do not know are left alone, so records of a newer tsnet still load.
 */
import { quote } from '../errors.js'
import { type Family, parseCidr, parseIp } from './addr.js'
import { poolIdOf } from './ipam.js'

/** What is wrong with a value, or undefined when it is fine; `at` names it ("field mtu"). */
type Check = (value: unknown, at: string) => string | undefined

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
const shown = (v: unknown) => (v === undefined ? 'missing' : quote(v))
const expect = (test: (v: unknown) => boolean, what: string): Check => (v, at) => (test(v) ? undefined : `${at} is ${shown(v)}, not ${what}`)

const str = expect((v) => typeof v === 'string', 'a string')
const bool = expect((v) => typeof v === 'boolean', 'true or false')
const int = (min: number, max: number) => expect((v) => Number.isInteger(v) && (v as number) >= min && (v as number) <= max, `a whole number from ${min} to ${max}`)
const oneOf = (...values: unknown[]) => expect((v) => values.includes(v), `one of ${values.map((x) => JSON.stringify(x)).join(', ')}`)
const matching = (re: RegExp, what: string) => expect((v) => typeof v === 'string' && re.test(v), what)

const familyText = (family?: Family) => (family ? `IPv${family} ` : '')
const cidr = (family?: Family) => expect((v) => {
  const c = typeof v === 'string' ? parseCidr(v) : undefined
  return c !== undefined && (family === undefined || c.ip.family === family)
}, `an ${familyText(family)}address/length`)
const ip = (family?: Family) => expect((v) => {
  const a = typeof v === 'string' ? parseIp(v) : undefined
  return a !== undefined && (family === undefined || a.family === family)
}, `an ${familyText(family)}address`)
const ipOrEmpty = expect((v) => v === '' || (typeof v === 'string' && parseIp(v) !== undefined), 'an address or ""')

/** Docker IDs (64 hex) and Swarm's (25 alphanumerics); they become link aliases and rule comments. */
const dockerId = matching(/^[A-Za-z0-9]{1,64}$/, 'a Docker ID')
/** What the kernel accepts as a link name, as core/names.ts checks it. */
const ifName = matching(/^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,15}$/, 'an interface name')
const mac = matching(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i, 'a MAC address')
const port = int(0, 65535)
const proto = oneOf('tcp', 'udp', 'sctp')
const mtu = int(68, 65535)

const listOf = (item: Check): Check => (v, at) => {
  if (!Array.isArray(v)) return `${at} is ${shown(v)}, not a list`
  for (const [i, x] of v.entries()) {
    const problem = item(x, `${at}[${i}]`)
    if (problem) return problem
  }
  return undefined
}
const mapOf = (item: Check): Check => (v, at) => {
  if (!isObject(v)) return `${at} is ${shown(v)}, not an object`
  for (const [k, x] of Object.entries(v)) {
    const problem = item(x, `${at}.${k}`)
    if (problem) return problem
  }
  return undefined
}
const anything: Check = () => undefined
const optional = (c: Check): Check => (v, at) => (v === undefined ? undefined : c(v, at))

/** An object with these fields (others are allowed); at the top level `at` is ''. */
const shape = (fields: Record<string, Check>): Check => (v, at) => {
  if (!isObject(v)) return `${at === '' ? 'the record' : at} is ${shown(v)}, not an object`
  for (const [name, check] of Object.entries(fields)) {
    const problem = check(v[name], at === '' ? `field ${name}` : `${at}.${name}`)
    if (problem) return problem
  }
  return undefined
}

const subnet = (family: Family) => shape({ pool: cidr(family), gateway: optional(cidr(family)), auxAddresses: optional(mapOf(cidr(family))) })

const commonNetwork = {
  id: dockerId, mtu, internal: bool, ipv6: bool,
  ipv4Subnets: listOf(subnet(4)), ipv6Subnets: listOf(subnet(6)), enableIpMasquerade: bool, enableIcc: bool,
  genericOptions: mapOf(str), policy: optional(str), createdAt: str,
}
/** Schema 1 (no modes: a bridge at the top level), read and upgraded by core/record-upgrade.ts. */
const networkV1 = shape({ ...commonNetwork, bridge: ifName, bridgeNamedByUser: bool })
const SPECS: Record<string, Check> = {
  bridge: shape({ bridge: ifName, bridgeNamedByUser: bool }),
  macvlan: shape({
    parent: ifName, macvlanMode: oneOf('bridge', 'private', 'vepa', 'passthru'), parentCreated: bool,
    vlan: optional(shape({ link: ifName, id: int(1, 4094), mtu })), parentMac: optional(mac),
  }),
  overlay: shape({ bridge: optional(ifName), vxlan: ifName, vni: int(1, 0xffffff), port: int(1, 65535), underlayMtu: mtu }),
  cluster: shape({
    bridge: ifName, bridgeNamedByUser: bool, cluster: str, vxlan: ifName, vni: int(1, 0xffffff), port: int(1, 65535), local: ip(), underlayMtu: mtu,
  }),
}
const networkV2 = shape({
  ...commonNetwork,
  mode: oneOf(...Object.keys(SPECS)),
  spec: anything,
})
const network: Check = (v, at) => {
  if (!isObject(v) || v.mode === undefined) return networkV1(v, at)
  return networkV2(v, at) ?? (SPECS[v.mode as string] as Check)(v.spec, 'field spec')
}

const endpoint = shape({
  id: dockerId, networkId: dockerId, hostIf: optional(ifName), containerIf: ifName, mac, macFromDocker: bool, mtu,
  address: optional(cidr(4)), addressV6: optional(cidr(6)),
  portMappings: listOf(shape({ proto, containerPort: port, hostIp: ipOrEmpty, hostPort: port, hostPortEnd: port })),
  exposedPorts: listOf(shape({ proto, port })),
  published: optional(listOf(shape({ family: oneOf(4, 6), proto, hostIp: ipOrEmpty, hostPort: port, containerIp: ip(), containerPort: port }))),
  sandboxKey: optional(str), joined: bool, createdAt: str,
})

const pool = shape({
  id: str, addressSpace: str, pool: cidr(), subPool: optional(cidr()), v6: bool, options: mapOf(anything), createdAt: str,
})

const lease = shape({ poolId: str, address: ip(), kind: oneOf('gateway', 'aux', 'endpoint'), owner: optional(str), createdAt: str })

/** The meta records tsnet writes, by ID; any other ID must at least be an object. */
const META: Record<string, Check> = {
  schema: shape({ version: int(0, Number.MAX_SAFE_INTEGER) }),
  ipam: shape({ ula48: cidr(6) }),
  engine: shape({ id: str }),
  'docker-networks': shape({ networks: listOf(shape({ id: str, name: str, driver: str, subnets: listOf(str) })) }),
  // Overlay mode: the leader's VNI claims (network ID → VNI), and the hosts of the swarm.
  'overlay-vnis': shape({ claims: mapOf(int(1, 0xffffff)) }),
  'swarm-peers': shape({ self: optional(ip()), peers: mapOf(oneOf('discovery', 'docker')), contact: optional(mapOf(str)) }),
  // Cluster networks: this host's ID in the cluster store, and its copy of the other hosts' endpoints.
  'cluster-host': shape({ id: str }),
  'cluster-remotes': mapOf(listOf(shape({ ip: ip(4), ipv6: optional(ip(6)), mac, vtep: ip() }))),
}

/** The ID a record must be stored under, for the records whose ID follows from their content. */
function expectedId(collection: string, value: Record<string, unknown>): string | undefined {
  switch (collection) {
    case 'networks':
    case 'endpoints':
      return value.id as string
    case 'pools': {
      const p = parseCidr(value.pool as string)
      const sub = value.subPool === undefined ? undefined : parseCidr(value.subPool as string)
      return p ? poolIdOf(value.addressSpace as string, p.prefix, sub?.prefix) : undefined
    }
    case 'leases':
      return `${String(value.poolId)}#${String(value.address)}`
    default:
      return undefined
  }
}

/** IDs in full (a file name is at most 255 bytes), cut only when absurd. */
const named = (id: string) => JSON.stringify(id.length > 300 ? `${id.slice(0, 300)}…` : id)

const RECORDS: Record<string, { noun: string; check: Check }> = {
  networks: { noun: 'network', check: network },
  endpoints: { noun: 'endpoint', check: endpoint },
  pools: { noun: 'address pool', check: pool },
  leases: { noun: 'address lease', check: lease },
}

/**
 * Undefined when `value`, stored as `id` in `collection`, is a record the services can read;
 * else a sentence saying what is wrong with it.
 */
export function checkStoredRecord(collection: string, id: string, value: unknown): string | undefined {
  if (collection === 'meta') {
    const problem = (META[id] ?? shape({}))(value, '')
    return problem ? `not a valid ${id} record: ${problem}` : undefined
  }
  const kind = RECORDS[collection]
  if (!kind) return `records of collection ${quote(collection)} are unknown to this tsnet`
  const problem = kind.check(value, '')
  if (problem) return `not a valid ${kind.noun} record: ${problem}`
  const wanted = expectedId(collection, value as Record<string, unknown>)
  if (wanted !== undefined && wanted !== id) return `the ${kind.noun} record stored as ${named(id)} describes ${named(wanted)}`
  return undefined
}
