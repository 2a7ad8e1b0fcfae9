/**
 * Whether Docker's API answers the background work (names, garbage collection). A wrong
 * --docker-host leaves both silently on hold, so a silence of SILENCE_WARN_MS is said once in the
 * log (and again after Docker has answered and gone quiet again); `tsnet status` shows the rest.
 */
import type { Logger } from 'pino'
import type { DockerSnapshot, NamedNetwork } from '../core/docker-facts.js'
import type { DockerApiStatus } from '../observe/daemon-status.js'
import type { DockerView } from '../docker/docker-view.js'
import type { Clock } from '../engine/clock.js'
import { errorMessage } from '../errors.js'

export const SILENCE_WARN_MS = 5 * 60_000

export class DockerContact {
  /** Since when Docker has not answered (from the start, until it first does). */
  private silentSince: number | undefined
  private lastAnswer: number | undefined
  private lastError: string | undefined
  private warned = false

  constructor(readonly dockerHost: string, private readonly clock: Clock, private readonly log: Logger) {
    this.silentSince = clock.now()
  }

  answered(): void {
    if (this.warned) this.log.info({ dockerHost: this.dockerHost }, "Docker's API answers again: garbage collection and network names resume")
    this.lastAnswer = this.clock.now()
    this.silentSince = undefined
    this.lastError = undefined
    this.warned = false
  }

  failed(err: unknown): void {
    const now = this.clock.now()
    this.silentSince ??= now
    this.lastError = errorMessage(err)
    if (!this.warned && now - this.silentSince >= SILENCE_WARN_MS) {
      this.warned = true
      this.log.warn({ dockerHost: this.dockerHost, silentSince: new Date(this.silentSince).toISOString(), reason: this.lastError },
        `Docker's API at ${this.dockerHost} has not answered for ${Math.round((now - this.silentSince) / 60_000)} minutes: ` +
        'garbage collection and policies that name networks are on hold (is --docker-host right? tsnet status shows more)')
    }
  }

  status(): DockerApiStatus {
    const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString())
    const base = { dockerHost: this.dockerHost, ...(this.lastAnswer !== undefined ? { lastAnswer: iso(this.lastAnswer) } : {}) }
    if (this.silentSince === undefined) return { ...base, state: 'answering' }
    return { ...base, state: 'silent', since: iso(this.silentSince) as string, ...(this.lastError !== undefined ? { reason: this.lastError } : {}) }
  }
}

/** A DockerView whose every answer (or failure) is told to `contact`. */
export function watchedView(view: DockerView, contact: DockerContact): DockerView {
  const seen = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      const out = await call()
      contact.answered()
      return out
    } catch (err) {
      contact.failed(err)
      throw err
    }
  }
  return {
    snapshot: (inspect): Promise<DockerSnapshot> => seen(() => view.snapshot(inspect)),
    listNetworks: (): Promise<NamedNetwork[]> => seen(() => view.listNetworks()),
    // The stream ends without an error when Docker stops; only a failure to open it counts.
    watchNetworkEvents: (onEvent) => view.watchNetworkEvents(onEvent).catch((err: unknown) => {
      contact.failed(err)
      throw err
    }),
  }
}
