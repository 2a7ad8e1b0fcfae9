/** Kernel settings as objects. Forwarding turned on by tsnet closes FORWARD by default, as Docker does. */
import type { Logger } from 'pino'
import type { Family } from '../core/addr.js'
import type { HostObject, Op, SysctlObject } from '../core/objects.js'
import { TsnetError } from '../errors.js'
import { type KindDriver, type ObserveScope, keyRest } from './driver.js'
import type { Sysctls } from './sysctl.js'

/** Keys whose change from 0 to 1 makes this host a router for everyone. */
const FORWARDING: Record<string, Family> = { 'net/ipv4/ip_forward': 4, 'net/ipv6/conf/all/forwarding': 6 }

export class SysctlDriver implements KindDriver {
  readonly kinds = ['sysctl'] as const

  constructor(private readonly sysctls: Sysctls, private readonly closeForwarding: (family: Family, log: Logger) => Promise<void>) {}

  async observe(scope: ObserveScope): Promise<HostObject[]> {
    const out: HostObject[] = []
    for (const key of scope.keys) {
      const path = keyRest(key)
      const value = await this.sysctls.get(path)
      if (value !== undefined) out.push({ kind: 'sysctl', path, value })
    }
    return out
  }

  async apply(ops: readonly Op[], log: Logger): Promise<void> {
    for (const op of ops) {
      if (op.op === 'delete') continue // settings are shared with the host: tsnet changes them, never takes them back
      const o = op.obj as SysctlObject
      const outcome = await this.sysctls.set(o.path, o.value, log)
      if (outcome === 'absent') throw new TsnetError('host', `this kernel has no setting ${o.path.replace(/\//g, '.')}`)
      const family = FORWARDING[o.path]
      if (family !== undefined && outcome === 'changed' && o.value === '1') await this.closeForwarding(family, log)
    }
  }
}
