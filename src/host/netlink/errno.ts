/**
 * Kernel refusals (an errno in NLMSG_ERROR) and the sentences they become. Operations say what
 * they were doing and, for the errnos whose meaning they know (EEXIST on a create is a name that
 * is taken), give the sentence naming the object; everything else still gets a sentence with the
 * operation, the system's description and the symbolic code, never a bare number.
 */
import { getSystemErrorMap } from 'node:util'
import { TsnetError, type ErrorKind } from '../../errors.js'

export class NetlinkErrno extends Error {
  readonly code: string

  constructor(readonly errno: number) {
    const code = errnoCode(errno)
    super(`${errnoText(errno)} (${code})`)
    this.name = 'NetlinkErrno'
    this.code = code
  }
}

/** The symbolic name, from the kernel errnos Node knows; 95 is EOPNOTSUPP (Node calls it ENOTSUP). */
export function errnoCode(errno: number): string {
  if (errno === 95) return 'EOPNOTSUPP'
  return getSystemErrorMap().get(-errno)?.[0] ?? `errno ${errno}`
}

export function errnoText(errno: number): string {
  if (errno === 95) return 'operation not supported'
  return getSystemErrorMap().get(-errno)?.[1] ?? 'unknown error'
}

/** Sentences an operation knows, by symbolic errno (EEXIST, ENODEV, ...). */
export type Known = Partial<Record<string, () => TsnetError>>

const generic: Record<string, [ErrorKind, (doing: string) => string]> = {
  EPERM: ['host', (d) => `not permitted to ${d}: tsnet needs CAP_NET_ADMIN in this network namespace`],
  EACCES: ['host', (d) => `not permitted to ${d}: tsnet needs CAP_NET_ADMIN in this network namespace`],
  EBUSY: ['conflict', (d) => `cannot ${d}: the kernel says the device is busy (EBUSY)`],
  EEXIST: ['conflict', (d) => `cannot ${d}: it already exists (EEXIST)`],
  ENODEV: ['notfound', (d) => `cannot ${d}: no such device (ENODEV)`],
  EOPNOTSUPP: ['host', (d) => `cannot ${d}: this kernel does not support it (EOPNOTSUPP)`],
}

/**
 * The TsnetError for a failed operation. TsnetErrors (deadline, socket) pass through with the
 * operation prefixed; kernel refusals become the operation's own sentence or a generic one.
 */
export function explain(err: unknown, doing: string, known: Known = {}): TsnetError {
  if (err instanceof TsnetError) return err
  if (err instanceof NetlinkErrno) {
    const specific = known[err.code]
    if (specific) {
      const e = specific()
      return new TsnetError(e.kind, e.message, { cause: err, context: { ...e.context, errno: err.code } })
    }
    const g = generic[err.code]
    if (g) return new TsnetError(g[0], g[1](doing), { cause: err, context: { errno: err.code } })
    return new TsnetError('host', `cannot ${doing}: ${err.message}`, { cause: err, context: { errno: err.code } })
  }
  return new TsnetError('host', `cannot ${doing}: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
}

/** True when `err` is the kernel refusing with this symbolic errno. */
export const isErrno = (err: unknown, code: string): boolean => err instanceof NetlinkErrno && err.code === code
