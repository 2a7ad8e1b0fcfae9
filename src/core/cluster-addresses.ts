/**
 * Pure parts of cluster address claims and of reclaiming a dead host's addresses: which addresses
 * a network hands out, where a host starts looking, and what the elected tsnet does in one sweep.
 */
import { type Ip, type Prefix, formatIp, formatPrefix, lastAddress, parseCidr, parseIp, prefixContains, prefixSize } from './addr.js'
import { isReserved } from './ipam.js'
import { conflict, exhausted, invalid, quote } from '../errors.js'

/** The value of `cluster-addresses/<network>/<ip>`: who holds it, so an unknown outcome can be settled by reading it. */
export interface AddressClaim {
  hostId: string
  endpointId: string
  claimedAt: string
}

/** One family's address space of a cluster network. */
export interface AddressSpace {
  network: string
  subnet: Prefix
  gateway: bigint
}

export function addressSpace(network: string, subnet: string, gateway: string): AddressSpace {
  const s = parseCidr(subnet)
  const g = parseIp(gateway)
  if (!s || !g) throw invalid(`cluster network ${quote(network)} is stored with an unreadable subnet or gateway (${subnet}, ${gateway})`)
  return { network, subnet: s.prefix, gateway: g.value }
}

/** Whether an address may be claimed: inside the subnet, not its network or broadcast address, not the gateway. */
export const claimable = (space: AddressSpace, value: bigint) =>
  value >= space.subnet.network && value <= lastAddress(space.subnet) && !isReserved(space.subnet, value) && value !== space.gateway

/** How many addresses the network hands out (gateway excluded). */
export function usableCount(space: AddressSpace): bigint {
  let n = prefixSize(space.subnet)
  if (isReserved(space.subnet, space.subnet.network)) n -= 1n
  if (space.subnet.family === 4 && isReserved(space.subnet, lastAddress(space.subnet))) n -= 1n
  return n - 1n
}

/** A specific address asked for, checked: a sentence naming the network when it cannot be had. */
export function checkAsked(space: AddressSpace, text: string): Ip {
  const ip = parseIp(text) ?? parseCidr(text)?.ip
  const where = `cluster network ${quote(space.network)} (${formatPrefix(space.subnet)})`
  if (!ip || ip.family !== space.subnet.family) throw invalid(`requested address ${quote(text)} is not an IPv${space.subnet.family} address of ${where}`)
  if (!prefixContains(space.subnet, ip)) throw invalid(`requested address ${formatIp(ip)} is outside ${where}`)
  if (ip.value === space.gateway) throw conflict(`requested address ${formatIp(ip)} is the gateway of ${where}, which no endpoint may take`)
  if (isReserved(space.subnet, ip.value)) throw invalid(`requested address ${formatIp(ip)} is the network or broadcast address of ${where}`)
  return ip
}

/**
 * Where a host starts looking in a network: a hash of host and network, so two hosts claiming at
 * once mostly try different addresses instead of racing for the same ones.
 */
export function startOffset(hostId: string, network: string, size: bigint): bigint {
  let h = 0xcbf29ce484222325n // FNV-1a, 64 bits
  for (const ch of `${hostId}\0${network}`) h = ((h ^ BigInt(ch.codePointAt(0) ?? 0)) * 0x100000001b3n) & 0xffffffffffffffffn
  return size === 0n ? 0n : h % size
}

/** The address `offset` steps into the subnet, wrapping. */
export const addressAt = (space: AddressSpace, offset: bigint) => space.subnet.network + (offset % prefixSize(space.subnet))

export function exhaustedError(space: AddressSpace, claimed: number) {
  return exhausted(`cluster network ${quote(space.network)} (${formatPrefix(space.subnet)}) has no free address: ` +
    `all ${usableCount(space)} addresses it hands out are claimed (${claimed} claims; the gateway is not handed out)`, { network: space.network })
}

/** The value of `cluster-gone/<hostId>`: when the elected tsnet first saw the host's registration gone. */
export interface GoneRecord {
  sinceMs: number
  seenBy: string
}

export interface SweepInput {
  /** Hosts registered now (their lease is alive). */
  alive: ReadonlySet<string>
  /** Hosts that hold claims. */
  claimants: ReadonlySet<string>
  gone: ReadonlyMap<string, GoneRecord>
  nowMs: number
  graceMs: number
}

export interface SweepPlan {
  /** Hosts first seen gone now: start their clock. */
  startClock: string[]
  /** Hosts back (or with nothing left to free): forget their clock. */
  forget: string[]
  /** Hosts gone for longer than the grace period: free their addresses, then forget their clock. */
  reclaim: string[]
}

/** One sweep's decisions: a host's addresses are freed only after it has been seen gone for the whole grace period. */
export function planSweep(input: SweepInput): SweepPlan {
  const plan: SweepPlan = { startClock: [], forget: [], reclaim: [] }
  for (const host of input.claimants) {
    if (input.alive.has(host)) continue
    const gone = input.gone.get(host)
    if (!gone) plan.startClock.push(host)
    else if (input.nowMs - gone.sinceMs >= input.graceMs) plan.reclaim.push(host)
  }
  for (const host of input.gone.keys()) if (input.alive.has(host) || !input.claimants.has(host)) plan.forget.push(host)
  return plan
}
