/**
 * Docker's network names and subnets, learnt in the background: drivers are never told names,
 * and policies name networks. Kept in the store so a restart (or a reboot before dockerd
 * answers) programs the same rules as before; refreshed on every network event and periodically.
 * Never consulted on Docker's request path for anything but this cached copy.
 */
import type { Logger } from 'pino'
import type { DockerView, NamedNetwork } from '../docker/docker-view.js'
import type { Store } from '../store/store.js'

const META_ID = 'docker-networks'
/** Docker's own driver whose networks tsnet keeps its containers away from. */
const DOCKER_BRIDGE_DRIVER = 'bridge'

export class DockerNames {
  private networks: NamedNetwork[] = []
  private readonly listeners: Array<() => Promise<void>> = []
  private stopped = false
  private timer: NodeJS.Timeout | undefined
  private pending: Promise<void> | undefined
  private again = false

  private view: DockerView | undefined

  constructor(private readonly store: Store, private readonly log: Logger) {}

  async load(): Promise<void> {
    const saved = await this.store.get<{ networks: NamedNetwork[] }>(`meta/${META_ID}`)
    this.networks = saved?.value.networks ?? []
  }

  /** Subnets of the network Docker calls `name`; empty when there is none. */
  resolve(name: string): string[] {
    return this.networks.filter((n) => n.name === name).flatMap((n) => n.subnets)
  }

  /** Subnets of Docker's own bridge networks. */
  foreignSubnets(): string[] {
    return this.networks.filter((n) => n.driver === DOCKER_BRIDGE_DRIVER).flatMap((n) => n.subnets)
  }

  /** A network by exact name, full ID, or unique ID prefix. */
  lookup(ref: string): NamedNetwork | undefined {
    const byName = this.networks.find((n) => n.name === ref)
    if (byName) return byName
    const byId = this.networks.filter((n) => n.id.startsWith(ref))
    return byId.length === 1 ? byId[0] : undefined
  }

  nameOf(id: string): string | undefined {
    return this.networks.find((n) => n.id === id)?.name
  }

  /** `listener` runs after every change (awaited; its errors are logged). */
  onChange(listener: () => Promise<void>): void {
    this.listeners.push(listener)
  }

  /** Replaces the copy (tests, and each refresh); notifies when it changed. */
  async update(networks: NamedNetwork[]): Promise<boolean> {
    const canonical = [...networks].map((n) => ({ ...n, subnets: [...n.subnets].sort() })).sort((a, b) => a.id.localeCompare(b.id))
    if (JSON.stringify(canonical) === JSON.stringify(this.networks)) return false
    this.networks = canonical
    await this.store.put('meta', META_ID, { networks: canonical })
    this.log.info({ networks: canonical.length }, "Docker's network names changed")
    for (const l of this.listeners) await l().catch((err) => this.log.error({ err }, 'applying a change of network names failed'))
    return true
  }

  /** One refresh from Docker; concurrent calls coalesce into one more pass. */
  refresh(): Promise<void> {
    if (this.pending) {
      this.again = true
      return this.pending
    }
    this.pending = (async () => {
      do {
        this.again = false
        if (!this.view) return
        try {
          await this.update(await this.view.listNetworks())
        } catch (err) {
          this.log.debug({ err }, "Docker's network list is not available yet")
        }
      } while (this.again && !this.stopped)
    })().finally(() => { this.pending = undefined })
    return this.pending
  }

  /** Follows Docker's network events (reconnecting) and refreshes every `intervalMs` as a safety net. */
  start(view: DockerView, intervalMs: number): void {
    this.view = view
    void this.refresh()
    const follow = async () => {
      while (!this.stopped) {
        try {
          await view.watchNetworkEvents(() => void this.refresh())
        } catch (err) {
          this.log.debug({ err }, "Docker's event stream is not available")
        }
        if (this.stopped) break
        await new Promise((r) => setTimeout(r, 2000).unref())
        void this.refresh()
      }
    }
    void follow()
    this.timer = setInterval(() => void this.refresh(), intervalMs)
    this.timer.unref()
  }

  stop(): void {
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
  }
}
