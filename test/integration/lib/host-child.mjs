// Runs tsnet's real host layer (LinuxHost from dist/, built by `npm run build`) inside a network
// namespace for the integration and fuzz tests.
//
// Started as `nsenter --net=/run/netns/NS node host-child.mjs --serve` by remote-host.ts: a
// netlink socket belongs to the namespace of the process that opens it, sysctls under
// /proc/sys/net are those of the reading process's namespace, and held ports bind there too; Node
// cannot setns() itself, so the whole host layer lives in a child entered into the namespace.
// Nothing is faked: iptables, ipset, sysctl writes, rtnetlink and the held sockets are the
// product's own code, run where they would run in `tsnet serve`.
//
// It reads one JSON request per line on stdin, {id, op, args}, and writes {id, ok, logs} or
// {id, err: {name, kind, message, context}, logs}; `logs` are the pino records the host layer
// wrote during that call. Link events, once `watch` was asked for, come as {event: why}. For the
// tests' "nothing ran" checks it counts the rtnetlink messages it sends (reads and changes) and records every
// command it spawns (`counters`, `resetCounters`). It exits when stdin closes, which releases
// every port it holds. Without --serve (as when `tap run` picks up every file) it does nothing.
import { createInterface } from 'node:readline'
import { pino } from 'pino'
import { LinuxHost } from '../../../dist/host/linux-host.js'
import { createRunner } from '../../../dist/host/exec.js'
import { Rtnl } from '../../../dist/host/netlink/index.js'
import { openRawSocket } from '../../../dist/host/netlink/socket.js'

if (!process.argv.includes('--serve')) process.exit(0)

const counters = { netlinkReads: 0, netlinkChanges: 0, commands: [] }

/**
 * The real NETLINK_ROUTE socket, counting what is sent on it: RTM_GET* requests (type 18, 22,
 * 26, ... : type % 4 === 2) are reads, every other message (NEW/DEL/SET) asks for a change.
 */
function countingSocket() {
  const sock = openRawSocket()
  const send = sock.send.bind(sock)
  sock.send = (msg, options, callback) => {
    if (Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength).readUInt16LE(4) % 4 === 2) counters.netlinkReads++
    else counters.netlinkChanges++
    send(msg, options, callback)
  }
  return sock
}

const inner = createRunner()
const runner = {
  run(cmd, args, opts) {
    counters.commands.push([cmd, ...args])
    return inner.run(cmd, args, opts)
  },
}
const rtnl = new Rtnl({ timeoutMs: 20_000, openSocket: countingSocket })
const host = new LinuxHost({ runner, rtnl })
const held = new Map()
let nextHold = 0
let unwatch

const write = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

/** A pino logger whose records are kept for the answer to this call. */
function callLogger() {
  const records = []
  const log = pino({ level: 'debug', base: undefined, timestamp: false }, { write: (line) => records.push(JSON.parse(line)) })
  return { log, records }
}

async function run(op, args, log) {
  switch (op) {
    case 'observe':
      return [...(await host.observe(args[0])).entries()]
    case 'apply':
      return host.apply(args[0], log)
    case 'facts': {
      const f = await host.facts()
      return { ...f, linkKinds: [...f.linkKinds] }
    }
    case 'routedPrefixes':
      return host.routedPrefixes()
    case 'defaultRouteMtu':
      return (await host.defaultRouteMtu()) ?? null
    case 'reservePort': {
      const r = await host.reservePort(args[0], args[1], args[2] ?? undefined)
      const id = ++nextHold
      held.set(id, r)
      return { id, port: r.port }
    }
    case 'release': {
      const r = held.get(args[0])
      held.delete(args[0])
      return r?.release()
    }
    case 'releasePorts':
      held.clear()
      return host.releasePorts()
    case 'forgetPortFlows':
      return host.forgetPortFlows(args[0], log)
    case 'watch':
      unwatch ??= await host.watchOwnedLinks((why) => write({ event: why }), log)
      return true
    case 'unwatch':
      unwatch?.()
      unwatch = undefined
      return true
    case 'counters':
      return counters
    case 'resetCounters':
      counters.netlinkReads = 0
      counters.netlinkChanges = 0
      counters.commands = []
      return true
    default:
      throw new Error(`unknown op ${op}`)
  }
}

const plain = (v) => JSON.parse(JSON.stringify(v ?? null))

const lines = createInterface({ input: process.stdin })
lines.on('line', (line) => {
  const { id, op, args } = JSON.parse(line)
  const { log, records } = callLogger()
  run(op, args ?? [], log).then(
    (ok) => write({ id, ok: plain(ok), logs: records }),
    (e) => write({ id, err: { name: e?.name, kind: e?.kind, message: e?.message ?? String(e), context: plain(e?.context) }, logs: records }),
  )
})
lines.on('close', async () => {
  unwatch?.()
  await host.releasePorts().catch(() => undefined)
  rtnl.close()
  process.exit(0)
})
