/**
 * The HTTP face of tsnet: every NetworkDriver and IpamDriver call on one fastify instance.
 * buildApp does not listen, so tests drive it with inject() and main binds it to the socket.
 */
import Fastify, { LogController, type FastifyError, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { TsnetError, invalid } from '../errors.js'
import * as schemas from '../protocol/schemas.js'
import type { IpamService } from '../services/ipam-service.js'
import type { NetworkService } from '../services/network-service.js'

export interface AppDeps {
  logger: Logger
  network: NetworkService
  ipam: IpamService
  /** Requests wait for this (e.g. the boot reconcile) before they are handled. */
  ready?: Promise<void>
  bodyLimit?: number
}

type Handler = (body: any, log: Logger) => unknown

interface Route {
  schema?: object
  handler: Handler
}

export const IMPLEMENTS = ['NetworkDriver', 'IpamDriver']
const ERR_MAX = 1000

function routes(d: AppDeps): Record<string, Route> {
  const n = d.network
  const i = d.ipam
  return {
    '/Plugin.Activate': { handler: () => ({ Implements: IMPLEMENTS }) },
    '/NetworkDriver.GetCapabilities': { handler: () => n.capabilities() },
    '/NetworkDriver.CreateNetwork': { schema: schemas.createNetwork, handler: (b, log) => n.createNetwork(b, log) },
    '/NetworkDriver.DeleteNetwork': { schema: schemas.networkRef, handler: (b, log) => n.deleteNetwork(b, log) },
    '/NetworkDriver.AllocateNetwork': { schema: schemas.allocateNetwork, handler: (b) => n.allocateNetwork(b) },
    '/NetworkDriver.FreeNetwork': { schema: schemas.networkRef, handler: () => ({}) },
    '/NetworkDriver.CreateEndpoint': { schema: schemas.createEndpoint, handler: (b, log) => n.createEndpoint(b, log) },
    '/NetworkDriver.EndpointOperInfo': { schema: schemas.endpointRef, handler: (b) => n.endpointOperInfo(b) },
    '/NetworkDriver.DeleteEndpoint': { schema: schemas.endpointRef, handler: (b, log) => n.deleteEndpoint(b, log) },
    '/NetworkDriver.Join': { schema: schemas.join, handler: (b, log) => n.join(b, log) },
    '/NetworkDriver.Leave': { schema: schemas.endpointRef, handler: (b, log) => n.leave(b, log) },
    '/NetworkDriver.ProgramExternalConnectivity': { schema: schemas.connectivity, handler: (b, log) => n.programExternalConnectivity(b, log) },
    '/NetworkDriver.RevokeExternalConnectivity': { schema: schemas.endpointRef, handler: (b, log) => n.revokeExternalConnectivity(b, log) },
    '/NetworkDriver.DiscoverNew': { schema: schemas.discovery, handler: () => ({}) },
    '/NetworkDriver.DiscoverDelete': { schema: schemas.discovery, handler: () => ({}) },
    '/IpamDriver.GetCapabilities': { handler: () => i.capabilities() },
    '/IpamDriver.GetDefaultAddressSpaces': { handler: () => i.defaultAddressSpaces() },
    '/IpamDriver.RequestPool': { schema: schemas.requestPool, handler: (b, log) => i.requestPool(b, log) },
    '/IpamDriver.ReleasePool': { schema: schemas.releasePool, handler: (b, log) => i.releasePool(b, log) },
    '/IpamDriver.RequestAddress': { schema: schemas.requestAddress, handler: (b, log) => i.requestAddress(b, log) },
    '/IpamDriver.ReleaseAddress': { schema: schemas.releaseAddress, handler: (b, log) => i.releaseAddress(b, log) },
    // tsnet's own command channel (`tsnet policy`): Docker never calls it.
    '/Tsnet.Policy': {
      schema: schemas.policy,
      handler: async (b: { Network?: string; Allow?: string }, log) => {
        if (b.Allow === undefined) return { Policies: n.policies(b.Network) }
        if (b.Network === undefined) throw invalid('name the network whose policy to change')
        return { Policies: [await n.setPolicy(b.Network, b.Allow, log)] }
      },
    },
  }
}

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

  for (const [path, route] of Object.entries(routes(d))) {
    app.post(path, route.schema ? { schema: { body: route.schema } } : {}, async (req) => {
      const result = await route.handler(req.body, req.log)
      return result ?? {}
    })
  }
  return app
}
