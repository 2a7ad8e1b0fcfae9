/**
 * The host as the engine sees it: objects it can observe and changes it can apply (see
 * core/objects.ts), plus the few facts planning needs. LinuxHost implements it on the kernel;
 * FakeHost is a store of objects for unit tests.
 */
import type { Logger } from 'pino'
import type { PortFlow } from '../core/flows.js'
import type { HostFacts } from '../core/host-facts.js'
import type { HostObject, Op, Proto } from '../core/objects.js'
import type { Binding, Reservation } from './port-reservations.js'

export interface ObserveQuery {
  /** The objects at these keys, whoever owns them (a link of another owner under a wanted name is reported too). */
  keys: Iterable<string>
  /** Also every object tsnet owns (boot and periodic reconcile, doctor). */
  allOwned?: boolean
  /** Read the kernel even where the host layer keeps a copy of what it applied. */
  fresh?: boolean
}

export interface Host {
  /** What is there now, by object key. */
  observe(query: ObserveQuery): Promise<Map<string, HostObject>>
  /**
   * Applies changes in order; consecutive changes of one kind may go in one batch. Throws at the
   * first that fails, naming the object; what was applied before stays (the engine observes
   * again and undoes).
   */
  apply(ops: readonly Op[], log: Logger): Promise<void>
  /** Kernel capabilities, read once (preflight). */
  facts(): Promise<HostFacts>
  /** Prefixes the host already routes (except the default route): pools must avoid them. */
  routedPrefixes(): Promise<string[]>
  /** MTU of the interface carrying the default route, if there is one. */
  defaultRouteMtu(): Promise<number | undefined>
  /** The interface that has `address` and its MTU (overlay networks: the underlay of this node's VTEP). */
  underlayOf?(address: string): Promise<{ link: string; mtu: number } | undefined>
  /**
   * Holds `proto` on every binding, taking the first free port of `candidates` (undefined: one the
   * kernel picks). The hold then shows up as a portHold object until released or deleted.
   */
  reservePort(proto: Proto, bindings: Binding[], candidates: number[] | undefined): Promise<Reservation>
  /** Lets every held port go, as the process's exit would (shutdown). */
  releasePorts(): Promise<void>
  /**
   * Makes the kernel forget the conntrack entries of flows to these host ports, so that their next
   * packet meets the DNAT rules as they are now. A missing conntrack tool is a warning, not an error.
   */
  forgetPortFlows(flows: readonly PortFlow[], log: Logger): Promise<void>
  /**
   * Calls `onDrift` when the kernel reports that a link tsnet owns was deleted or renamed (or
   * that events were lost); returns the function that stops watching. Hosts without events omit it.
   */
  watchOwnedLinks?(onDrift: (why: string) => void, log: Logger): Promise<() => void>
}
