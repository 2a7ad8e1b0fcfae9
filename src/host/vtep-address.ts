/**
 * This host's address on cluster networks (its VTEP): --advertise-address, else the source
 * address the kernel would use to reach the first etcd endpoint's host, the address the other
 * hosts most likely reach it on. A route lookup (`ip route get`) sends nothing. Called at start,
 * never on a request path.
 */
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { endpointHost } from '../core/etcd-endpoints.js'
import { parseRouteSource } from '../core/route-source.js'
import { TsnetError, errorMessage } from '../errors.js'
import { type Runner, createRunner } from './exec.js'

export interface VtepChoice {
  address: string
  /** Where it came from, for the log. */
  source: 'advertise-address' | 'route'
}

export async function vtepAddress(settings: { advertiseAddress?: string; endpoints: readonly string[] }, runner: Runner = createRunner()): Promise<VtepChoice> {
  if (settings.advertiseAddress !== undefined) return { address: settings.advertiseAddress, source: 'advertise-address' }
  const first = settings.endpoints[0]
  if (first === undefined) throw new TsnetError('invalid', 'no etcd endpoint to find this host\'s address from; give --advertise-address')
  return { address: await sourceAddressToward(endpointHost(first), runner), source: 'route' }
}

/** The source address of the kernel's route to `host` (a name is resolved first). */
export async function sourceAddressToward(host: string, runner: Runner = createRunner()): Promise<string> {
  let ip = host
  if (isIP(host) === 0) {
    try {
      ip = (await lookup(host)).address
    } catch (err) {
      throw new TsnetError('host', `cannot resolve etcd host ${host} to find this host's address: ${errorMessage(err)}; give --advertise-address`, { cause: err })
    }
  }
  const r = await runner.run('ip', ['-j', 'route', 'get', ip])
  const address = r.code === 0 ? parseRouteSource(r.stdout) : undefined
  if (address === undefined) {
    const why = r.code === 0 ? 'the route names no source address' : r.stderr.trim() || `ip exited ${r.code}`
    throw new TsnetError('host', `cannot find this host's address toward etcd host ${host} (${ip}): ${why}; give --advertise-address`)
  }
  return address
}
