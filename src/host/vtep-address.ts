/**
 * This host's address on cluster networks (its VTEP): --advertise-address, else the source
 * address the kernel would use to reach the first etcd endpoint's host, the address the other
 * hosts most likely reach it on. The kernel is asked by connecting a UDP socket, which sends
 * nothing and needs no tool (the managed plugin ships without iproute2). Called at start, never
 * on a request path.
 */
import { createSocket } from 'node:dgram'
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { formatIp, parseIp } from '../core/addr.js'
import { endpointHost } from '../core/etcd-endpoints.js'
import { TsnetError, errorMessage } from '../errors.js'

export interface VtepChoice {
  address: string
  /** Where it came from, for the log. */
  source: 'advertise-address' | 'route'
}

/** Asks the kernel for the source address of its route to `ip`; rejects when there is no route. */
export type RouteProbe = (ip: string) => Promise<string>

/** A UDP socket connected to `ip`: the kernel picks the route and source address; no packet leaves. */
export const udpRouteProbe: RouteProbe = (ip) => new Promise((resolve, reject) => {
  const socket = createSocket(isIP(ip) === 6 ? 'udp6' : 'udp4')
  const done = (err: Error | null, address?: string) => {
    socket.close()
    if (err || address === undefined) reject(err ?? new Error('no source address'))
    else resolve(address)
  }
  socket.once('error', (err) => done(err))
  // Port 9 (discard): any port gives the same route; nothing is sent on a connect.
  socket.connect(9, ip, () => {
    try {
      done(null, socket.address().address)
    } catch (err) {
      done(err as Error)
    }
  })
})

export async function vtepAddress(settings: { advertiseAddress?: string; endpoints: readonly string[] }, probe: RouteProbe = udpRouteProbe): Promise<VtepChoice> {
  if (settings.advertiseAddress !== undefined) return { address: settings.advertiseAddress, source: 'advertise-address' }
  const first = settings.endpoints[0]
  if (first === undefined) throw new TsnetError('invalid', 'no etcd endpoint to find this host\'s address from; give --advertise-address')
  return { address: await sourceAddressToward(endpointHost(first), probe), source: 'route' }
}

/** The source address of the kernel's route to `host` (a name is resolved first). */
export async function sourceAddressToward(host: string, probe: RouteProbe = udpRouteProbe): Promise<string> {
  let ip = host
  if (isIP(host) === 0) {
    try {
      ip = (await lookup(host)).address
    } catch (err) {
      throw new TsnetError('host', `cannot resolve etcd host ${host} to find this host's address: ${errorMessage(err)}; give --advertise-address`, { cause: err })
    }
  }
  let source: string
  try {
    source = await probe(ip)
  } catch (err) {
    throw new TsnetError('host', `cannot find this host's address toward etcd host ${host} (${ip}): ${errorMessage(err)}; give --advertise-address`, { cause: err })
  }
  const parsed = parseIp(source)
  if (!parsed || parsed.value === 0n) { // unspecified: the kernel found no route source
    throw new TsnetError('host', `cannot find this host's address toward etcd host ${host} (${ip}): the route names no source address; give --advertise-address`)
  }
  return formatIp(parsed)
}
