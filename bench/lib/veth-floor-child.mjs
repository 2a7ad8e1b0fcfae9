// The kernel floor of DeleteEndpoint: how long a bare rtnetlink delete of a veth pair like an
// endpoint's takes (host end up on a bridge, peer down beside it, same MTU and peer MAC), with
// tsnet's own netlink client (dist/host/netlink, built by `npm run build`) and nothing else.
// Run by veth-floor.ts as `nsenter --net=/run/netns/NS node veth-floor-child.mjs COUNT`: a netlink
// socket belongs to the namespace of the process that opens it. Prints {"deleteMs":[...]} on stdout.
// Its names (bfl*) are not tsnet's: tsnet's link watch ignores them.
import { createLink, deleteLink, getLink, Rtnl } from '../../dist/host/netlink/index.js'

const count = Number(process.argv[2])
if (!Number.isInteger(count) || count < 1) {
  console.error('usage: veth-floor-child.mjs COUNT')
  process.exit(2)
}
const rtnl = new Rtnl({ timeoutMs: 10_000 })
const BRIDGE = 'bflbr0'
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6
const deleteMs = []
try {
  if (await getLink(rtnl, BRIDGE)) await deleteLink(rtnl, BRIDGE)
  await createLink(rtnl, { kind: 'bridge', name: BRIDGE, up: true })
  const veth = { kind: 'veth', name: 'bfl0', mtu: 1500, master: BRIDGE, up: true, peer: { name: 'bfl0p', mac: '02:42:0a:00:00:02', mtu: 1500 } }
  // once unmeasured: the first delete pays for warming up the socket and the bridge's port list
  await createLink(rtnl, veth)
  await deleteLink(rtnl, 'bfl0')
  for (let i = 0; i < count; i++) {
    await createLink(rtnl, veth)
    const t0 = process.hrtime.bigint()
    await deleteLink(rtnl, 'bfl0')
    deleteMs.push(ms(t0))
  }
} finally {
  if (await getLink(rtnl, 'bfl0').catch(() => undefined)) await deleteLink(rtnl, 'bfl0').catch(() => undefined)
  await deleteLink(rtnl, BRIDGE).catch(() => undefined)
  rtnl.close()
}
process.stdout.write(JSON.stringify({ deleteMs }) + '\n')
