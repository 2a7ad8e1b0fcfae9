/**
 * A gratuitous ARP for a new container, wrapped in VXLAN, as the UDP payload tsnet sends to each
 * other host of the network. The receiving kernel takes it as if the container's host had flooded
 * it: its vxlan device learns "this MAC is behind that VTEP" (the packet's source address), its
 * bridge learns the MAC on the vxlan port, and containers that know the address update their ARP
 * entry. So a container that moved hosts (an address given again, with the same MAC) is reachable
 * at once, not after the stale entries age out.
 */
import { checkMac } from './names.js'
import { parseIp } from './addr.js'
import { invalid } from '../errors.js'

const ETH_P_ARP = 0x0806
const ETH_P_IP = 0x0800
const ARPOP_REQUEST = 1
/** Ethernet's minimum frame without its checksum. */
const MIN_FRAME = 60

const macBytes = (mac: string) => Buffer.from(checkMac(mac).split(':').map((h) => parseInt(h, 16)))

/** VXLAN header (RFC 7348): the I flag, then the 24-bit VNI. */
export function vxlanHeader(vni: number): Buffer {
  if (!Number.isInteger(vni) || vni < 1 || vni > 0xffffff) throw invalid(`VNI ${vni} is not 1 to 16777215`)
  return Buffer.from([0x08, 0, 0, 0, (vni >> 16) & 0xff, (vni >> 8) & 0xff, vni & 0xff, 0])
}

/** A broadcast ARP request from `mac` asking for its own `ipv4` (the form Linux's arp_notify sends). */
export function gratuitousArp(mac: string, ipv4: string): Buffer {
  const ip = parseIp(ipv4)
  if (!ip || ip.family !== 4) throw invalid(`${ipv4} is not an IPv4 address`)
  const ipBytes = Buffer.alloc(4)
  ipBytes.writeUInt32BE(Number(ip.value))
  const src = macBytes(mac)
  const eth = Buffer.alloc(14)
  eth.fill(0xff, 0, 6)
  src.copy(eth, 6)
  eth.writeUInt16BE(ETH_P_ARP, 12)
  const arp = Buffer.alloc(28)
  arp.writeUInt16BE(1, 0) // Ethernet
  arp.writeUInt16BE(ETH_P_IP, 2)
  arp[4] = 6
  arp[5] = 4
  arp.writeUInt16BE(ARPOP_REQUEST, 6)
  src.copy(arp, 8)
  ipBytes.copy(arp, 14)
  // target MAC stays zero
  ipBytes.copy(arp, 24)
  return Buffer.concat([eth, arp, Buffer.alloc(MIN_FRAME - eth.length - arp.length)])
}

/** The UDP payload announcing `mac`/`ipv4` on the network with `vni`. */
export function announcement(vni: number, mac: string, ipv4: string): Buffer {
  return Buffer.concat([vxlanHeader(vni), gratuitousArp(mac, ipv4)])
}
