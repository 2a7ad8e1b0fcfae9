/**
 * The cluster store's endpoints as users give them (`--etcd-endpoints URL[,URL...]`): http or
 * https URLs of etcd members, a host and an optional port (default 2379), nothing else. Pure.
 */
import { invalid } from '../errors.js'

export const DEFAULT_ETCD_PORT = 2379
const MAX_ENDPOINTS = 16

/** Canonical `scheme://host:port` of each endpoint; throws a TsnetError of kind invalid saying what is wrong. */
export function parseEtcdEndpoints(text: string): string[] {
  const parts = text.split(',').map((p) => p.trim())
  if (parts.some((p) => p === '')) throw invalid(`"${text.slice(0, 200)}" has an empty endpoint: give URLs separated by commas, e.g. http://10.0.0.1:2379,http://10.0.0.2:2379`)
  if (parts.length > MAX_ENDPOINTS) throw invalid(`${parts.length} endpoints; at most ${MAX_ENDPOINTS}`)
  const endpoints = parts.map((part) => {
    const shown = JSON.stringify(part.slice(0, 100))
    let url: URL
    try {
      url = new URL(part)
    } catch {
      throw invalid(`${shown} is not a URL such as http://10.0.0.1:2379`)
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid(`${shown}: an etcd endpoint is http:// or https://, not ${url.protocol}//`)
    if (url.hostname === '') throw invalid(`${shown} names no host`)
    if (url.username !== '' || url.password !== '') throw invalid(`${shown}: credentials do not belong in an endpoint`)
    if ((url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '') throw invalid(`${shown}: an endpoint is scheme://host:port, with no path, query or fragment`)
    return `${url.protocol}//${url.hostname}:${url.port === '' ? DEFAULT_ETCD_PORT : url.port}`
  })
  const secure = endpoints.filter((e) => e.startsWith('https:')).length
  if (secure !== 0 && secure !== endpoints.length) throw invalid('mixes http and https endpoints: every member is reached the same way')
  if (new Set(endpoints).size !== endpoints.length) throw invalid('names an endpoint twice')
  return endpoints
}

/** The host of an endpoint (brackets of an IPv6 literal removed). */
export function endpointHost(endpoint: string): string {
  return new URL(endpoint).hostname.replace(/^\[(.*)\]$/, '$1')
}
