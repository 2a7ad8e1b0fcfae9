/**
 * Logs a failure that repeats (a retry loop while etcd is away) without flooding the log: the
 * first one at warn, then at most one warn per interval with the count so far (the others at
 * debug), and one info line when it works again.
 */
import type { Logger } from 'pino'

export class RepeatedFailure {
  private attempts = 0
  private since = 0
  private lastWarn = 0

  constructor(
    private readonly log: Logger | undefined,
    private readonly message: string,
    private readonly warnEveryMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  failed(error: string): void {
    const t = this.now()
    if (this.attempts++ === 0) this.since = t
    const entry = { err: error, attempts: this.attempts, failingForMs: t - this.since }
    if (this.attempts === 1 || t - this.lastWarn >= this.warnEveryMs) {
      this.lastWarn = t
      this.log?.warn(entry, this.attempts === 1 ? this.message : `${this.message} (still failing; repeats are logged at debug)`)
    } else {
      this.log?.debug(entry, this.message)
    }
  }

  /** It worked: says so once when it had failed. */
  succeeded(what: string): void {
    if (this.attempts === 0) return
    this.log?.info({ attempts: this.attempts, failedForMs: this.now() - this.since }, what)
    this.attempts = 0
  }
}
