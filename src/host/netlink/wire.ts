/**
 * The netlink wire format: message headers, attributes (TLVs, nested or not) and the fixed
 * headers of the rtnetlink families. Pure byte work, no socket. Netlink uses the host's byte
 * order; tsnet runs on little-endian machines only (x64, arm64) and the socket refuses others.
 */

const NLMSG_HDRLEN = 16
const NLA_HDRLEN = 4
/** The top two bits of an attribute type are flags (nested, network byte order). */
const NLA_TYPE_MASK = 0x3fff

export const align4 = (n: number): number => (n + 3) & ~3

// ---------------------------------------------------------------- attribute payloads

export const u8 = (n: number): Buffer => Buffer.from([n & 0xff])
export function u16(n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16LE(n)
  return b
}
export function u32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n >>> 0)
  return b
}
export function u16be(n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}
/** A NUL-terminated string, as the kernel expects for names, kinds and aliases. */
export const str = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)])

/** One attribute: header, payload, padding to 4 bytes. */
export function attr(type: number, payload: Buffer): Buffer {
  const len = NLA_HDRLEN + payload.length
  if (len > 0xffff) throw new RangeError(`netlink attribute ${type} is ${len} bytes, more than an attribute can hold`)
  const b = Buffer.alloc(align4(len))
  b.writeUInt16LE(len, 0)
  b.writeUInt16LE(type, 2)
  payload.copy(b, NLA_HDRLEN)
  return b
}

/** An attribute whose payload is other attributes (or, for VETH_INFO_PEER, a header then attributes). */
export const nest = (type: number, children: readonly Buffer[]): Buffer => attr(type, Buffer.concat(children))

// ---------------------------------------------------------------- attribute parsing

/** The attributes of one level, by type (a repeated type keeps its first occurrence, as the kernel does). */
export class Attrs {
  private readonly byType = new Map<number, Buffer>()

  constructor(buf: Buffer) {
    let off = 0
    while (off + NLA_HDRLEN <= buf.length) {
      const len = buf.readUInt16LE(off)
      const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK
      if (len < NLA_HDRLEN || off + len > buf.length) throw new Error(`malformed netlink attribute (type ${type}, length ${len})`)
      if (!this.byType.has(type)) this.byType.set(type, buf.subarray(off + NLA_HDRLEN, off + len))
      off += align4(len)
    }
  }

  has(type: number): boolean {
    return this.byType.has(type)
  }
  raw(type: number): Buffer | undefined {
    return this.byType.get(type)
  }
  u8(type: number): number | undefined {
    const b = this.byType.get(type)
    return b && b.length >= 1 ? b.readUInt8(0) : undefined
  }
  u16(type: number): number | undefined {
    const b = this.byType.get(type)
    return b && b.length >= 2 ? b.readUInt16LE(0) : undefined
  }
  u16be(type: number): number | undefined {
    const b = this.byType.get(type)
    return b && b.length >= 2 ? b.readUInt16BE(0) : undefined
  }
  u32(type: number): number | undefined {
    const b = this.byType.get(type)
    return b && b.length >= 4 ? b.readUInt32LE(0) : undefined
  }
  /** A string attribute without its terminating NUL (and anything after it). */
  str(type: number): string | undefined {
    const b = this.byType.get(type)
    if (!b) return undefined
    const nul = b.indexOf(0)
    return b.subarray(0, nul < 0 ? b.length : nul).toString('utf8')
  }
  nested(type: number): Attrs | undefined {
    const b = this.byType.get(type)
    return b ? new Attrs(b) : undefined
  }
}

// ---------------------------------------------------------------- messages

export interface NlMessage {
  type: number
  flags: number
  seq: number
  /** The sender's port: 0 for the kernel. */
  port: number
  /** Everything after the 16-byte header. */
  payload: Buffer
}

export function encodeMessage(type: number, flags: number, seq: number, port: number, body: readonly Buffer[]): Buffer {
  const payload = Buffer.concat(body)
  const b = Buffer.alloc(NLMSG_HDRLEN + payload.length)
  b.writeUInt32LE(b.length, 0)
  b.writeUInt16LE(type, 4)
  b.writeUInt16LE(flags, 6)
  b.writeUInt32LE(seq >>> 0, 8)
  b.writeUInt32LE(port >>> 0, 12)
  payload.copy(b, NLMSG_HDRLEN)
  return b
}

