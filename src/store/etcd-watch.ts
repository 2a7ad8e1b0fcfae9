/**
 * One Store watch over an etcd3 watcher. etcd3 reconnects a watch stream that broke and resumes
 * it; this module tells it where: after the last revision it delivered, or one etcd said it has
 * sent everything up to (a progress notification). (etcd3 itself resumes after the revision in
 * the last response's header, which during a catch-up is the store's current revision, not the
 * last one sent: a reconnect then would skip revisions.) Events already delivered are dropped if
 * they come again. When etcd cancels the watch (its start was compacted, or any other reason)
 * the caller hears onReset once, and nothing after.
 */
import type { Etcd3, IKeyValue, IWatchResponse, Watcher } from 'etcd3'
import type { Revision, Unwatch, WatchEvent } from './store.js'

export interface EtcdWatchHandlers {
  onEvents: (events: WatchEvent[]) => void
  onReset: () => void
  /** A watcher's own exception, or a value that is not JSON: said, never thrown into etcd3. */
  onTrouble: (what: string, err?: unknown) => void
}

/** Watches keys starting with `root + prefix` from `afterRev + 1`; events name keys without `root`. */
export function watchEtcd(client: Etcd3, root: string, prefix: string, afterRev: Revision, handlers: EtcdWatchHandlers): Unwatch {
  let delivered = afterRev
  let ended = false
  const watcher: Watcher = client.watch().prefix(root + prefix).startRevision(String(afterRev + 1n)).watcher()
  const request = (watcher as unknown as { request: { start_revision?: string | number } }).request

  /** `cancel`: ask etcd to end it; not when etcd ended it (etcd3 would then meet an answer for a watcher it no longer has, and throw). */
  const end = (cancel: boolean) => {
    if (ended) return false
    ended = true
    watcher.removeAllListeners('data')
    if (cancel) watcher.cancel().catch(() => undefined)
    return true
  }

  watcher.on('data', (res: IWatchResponse) => {
    if (ended) return
    if (res.events.length === 0) {
      // A progress notification: etcd has sent everything up to its header's revision.
      if (!res.created && !res.canceled && res.compact_revision === '0') delivered = maxRev(delivered, BigInt(res.header.revision))
      return
    }
    for (const batch of byRevision(res.events.map((e) => ({ type: e.type, kv: e.kv })), root, handlers)) {
      if (batch.rev <= delivered) continue // sent again after a reconnect
      delivered = batch.rev
      try {
        handlers.onEvents(batch.events)
      } catch (err) {
        handlers.onTrouble('a store watcher failed on its events', err)
      }
      if (ended) return
    }
  })
  // Runs right after etcd3 saw the stream break, before it reconnects with this request.
  watcher.on('disconnected', () => {
    request.start_revision = String(delivered + 1n)
  })
  watcher.on('error', () => {
    // etcd cancelled the watch (compaction is the usual reason): it will not resume.
    if (end(false)) handlers.onReset()
  })
  return () => {
    end(true)
  }
}

const maxRev = (a: Revision, b: Revision) => (a > b ? a : b)

/** A response's events, one batch per revision, in order; keys without `root`. */
function byRevision(events: Array<{ type: string; kv: IKeyValue }>, root: string, handlers: EtcdWatchHandlers): Array<{ rev: Revision; events: WatchEvent[] }> {
  const batches: Array<{ rev: Revision; events: WatchEvent[] }> = []
  for (const { type, kv } of events) {
    const rev = BigInt(kv.mod_revision)
    const key = kv.key.toString('utf8').slice(root.length)
    let event: WatchEvent
    if (type === 'Delete') {
      event = { type: 'delete', key, rev }
    } else {
      let value: unknown
      try {
        value = JSON.parse(kv.value.toString('utf8'))
      } catch (err) {
        handlers.onTrouble(`etcd key ${root}${key} does not hold JSON; its change is not passed on`, err)
        continue
      }
      event = { type: 'put', key, rev, value }
    }
    const last = batches.at(-1)
    if (last && last.rev === rev) last.events.push(event)
    else batches.push({ rev, events: [event] })
  }
  return batches
}
