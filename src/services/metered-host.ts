/** A Host whose apply() is timed and counted for the metrics; everything else passes through. */
import type { Logger } from 'pino'
import type { Op } from '../core/objects.js'
import type { Host } from '../host/host.js'
import type { Metrics } from './metrics.js'

export function meteredHost(host: Host, metrics: Metrics): Host {
  const apply = async (ops: readonly Op[], log: Logger): Promise<void> => {
    const started = process.hrtime.bigint()
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9
    try {
      await host.apply(ops, log)
    } catch (err) {
      metrics.hostApplied(ops, seconds(), true)
      throw err
    }
    metrics.hostApplied(ops, seconds(), false)
  }
  // A Proxy keeps every other method (and the optional ones) exactly as the host has them.
  return new Proxy(host, {
    get(target, prop, receiver) {
      if (prop === 'apply') return apply
      const v = Reflect.get(target, prop, receiver) as unknown
      return typeof v === 'function' ? v.bind(target) : v
    },
  })
}
