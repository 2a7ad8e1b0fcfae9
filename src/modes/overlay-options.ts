/**
 * The `-o` keys and numbers of overlay mode: the VNI and UDP port Swarm's leader allocates, the
 * VNI range tsnet allocates from (disjoint from Docker's native overlay, which starts at 4096, so
 * both share UDP 4789 on one host), and the MTU rule (the underlay's minus the VXLAN headers).
 */
import { invalid, quote } from '../errors.js'
import type { Family } from '../core/addr.js'
import { MTU_MIN } from '../core/options.js'

export const OVERLAY_OPTION = {
  /** Written by AllocateNetwork on the leader; Swarm's raft store keeps it and gives it to every node. */
  vni: 'tsnet.vni',
  /** The UDP port of the network's VXLAN traffic, also chosen by the leader (its setting). */
  port: 'tsnet.vxlan-port',
  /** Docker's `--opt encrypted`: refused with a sentence (see encryptionRefusal). */
  encrypted: 'encrypted',
} as const

/** Outer Ethernet (14) + IP + UDP (8) + VXLAN (8) headers: 50 bytes over IPv4, 70 over IPv6. */
export const VXLAN_OVERHEAD: Record<Family, number> = { 4: 50, 6: 70 }
export const VNI_MAX = 0xffffff
/** Docker's overlay allocates VNIs from here up (libnetwork ovmanager); tsnet's default range stays below. */
export const DOCKER_VNI_FIRST = 4096
export const DEFAULT_VXLAN_PORT = 4789
/** Seconds a learned remote MAC stays on a vxlan device without traffic from it. */
export const LEARNED_AGEING_SEC = 30

export interface VniRange {
  first: number
  last: number
}
export const DEFAULT_VNI_RANGE: VniRange = { first: 256, last: 4095 }
export const formatVniRange = (r: VniRange) => `${r.first}-${r.last}`

/** "FIRST-LAST", both VNIs (1 to 16777215). */
export function parseVniRange(text: string): VniRange {
  const m = /^(\d{1,8})-(\d{1,8})$/.exec(text)
  const first = Number(m?.[1])
  const last = Number(m?.[2])
  if (!m || first < 1 || last > VNI_MAX || first > last) {
    throw invalid(`${quote(text)} is not a VNI range: write FIRST-LAST with 1 <= FIRST <= LAST <= ${VNI_MAX} (the default, ${formatVniRange(DEFAULT_VNI_RANGE)}, stays below Docker's overlay VNIs, which start at ${DOCKER_VNI_FIRST})`)
  }
  return { first, last }
}

export function parseVni(text: string, what: string = OVERLAY_OPTION.vni): number {
  if (!/^\d{1,8}$/.test(text) || Number(text) < 1 || Number(text) > VNI_MAX) {
    throw invalid(`${what}=${quote(text)} is not a VNI: a VXLAN network identifier is a whole number from 1 to ${VNI_MAX}`)
  }
  return Number(text)
}

export function parsePort(text: string, what: string = OVERLAY_OPTION.port): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw invalid(`${what}=${quote(text)} is not a UDP port: a whole number from 1 to 65535`)
  }
  return Number(text)
}

/**
 * The network's MTU: the underlay's (Docker's overlay reads com.docker.network.driver.mtu as the
 * underlay MTU, and so does tsnet) minus the VXLAN headers of the underlay's family.
 */
export function overlayMtu(underlayMtu: number, family: Family, ipv6Inside: boolean): number {
  const mtu = underlayMtu - VXLAN_OVERHEAD[family]
  const floor = ipv6Inside ? 1280 : MTU_MIN
  if (mtu < floor) {
    throw invalid(`an underlay MTU of ${underlayMtu} leaves ${mtu} bytes inside VXLAN over IPv${family}, below the ${floor} bytes ${ipv6Inside ? 'IPv6 needs' : 'IPv4 needs'}: give com.docker.network.driver.mtu the underlay's real MTU`)
  }
  return mtu
}

/**
 * Why `--opt encrypted` is refused: Swarm hands its IPsec keys to its own overlay driver only
 * (remote drivers get node discovery, never the keys), so the only way for a plugin is
 * WireGuard, and this version of tsnet does not set it up yet.
 */
export function encryptionRefusal(wireguard: boolean): string {
  const kernel = wireguard
    ? 'this kernel has WireGuard, but this version of tsnet does not encrypt overlay traffic yet'
    : 'this kernel has no WireGuard (CONFIG_WIREGUARD), and Swarm gives network plugins none of its IPsec keys, so tsnet has no way to encrypt here'
  return `-o ${OVERLAY_OPTION.encrypted}: ${kernel}. Create the network without --opt encrypted (its traffic between hosts is then plain VXLAN: keep the underlay private, docs/overlay.md), or use Docker's overlay driver for an encrypted network`
}
