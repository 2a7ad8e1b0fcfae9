/**
 * The HTTP face of tsnet: every NetworkDriver and IpamDriver call on one fastify instance.
 * buildApp does not listen, so tests drive it with inject() and main binds it to the socket.
 */
import Fastify, { LogController, type FastifyError, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { TsnetError } from '../errors.js'
import { dockerRoutes, type Route, type Services } from './docker-routes.js'
import { tsnetRoutes } from './tsnet-routes.js'
import type { Metrics } from '../services/metrics.js'

export interface AppDeps {
  logger: Logger
  services: Services
  /** Requests wait for this (e.g. the boot reconcile) before they are handled. */
  ready?: Promise<void>
  /** SERVER_LIMITS, some changed (tests shorten the timeouts). */
  limits?: Partial<ServerLimits>
  /** Per-call latency and errors (metrics on). */
  metrics?: Metrics
}

export interface ServerLimits {
  bodyLimit: number
  headersTimeoutMs: number
  requestTimeoutMs: number
  keepAliveTimeoutMs: number
  checkIntervalMs: number
  maxConnections: number
}

/**
 * How much of the daemon one client connection may hold. Docker's plugin client (Go net/http on
 * the unix socket, /work/shared/protocol.md §1) writes each request at once, keeps at most 6
 * idle connections and closes an idle one after 30 s; every call is answered long before these
 * limits bite. They only cut off clients that send slowly or not at all.
 */
export const SERVER_LIMITS: ServerLimits = {
  // The largest real body is a port map of 4,096 mappings (about 400 KB).
  bodyLimit: 1024 * 1024,
  // From the connection (or the previous response) to the end of the headers, which Docker
  // sends in one write: a client that trickles them (slow-loris) is dropped after this.
  headersTimeoutMs: 10_000,
  // Receiving the whole request, body included. Only the upload counts: the handler's time is
  // not limited (a CreateNetwork waiting for the boot reconcile, or for another call on the
  // same network, may legitimately take many seconds).
  requestTimeoutMs: 20_000,
  // Longer than Go's 30 s idle timeout, so Docker closes its idle connections first and never
  // sends a request on one tsnet is closing (which would fail that call).
  keepAliveTimeoutMs: 40_000,
  // How often Node checks the two timeouts above (its default, 30 s, would let a slow client
  // stay up to 30 s longer than they say). The check walks the open connections only.
  checkIntervalMs: 1_000,
  // Docker opens one connection per concurrent call; calls on one network queue behind each
  // other while holding theirs. 256 leaves room for a mass start of containers, while bounding
  // what clients can hold: a socket each, and at most 256 x bodyLimit of buffered bodies. A
  // connection beyond it is closed at once; Docker retries those for about 15 s.
  maxConnections: 256,
}

const ERR_MAX = 1000

/** Turns ajv's findings into a sentence: "field Interface.Address must be string". */
function validationMessage(err: FastifyError): string {
  const first = err.validation?.[0]
  if (!first) return 'the request body is not what this call expects'
  const path = first.instancePath.replace(/^\//, '').replace(/\//g, '.')
  const missing = (first.params as { missingProperty?: string }).missingProperty
  if (missing) return `the request body lacks the field ${path ? `${path}.` : ''}${missing}`
  return path ? `field ${path} ${first.message ?? 'is invalid'}` : `the request body ${first.message ?? 'is invalid'}`
}

function methodOf(req: FastifyRequest): string {
  return req.url.replace(/^\//, '').split('?')[0] ?? req.url
}

export function buildApp(d: AppDeps) {
  const limits = { ...SERVER_LIMITS, ...d.limits }
  const app = Fastify({
    loggerInstance: d.logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: limits.bodyLimit,
    http: { headersTimeout: limits.headersTimeoutMs, connectionsCheckingInterval: limits.checkIntervalMs },
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // No socket inactivity timeout: a request waiting for its answer sends nothing, however
    // long the handler takes; idle and slow clients are covered by the timeouts above.
    connectionTimeout: 0,
    // Docker sends exact types; coercing "1" into 1 would hide malformed requests.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  })

  app.server.maxConnections = limits.maxConnections

  // Docker sends no Content-Type: accept any, and parse the body as JSON ourselves.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    const text = (body as string).trim()
    if (text === '') return done(null, {})
    try {
      done(null, JSON.parse(text))
    } catch (err) {
      done(new TsnetError('invalid', `the request body is not valid JSON (${(err as Error).message})`), undefined)
    }
  })

  app.addHook('preValidation', async (req) => {
    if (req.body === undefined || req.body === null) req.body = {}
    // `tsnet status` may ask during a long boot reconcile: it reads, and says the boot is not over.
    if (d.ready && methodOf(req) !== 'Tsnet.Status') await d.ready
  })

  /** The kind of error a refused request met, for the error counter. */
  const refused = new WeakMap<FastifyRequest, string>()
  app.addHook('onResponse', async (req, reply) => {
    d.metrics?.request(methodOf(req), reply.elapsedTime / 1000, reply.statusCode === 200 ? undefined : refused.get(req) ?? 'internal')
    req.log.debug({ call: methodOf(req), status: reply.statusCode, ms: Math.round(reply.elapsedTime * 100) / 100 }, 'request done')
  })

  app.setErrorHandler((err: FastifyError | TsnetError, req, reply) => {
    const call = methodOf(req)
    let message: string
    if (err instanceof TsnetError) {
      message = err.message
      const level = err.kind === 'host' ? 'error' : 'warn'
      refused.set(req, err.kind)
      req.log[level]({ call, kind: err.kind, err, body: req.body }, 'request refused')
    } else if ((err as FastifyError).validation) {
      message = validationMessage(err as FastifyError)
      refused.set(req, 'invalid')
      req.log.warn({ call, body: req.body, err }, 'request refused: invalid body')
    } else if ((err as FastifyError).statusCode && (err as FastifyError).statusCode! < 500) {
      message = `the request was refused: ${err.message}`
      req.log.warn({ call, err }, 'request refused')
    } else {
      message = `internal error: ${err.message}`
      req.log.error({ call, err }, 'request failed')
    }
    // Docker accepts only 200 as success and reads {"Err"} from anything else, for both APIs.
    // A message never grows with the request: values are quoted short, and this caps the rest.
    void reply.code(500).send({ Err: message.length > ERR_MAX ? `${message.slice(0, ERR_MAX)}…` : message })
  })

  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ Err: `tsnet does not implement ${methodOf(req)}` })
  })

  const routes: Record<string, Route> = { ...dockerRoutes(d.services), ...tsnetRoutes(d.services) }
  for (const [path, route] of Object.entries(routes)) {
    app.post(path, route.schema ? { schema: { body: route.schema } } : {}, async (req, reply) => {
      // A handler may answer before it is done (see Answer); what fails after that is only logged.
      let early = false
      const answer = (value: unknown) => {
        if (early) return
        early = true
        void reply.send(value ?? {})
      }
      try {
        const result = await route.handler(req.body, req.log, answer)
        return early ? reply : result ?? {}
      } catch (err) {
        if (!early) throw err
        req.log.error({ call: methodOf(req), err }, 'failed after the answer was sent (the reconcile finishes the work)')
        return reply
      }
    })
  }
  return app
}
