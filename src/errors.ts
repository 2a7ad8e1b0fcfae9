/**
 * One error type for everything tsnet refuses or fails to do. `kind` says where it started;
 * the message is written for the user who typed the docker command, because Docker shows
 * exactly this string (prefixed with the method name).
 */
export type ErrorKind =
  | 'invalid' // the request is malformed or asks for something impossible
  | 'conflict' // it collides with something that exists
  | 'notfound' // it names something tsnet does not know
  | 'exhausted' // nothing left to allocate
  | 'host' // the kernel or a host tool failed
  | 'unavailable' // a service tsnet depends on (a cluster store) cannot be reached now; retrying later may work

export class TsnetError extends Error {
  readonly kind: ErrorKind
  readonly context: Record<string, unknown>

  constructor(kind: ErrorKind, message: string, opts: { cause?: unknown; context?: Record<string, unknown> } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'TsnetError'
    this.kind = kind
    this.context = opts.context ?? {}
  }
}

export const invalid = (message: string, context?: Record<string, unknown>) => new TsnetError('invalid', message, { context })
export const conflict = (message: string, context?: Record<string, unknown>) => new TsnetError('conflict', message, { context })
export const notFound = (message: string, context?: Record<string, unknown>) => new TsnetError('notfound', message, { context })
export const exhausted = (message: string, context?: Record<string, unknown>) => new TsnetError('exhausted', message, { context })
export const unavailable = (message: string, context?: Record<string, unknown>) => new TsnetError('unavailable', message, { context })

/** Prefix an error's message with what we were doing, keeping its kind; wraps foreign errors as host errors. */
export function withContext(err: unknown, doing: string): TsnetError {
  if (err instanceof TsnetError) {
    return new TsnetError(err.kind, `${doing}: ${err.message}`, { cause: err, context: err.context })
  }
  const msg = err instanceof Error ? err.message : String(err)
  return new TsnetError('host', `${doing}: ${msg}`, { cause: err })
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

const QUOTE_MAX = 64

/** A request string shown as it is (no quotes), cut to a readable length. */
export function clip(text: string): string {
  return text.length > QUOTE_MAX ? `${text.slice(0, QUOTE_MAX)}…` : text
}

/**
 * A request value as it may appear in an error message: JSON-quoted, cut to a readable length,
 * and safe for values too deep or too large to stringify whole.
 */
export function quote(value: unknown): string {
  let text: string
  if (typeof value === 'string') text = value.length > QUOTE_MAX * 2 ? value.slice(0, QUOTE_MAX * 2) : value
  else if (value === null || typeof value !== 'object') text = String(value)
  else text = Array.isArray(value) ? `[list of ${value.length}]` : '{object}'
  const shown = typeof value === 'string' ? JSON.stringify(text) : text
  return shown.length > QUOTE_MAX ? `${shown.slice(0, QUOTE_MAX)}…` : shown
}
