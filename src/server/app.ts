/**
 * The HTTP face of tsnet: every NetworkDriver and IpamDriver call on one fastify instance.
 * buildApp does not listen, so tests drive it with inject() and main binds it to the socket.
 */
import Fastify, { LogController, type FastifyError, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { TsnetError } from '../errors.js'
import { dockerRoutes, type Route, type Services } from './docker-routes.js'
import { tsnetRoutes } from './tsnet-routes.js'

export interface AppDeps {
  logger: Logger
  services: Services
  /** Requests wait for this (e.g. the boot reconcile) before they are handled. */
  ready?: Promise<void>
  bodyLimit?: number
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
  const app = Fastify({
    loggerInstance: d.logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: d.bodyLimit ?? 1024 * 1024,
    // Docker sends exact types; coercing "1" into 1 would hide malformed requests.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  })

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
    if (d.ready) await d.ready
  })

  app.addHook('onResponse', async (req, reply) => {
    req.log.debug({ call: methodOf(req), status: reply.statusCode, ms: Math.round(reply.elapsedTime * 100) / 100 }, 'request done')
  })

  app.setErrorHandler((err: FastifyError | TsnetError, req, reply) => {
    const call = methodOf(req)
    let message: string
    if (err instanceof TsnetError) {
      message = err.message
      const level = err.kind === 'host' ? 'error' : 'warn'
      req.log[level]({ call, kind: err.kind, err, body: req.body }, 'request refused')
    } else if ((err as FastifyError).validation) {
      message = validationMessage(err as FastifyError)
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
    app.post(path, route.schema ? { schema: { body: route.schema } } : {}, async (req) => {
      const result = await route.handler(req.body, req.log)
      return result ?? {}
    })
  }
  return app
}
