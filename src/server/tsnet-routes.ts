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
        const report = await s.reconciler.pass('event', b.DryRun === true)
        return { Changes: report.changes, Failed: report.failed, Missing: report.missing, Foreign: report.foreign, Ms: report.ms }
      },
    },
  }
}
