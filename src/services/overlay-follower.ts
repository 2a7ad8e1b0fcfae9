/**
 * Overlay networks against Docker's API, in the background (never inside a driver call: Docker
 * serves its API only after it restarted the containers that need tsnet): every few seconds, each
 * overlay network's peer list goes to the swarm service (so a restarted plugin finds the hosts it
 * was not told about again, and hosts that left while it was down go), and a service that uses a
 * VIP on one is named in a warning once.
 */
import type { Logger } from 'pino'
import type { SwarmNetworkView } from '../docker/swarm-view.js'
import { errorMessage } from '../errors.js'
import type { NetworkState } from './network-state.js'
import type { SwarmService } from './swarm-service.js'

export const FOLLOW_INTERVAL_MS = 5000

export class OverlayFollower {
  private timer: NodeJS.Timeout | undefined
  private readonly warned = new Set<string>()
  private failing = false

  constructor(
    private readonly view: SwarmNetworkView,
    private readonly state: NetworkState,
    private readonly swarm: SwarmService,
    private readonly log: Logger,
  ) {}

  /** One pass: peers of every overlay network (all read before any is applied), VIP warnings. */
  async pass(): Promise<void> {
    const lists: string[][] = []
    for (const n of this.state.networks.values()) {
      if (n.mode !== 'overlay') continue
      const seen = await this.view.network(n.id)
      // A network Docker does not know is on its way out: it says nothing about the hosts.
      if (!seen) continue
      lists.push(seen.peers)
      for (const service of seen.vipServices) {
        const key = `${n.id}/${service}`
        if (this.warned.has(key)) continue
        this.warned.add(key)
        this.log.warn({ network: n.id, service },
          `service ${service} uses a VIP on tsnet overlay network ${this.state.label(n)}: VIPs exist only on Docker's own overlay driver, so its name answers nothing; re-create it with --endpoint-mode dnsrr`)
      }
    }
    if (lists.length > 0) await this.swarm.dockerPeers(lists, this.log)
  }

  start(intervalMs = FOLLOW_INTERVAL_MS): void {
    const tick = () => {
      void this.pass().then(() => {
        if (this.failing) this.log.info('Docker API answers again: overlay peer lists followed')
        this.failing = false
      }, (err: unknown) => {
        if (!this.failing) this.log.warn({ error: errorMessage(err) }, 'overlay peer lists not read from Docker (retrying); the hosts Docker announced are kept')
        this.failing = true
      }).finally(() => {
        this.timer = setTimeout(tick, intervalMs)
        this.timer.unref()
      })
    }
    this.timer = setTimeout(tick, 0)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer)
  }
}
