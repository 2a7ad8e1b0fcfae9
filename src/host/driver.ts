/** One kind (or a few kinds) of host object: how the host layer reads and changes it. */
import type { Logger } from 'pino'
import type { HostObject, ObjectKind, Op } from '../core/objects.js'

export interface ObserveScope {
  /** Keys of this driver's kinds to look at. */
  keys: string[]
  /** Also every object of these kinds that tsnet owns. */
  allOwned: boolean
  /** Read the kernel rather than what this process last applied. */
  fresh: boolean
}

export interface KindDriver {
  readonly kinds: readonly ObjectKind[]
  observe(scope: ObserveScope): Promise<HostObject[]>
  /** Applies consecutive changes of this driver's kinds, as one batch where the tool allows. */
  apply(ops: readonly Op[], log: Logger): Promise<void>
}

/** The part of a key after its kind word. */
export const keyRest = (key: string) => key.slice(key.indexOf(' ') + 1)
