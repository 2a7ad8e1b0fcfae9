/** Time, injected where it decides something (creation stamps, garbage collection, cooling), so tests can move it. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number
  /** The current time as an ISO 8601 string (record stamps). */
  iso(): string
}

export const systemClock: Clock = { now: () => Date.now(), iso: () => new Date().toISOString() }

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  constructor(private ms = Date.parse('2026-01-01T00:00:00Z')) {}
  now(): number { return this.ms }
  iso(): string { return new Date(this.ms).toISOString() }
  advance(ms: number): void { this.ms += ms }
}
