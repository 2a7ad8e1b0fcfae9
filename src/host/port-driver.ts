/** Published host ports held by sockets of this process, as objects. */
import type { Logger } from 'pino'
import { type HostObject, type Op, type PortHoldObject, type Proto, keyOf } from '../core/objects.js'
import type { KindDriver, ObserveScope } from './driver.js'
import type { Binding, PortReserver, Reservation } from './port-reservations.js'

export class PortDriver implements KindDriver {
  readonly kinds = ['portHold'] as const
  private readonly held = new Map<string, { obj: PortHoldObject; reservation: Reservation }>()

  constructor(private readonly reserver: PortReserver) {}

  async observe(scope: ObserveScope): Promise<HostObject[]> {
    if (scope.allOwned) return [...this.held.values()].map((h) => h.obj)
    return scope.keys.flatMap((k) => {
      const h = this.held.get(k)
      return h ? [h.obj] : []
    })
  }

  /** Holds a port (see Host.reservePort); the hold is an object from now on. */
  async reserve(proto: Proto, bindings: Binding[], candidates: number[] | undefined): Promise<Reservation> {
    const reservation = await this.reserver.reserve(proto, bindings, candidates)
    const obj: PortHoldObject = { kind: 'portHold', proto, port: reservation.port, bindings: bindings.map((b) => ({ family: b.family, address: b.address })) }
    const key = keyOf(obj)
    this.held.set(key, { obj, reservation })
    return {
      port: reservation.port,
      release: async () => {
        if (this.held.get(key)?.reservation === reservation) this.held.delete(key)
        await reservation.release()
      },
    }
  }

  async apply(ops: readonly Op[], log: Logger): Promise<void> {
    for (const op of ops) {
      const o = op.obj as PortHoldObject
      const key = keyOf(o)
      if (op.op === 'delete') {
        const h = this.held.get(key)
        this.held.delete(key)
        await h?.reservation.release()
        log.info({ host: 'port.released', proto: o.proto, port: o.port }, 'host port released')
      } else if (!this.held.has(key)) {
        await this.reserve(o.proto, o.bindings, [o.port])
        log.info({ host: 'port.held', proto: o.proto, port: o.port, bindings: o.bindings }, 'host port held')
      }
    }
  }

  async releaseAll(): Promise<void> {
    const all = [...this.held.values()]
    this.held.clear()
    await Promise.all(all.map((h) => h.reservation.release()))
  }
}
