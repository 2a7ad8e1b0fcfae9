// Runs tsnet's netlink client inside a network namespace for the integration tests.
//
// Started as `nsenter --net=/run/netns/NS node netlink-child.mjs` by netlink-probe.ts: a netlink
// socket belongs to the namespace of the process that opens it, and Node cannot setns() itself,
// so the client runs in a child entered into the namespace. It reads one JSON request per line
// on stdin, {id, op, args}, calls the client (dist/host/netlink, built by `npm run build`) with
// its Rtnl first, and writes {id, ok} or {id, err: {kind, message}}; link events, once `watch`
// was asked for, come as {event}. It exits when stdin closes. Without --serve (as when
// `tap run test/integration` picks up every file of the directory) it does nothing.
import { createInterface } from 'node:readline'
import * as nl from '../../../dist/host/netlink/index.js'

if (!process.argv.includes('--serve')) process.exit(0)

const rtnl = new nl.Rtnl({ timeoutMs: 10_000 })
const OPS = [
  'listLinks', 'getLink', 'linkIndex', 'createLink', 'setLink', 'deleteLink',
  'listAddresses', 'addAddress', 'replaceAddress', 'deleteAddress', 'listRoutes',
  'listNeighbours', 'addNeighbour', 'deleteNeighbour', 'listFdb', 'addFdb', 'deleteFdb', 'kernelHasLinkKind',
]
let watch
const write = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

async function run(op, args) {
  if (OPS.includes(op)) return nl[op](rtnl, ...args)
  if (op === 'watch') {
    watch ??= nl.watchLinks(({ link: _link, ...e }) => write({ event: e }), { onOverflow: () => write({ event: { type: 'overflow' } }) })
    watch.seed(await nl.listLinks(rtnl))
    return true
  }
  if (op === 'unwatch') {
    watch?.stop()
    watch = undefined
    return true
  }
  throw new Error(`unknown op ${op}`)
}

const lines = createInterface({ input: process.stdin })
lines.on('line', (line) => {
  const { id, op, args } = JSON.parse(line)
  run(op, args ?? []).then(
    (ok) => write({ id, ok: ok ?? null }),
    (e) => write({ id, err: { kind: e?.kind ?? 'unknown', message: e?.message ?? String(e), name: e?.name } }),
  )
})
lines.on('close', () => {
  watch?.stop()
  rtnl.close()
})
