// The FDB and neighbour entries of one VXLAN device, as the kernel reports them: a dump, then
// every change heard on RTNLGRP_NEIGH, each stamped with process.hrtime (CLOCK_MONOTONIC, the
// same clock in every process on the machine). Nothing is polled, so watching costs nothing
// while the table is still. Run by fdb-watch.ts as
// `nsenter --net=/run/netns/NS node fdb-watch-child.mjs DEVICE`: a netlink socket belongs to the
// namespace of the process that opens it. Uses tsnet's own netlink code (dist/, npm run build).
// Lines on stdout:
//   R                         ready (subscribed, first dump sent)
//   S <ns>                    a dump follows: it replaces everything said before (also after an overflow)
//   Z <ns>                    end of the dump
//   + f <mac> <dst> <ns>      an FDB entry on DEVICE (mac behind VTEP dst) appeared or changed
//   - f <mac> <dst|?> <ns>    it went
//   + n <ip> <mac> <ns>       a neighbour entry (ip at mac) on DEVICE appeared or changed
//   - n <ip> <mac|?> <ns>     it went
import { AF, RTM } from '../../dist/host/netlink/constants.js'
import { decodeFdb, listFdb } from '../../dist/host/netlink/fdb.js'
import { getLink } from '../../dist/host/netlink/links.js'
import { decodeNeighbour, listNeighbours } from '../../dist/host/netlink/neighbours.js'
import { Rtnl, openRawSocket } from '../../dist/host/netlink/socket.js'
import { decodeMessages, readNdmsg } from '../../dist/host/netlink/wire.js'

const RTNLGRP_NEIGH = 3
const FLOOD = '00:00:00:00:00:00'
const device = process.argv[2]
if (!device) {
  console.error('usage: fdb-watch-child.mjs DEVICE')
  process.exit(2)
}
const rtnl = new Rtnl({ timeoutMs: 20_000 })
const link = await getLink(rtnl, device)
if (!link) {
  console.error(`no device ${device}`)
  process.exit(3)
}
const now = () => process.hrtime.bigint().toString()
let out = []
const flush = () => {
  if (out.length === 0) return
  process.stdout.write(out.join('\n') + '\n')
  out = []
}

/** One entry as a line, or undefined for what is not a remote endpoint's entry on the device. */
function lineOf(msg, sign, t) {
  if (msg.payload.length < 12) return undefined
  const h = readNdmsg(msg.payload)
  if (h.index !== link.index) return undefined
  const asNew = { ...msg, type: RTM.NEWNEIGH }
  if (h.family === AF.BRIDGE) {
    const f = decodeFdb(asNew)
    if (!f || f.mac === FLOOD || (!f.dst && sign === '+')) return undefined
    return `${sign} f ${f.mac} ${f.dst ?? '?'} ${t}`
  }
  if (h.family === AF.INET || h.family === AF.INET6) {
    const n = decodeNeighbour(asNew)
    if (!n || (!n.mac && sign === '+')) return undefined
    return `${sign} n ${n.address} ${n.mac ?? '?'} ${t}`
  }
  return undefined
}

let dumping = false
let dumpAgain = false
/** Sends the whole table: at start, and whenever events were lost. */
async function dump() {
  if (dumping) {
    dumpAgain = true
    return
  }
  dumping = true
  try {
    do {
      dumpAgain = false
      const t = now()
      const lines = [`S ${t}`]
      for (const f of await listFdb(rtnl, link.index)) if (f.dst && f.mac !== FLOOD) lines.push(`+ f ${f.mac} ${f.dst} ${t}`)
      for (const n of await listNeighbours(rtnl, link.index)) if (n.mac) lines.push(`+ n ${n.address} ${n.mac} ${t}`)
      lines.push(`Z ${now()}`)
      flush()
      process.stdout.write(lines.join('\n') + '\n')
    } while (dumpAgain)
  } finally {
    dumping = false
  }
}

const sock = openRawSocket()
sock.setRecvBufferSize(4 << 20)
sock.addMembership(RTNLGRP_NEIGH)
sock.on('message', (buf, rinfo) => {
  if (rinfo.port !== 0) return
  const t = now()
  let msgs
  try {
    msgs = decodeMessages(buf)
  } catch {
    void dump()
    return
  }
  for (const m of msgs) {
    if (m.type !== RTM.NEWNEIGH && m.type !== RTM.DELNEIGH) continue
    const line = lineOf(m, m.type === RTM.NEWNEIGH ? '+' : '-', t)
    if (line) out.push(line)
  }
  if (out.length > 256) flush()
  else setImmediate(flush)
})
sock.on('truncatedMessage', () => void dump())
sock.on('error', (err) => {
  if (err.code === 'ENOBUFS') return void dump()
  console.error(`netlink watch failed: ${err.code ?? err.message}`)
  process.exit(4)
})
await dump()
process.stdout.write('R\n')
process.stdin.on('end', () => {
  flush()
  sock.close()
  rtnl.close()
  process.exit(0)
})
process.stdin.resume()
