/**
 * The UDP sockets of /proc/net/udp and udp6, parsed (pure). Which are a process's is learnt
 * apart: on this kernel (6.18) a VXLAN device's socket has a nonzero inode too, so the inode alone
 * says nothing; a process's socket is one some /proc/PID/fd links to ("socket:[inode]"), a
 * kernel socket (a VXLAN device's) is held by no process. cli/host-read.ts does that lookup.
 */
import { formatIp } from '../core/addr.js'

export interface UdpSocket {
  family: 4 | 6
  /** The local address as the kernel writes it (hex), kept for the sentence. */
  local: string
  port: number
  inode: number
  /** A process holds it open (set by the reading; a kernel socket, such as a VXLAN device's, is held by none). */
  process?: boolean
}

/** A line: "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...". */
const LINE = /^\s*\d+:\s+([0-9A-Fa-f]+):([0-9A-Fa-f]{4})\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+\d+\s+\d+\s+(\d+)\s/

/** Every socket of one file's text; lines that are not a socket (the header) are skipped. */
export function parseProcUdp(text: string, family: 4 | 6): UdpSocket[] {
  const out: UdpSocket[] = []
  for (const line of text.split('\n')) {
    const m = LINE.exec(line)
    if (!m) continue
    out.push({ family, local: m[1] as string, port: parseInt(m[2] as string, 16), inode: Number(m[3]) })
  }
  return out
}

/** The local address in canonical text: the kernel writes each 32-bit word in host order (little-endian here). */
export function localAddressText(s: UdpSocket): string {
  const bytes = (s.local.match(/.{8}/g) ?? []).flatMap((w) => (w.match(/../g) ?? []).reverse())
  return formatIp({ family: s.family, value: BigInt(`0x${bytes.join('') || '0'}`) })
}
