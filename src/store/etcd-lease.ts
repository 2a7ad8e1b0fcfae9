/**
 * A Store lease over an etcd3 lease. etcd3 grants it and keeps it alive (a keepalive every ttl/3,
 * reconnecting after errors); it declares a lease lost only after twice its TTL without an
 * answer. The Store promises `lost` once keepalives have failed past the TTL: by then etcd may
 * have expired it and deleted its keys, so the holder must stop trusting them. A watchdog here
 * keeps that promise; the etcd3 lease is then released (no more keepalives), never revoked, so a
 * lease etcd still holds runs out by itself.
 */
import type { Etcd3, Lease as Etcd3Lease } from 'etcd3'
import type { Lease } from './store.js'

export interface GrantedLease extends Lease {
  /** Whether puts may still attach keys to it (not revoked, not lost). */
  readonly live: boolean
  /** Stops keepalives and the watchdog without revoking (the store closes). */
  release(): void
}

/** Grants a lease; `grant` maps a failure of the grant to the store's error. */
export async function grantEtcdLease(client: Etcd3, ttlSeconds: number, fail: (err: unknown) => Error): Promise<GrantedLease> {
  const inner: Etcd3Lease = client.lease(ttlSeconds, { autoKeepAlive: true })
  let settleLost: () => void = () => undefined
  const lost = new Promise<void>((resolve) => { settleLost = resolve })
  let state: 'live' | 'lost' | 'revoked' | 'released' = 'live'
  let lastAlive = Date.now()
  let watchdog: NodeJS.Timeout | undefined

  const markLost = () => {
    if (state !== 'live') return
    state = 'lost'
    clearInterval(watchdog)
    inner.release()
    settleLost()
  }
  inner.on('lost', markLost)
  inner.on('keepaliveSucceeded', () => { lastAlive = Date.now() })

  let id: string
  try {
    id = await inner.grant()
  } catch (err) {
    state = 'released'
    inner.release()
    throw fail(err)
  }
  lastAlive = Date.now()
  const ttlMs = ttlSeconds * 1000
  watchdog = setInterval(() => {
    if (Date.now() - lastAlive > ttlMs) markLost()
  }, Math.max(100, Math.floor(ttlMs / 8)))
  watchdog.unref()

  return {
    id,
    ttlSeconds,
    lost,
    get live() { return state === 'live' },
    async revoke() {
      if (state === 'live') state = 'revoked'
      clearInterval(watchdog)
      try {
        await inner.revoke() // etcd3: a lease etcd no longer knows counts as revoked
      } catch (err) {
        throw fail(err)
      }
    },
    release() {
      if (state === 'live') state = 'released'
      clearInterval(watchdog)
      inner.release()
    },
  }
}