/** Splits one datagram into its messages; throws on a malformed header (the datagram is then dropped whole). */
export function decodeMessages(buf: Buffer): NlMessage[] {
  const out: NlMessage[] = []
  let off = 0
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off)
    if (len < NLMSG_HDRLEN || off + len > buf.length) throw new Error(`malformed netlink message (length ${len} at offset ${off} of ${buf.length})`)
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      port: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    })
    off += align4(len)
  }
  return out
}

/** The errno of an NLMSG_ERROR (0 is an acknowledgement) or of an NLMSG_DONE that ends a failed dump. */
export function errnoOf(msg: NlMessage): number {
  return msg.payload.length >= 4 ? -msg.payload.readInt32LE(0) : 0
}

// ---------------------------------------------------------------- family headers

export const IFINFOMSG_LEN = 16
export interface IfInfo { family: number; type: number; index: number; flags: number; change: number }

export function ifinfomsg(h: Partial<IfInfo> = {}): Buffer {
  const b = Buffer.alloc(IFINFOMSG_LEN)
  b.writeUInt8(h.family ?? 0, 0)
  b.writeUInt16LE(h.type ?? 0, 2)
  b.writeInt32LE(h.index ?? 0, 4)
  b.writeUInt32LE((h.flags ?? 0) >>> 0, 8)
  b.writeUInt32LE((h.change ?? 0) >>> 0, 12)
  return b
}
export function readIfinfomsg(p: Buffer): IfInfo {
  if (p.length < IFINFOMSG_LEN) throw new Error('short ifinfomsg')
  return { family: p.readUInt8(0), type: p.readUInt16LE(2), index: p.readInt32LE(4), flags: p.readUInt32LE(8), change: p.readUInt32LE(12) }
}

export const IFADDRMSG_LEN = 8
export interface IfAddr { family: number; prefixLength: number; flags: number; scope: number; index: number }

export function ifaddrmsg(h: IfAddr): Buffer {
  const b = Buffer.alloc(IFADDRMSG_LEN)
  b.writeUInt8(h.family, 0)
  b.writeUInt8(h.prefixLength, 1)
  b.writeUInt8(h.flags & 0xff, 2)
  b.writeUInt8(h.scope, 3)
  b.writeUInt32LE(h.index, 4)
  return b
}
export function readIfaddrmsg(p: Buffer): IfAddr {
  if (p.length < IFADDRMSG_LEN) throw new Error('short ifaddrmsg')
  return { family: p.readUInt8(0), prefixLength: p.readUInt8(1), flags: p.readUInt8(2), scope: p.readUInt8(3), index: p.readUInt32LE(4) }
}

export const RTMSG_LEN = 12
export interface RtMsg { family: number; dstLength: number; table: number; protocol: number; scope: number; type: number }

export function rtmsg(h: Partial<RtMsg>): Buffer {
  const b = Buffer.alloc(RTMSG_LEN)
  b.writeUInt8(h.family ?? 0, 0)
  b.writeUInt8(h.dstLength ?? 0, 1)
  b.writeUInt8(h.table ?? 0, 4)
  b.writeUInt8(h.protocol ?? 0, 5)
  b.writeUInt8(h.scope ?? 0, 6)
  b.writeUInt8(h.type ?? 0, 7)
  return b
}
export function readRtmsg(p: Buffer): RtMsg {
  if (p.length < RTMSG_LEN) throw new Error('short rtmsg')
  return { family: p.readUInt8(0), dstLength: p.readUInt8(1), table: p.readUInt8(4), protocol: p.readUInt8(5), scope: p.readUInt8(6), type: p.readUInt8(7) }
}

export const NDMSG_LEN = 12
export interface NdMsg { family: number; index: number; state: number; flags: number; type: number }

export function ndmsg(h: Partial<NdMsg>): Buffer {
  const b = Buffer.alloc(NDMSG_LEN)
  b.writeUInt8(h.family ?? 0, 0)
  b.writeInt32LE(h.index ?? 0, 4)
  b.writeUInt16LE(h.state ?? 0, 8)
  b.writeUInt8(h.flags ?? 0, 10)
  b.writeUInt8(h.type ?? 0, 11)
  return b
}
export function readNdmsg(p: Buffer): NdMsg {
  if (p.length < NDMSG_LEN) throw new Error('short ndmsg')
  return { family: p.readUInt8(0), index: p.readInt32LE(4), state: p.readUInt16LE(8), flags: p.readUInt8(10), type: p.readUInt8(11) }
}
