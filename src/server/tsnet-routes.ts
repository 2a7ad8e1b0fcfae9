/** tsnet's own calls on the plugin socket (the `tsnet` commands use them); Docker never makes them. */
import { invalid } from '../errors.js'
import * as schemas from '../protocol/schemas.js'
import type { Route, Services } from './docker-routes.js'

export function tsnetRoutes(s: Services): Record<string, Route> {
  return {
    '/Tsnet.Policy': {
      schema: schemas.policy,
      handler: async (b: { Network?: string; Allow?: string }, log) => {
        if (b.Allow === undefined) return { Policies: s.policy.policies(b.Network) }
        if (b.Network === undefined) throw invalid('name the network whose policy to change')
        return { Policies: [await s.policy.setPolicy(b.Network, b.Allow, log)] }
      },
    },
    '/Tsnet.Reconcile': {
      schema: schemas.reconcile,
      handler: async (b: { DryRun?: boolean }) => {
        const report = await s.reconciler.pass('request', b.DryRun === true)
        return { Changes: report.changes, Failed: report.failed, Missing: report.missing, Foreign: report.foreign, Ms: report.ms }
      },
    },
    '/Tsnet.Status': {
      schema: schemas.status,
      handler: () => {
        if (!s.daemon) throw invalid('this tsnet keeps no status')
        return { Status: s.daemon.status() }
      },
    },
    '/Tsnet.Collect': {
      schema: schemas.collect,
      handler: async (b: { DryRun?: boolean }) => {
        const gc = s.daemon?.gc
        if (!gc) {
          const why = s.daemon?.status().gc
          throw invalid(`garbage collection is off in this tsnet${why?.state === 'off' ? ` (${why.reason})` : ''}: it needs --docker-host and a --gc-interval above 0`)
        }
        const outcome = await gc.collectNow(b.DryRun === true)
        return outcome.ran ? { Ran: true, Unexplained: outcome.unexplained, Collected: outcome.collected } : { Ran: false, Reason: outcome.reason }
      },
    },
  }
}
