/**
 * The opt-in Prometheus listener (`--metrics-address`): GET /metrics and nothing else, on plain
 * HTTP at the address given. It only reads counters, so a scrape never waits for a Docker call.
 */
import { createServer, type Server } from 'node:http'
import type { Logger } from 'pino'
import type { Metrics } from '../services/metrics.js'

export interface MetricsAddress {
  host: string
  port: number
}

export async function serveMetrics(metrics: Metrics, at: MetricsAddress, log: Logger): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('tsnet serves only GET /metrics here\n')
      return
    }
    metrics.text().then((text) => {
      res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text)
    }, (err: unknown) => {
      log.error({ err }, 'metrics could not be collected')
      res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics could not be collected\n')
    })
  })
  // A scraper that stalls holds one socket for a few seconds at most.
  server.requestTimeout = 10_000
  server.headersTimeout = 5_000
  server.maxConnections = 16
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(at.port, at.host, () => { server.off('error', reject); resolve() })
  })
  log.info({ metrics: `http://${at.host.includes(':') ? `[${at.host}]` : at.host}:${at.port}/metrics` }, 'metrics served')
  return server
}
