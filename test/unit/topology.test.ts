// tsnet topology (issue 15): the graph from what status reads (pure), its DOT, and the SVG that
// Graphviz in WebAssembly draws from it, parsed as XML and searched for every name.
import t from 'tap'
import { XMLParser, XMLValidator } from 'fast-xml-parser'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli } from '../../src/cli/index.js'
import { renderSvg } from '../../src/cli/topology.js'
import type { BridgeNetwork, EndpointRecord, NetworkRecord } from '../../src/core/records.js'
import { statusModel, type StatusInput } from '../../src/observe/status-view.js'
import { topologyDot, topologyOf } from '../../src/observe/topology.js'

const id = (lead: string) => lead.repeat(32)
const [WEB, UI, API] = [id('aa'), id('bb'), id('cc')]
const network = (nid: string, pool: string, extra: Partial<BridgeNetwork> = {}): NetworkRecord => ({
  id: nid, mode: 'bridge', spec: { bridge: `tsbr-${nid.slice(0, 10)}`, bridgeNamedByUser: false }, mtu: 1500, internal: false, ipv6: false,
  ipv4Subnets: [{ pool, gateway: pool.replace(/0\/24$/, '1/24') }], ipv6Subnets: [], enableIpMasquerade: true, enableIcc: true, genericOptions: {}, createdAt: '2026-01-01T00:00:00Z', ...extra,
})
const endpoint = (eid: string, networkId: string, address: string, extra: Partial<EndpointRecord> = {}): EndpointRecord => ({
  id: eid, networkId, hostIf: `tsv${eid.slice(0, 12)}`, containerIf: `tsc${eid.slice(0, 12)}`, mac: '02:42:0a:00:00:02', macFromDocker: false, mtu: 1500, address,
  portMappings: [], exposedPorts: [], joined: true, createdAt: '2026-01-01T00:00:00Z', ...extra,
})

const input: StatusInput = {
  stateDir: '/var/lib/tsnet',
  networks: [
    network(WEB, '10.31.0.0/24', { enableIcc: false }),
    network(UI, '10.32.0.0/24'),
    network(API, '10.33.0.0/24', { policy: 'ui tcp/8080; 192.0.2.0/24,web tcp/9000-9010,icmp', internal: true }),
  ],
  endpoints: [
    endpoint(id('e1'), WEB, '10.31.0.2/24', { published: [{ family: 4, proto: 'tcp', hostIp: '', hostPort: 8080, containerIp: '10.31.0.2', containerPort: 80 }, { family: 4, proto: 'udp', hostIp: '127.0.0.1', hostPort: 5353, containerIp: '10.31.0.2', containerPort: 53 }] }),
    endpoint(id('e2'), WEB, '10.31.0.3/24'),
    endpoint(id('e3'), UI, '10.32.0.3/24'),
    endpoint(id('e4'), API, '10.33.0.2/24'),
  ],
  pools: [], leases: [],
  names: { source: 'docker', networks: [{ id: WEB, name: 'web', driver: 'tsnet', subnets: [] }, { id: UI, name: 'ui', driver: 'tsnet', subnets: [] }, { id: API, name: 'api', driver: 'tsnet', subnets: [] }] },
  containers: new Map([[id('e1'), '/web1'], [id('e2'), '/web2'], [id('e3'), '/web2'], [id('e4'), '/api"1']]),
  daemon: { running: false, socket: '/x.sock', reason: 'not running' },
}

t.test('the graph: networks by name, containers by name with every attachment and port, policy arrows', async (t) => {
  const g = topologyOf(statusModel(input), 'node1')
  t.equal(g.host, 'node1')
  t.same(g.networks.map((n) => [n.name, n.bridge, n.subnets, n.internal, n.icc]), [
    ['web', `tsbr-${WEB.slice(0, 10)}`, ['10.31.0.0/24'], false, false],
    ['ui', `tsbr-${UI.slice(0, 10)}`, ['10.32.0.0/24'], false, true],
    ['api', `tsbr-${API.slice(0, 10)}`, ['10.33.0.0/24'], true, true],
  ])
  t.same(g.containers.map((c) => c.name), ['api"1', 'web1', 'web2'], 'one node per container, sorted')
  const web2 = g.containers.find((c) => c.name === 'web2')!
  t.same(web2.attachments, [{ network: WEB, address: '10.31.0.3/24' }, { network: UI, address: '10.32.0.3/24' }], 'a container on two networks')
  t.same(g.containers.find((c) => c.name === 'web1')!.ports, ['*:8080->80/tcp', '127.0.0.1:5353->53/udp'])
  t.same(g.policies, [
    { from: UI, to: API, ports: 'tcp/8080' },
    { from: '192.0.2.0/24', to: API, ports: 'tcp/9000-9010,icmp' },
    { from: WEB, to: API, ports: 'tcp/9000-9010,icmp' },
  ], 'network sources by ID, address sources as CIDRs')
  const unnamed = topologyOf(statusModel({ ...input, names: { source: 'none', networks: [] }, containers: new Map() }), 'h')
  t.equal(unnamed.networks[0]?.name, WEB.slice(0, 12), 'without names: short IDs')
  t.equal(unnamed.containers.length, 4, 'and each endpoint its own node')
})

t.test('DOT: every node and arrow, quotes escaped, no coordinates', async (t) => {
  const dot = topologyDot(topologyOf(statusModel(input), 'node1'))
  t.match(dot, /^digraph tsnet \{\n/)
  t.match(dot, `"ctr:web2" -> "net:${UI}" [label="10.32.0.3/24", dir=none]`)
  t.match(dot, `"port:web1 *:8080->80/tcp" -> "ctr:web1"`)
  t.match(dot, `"net:${UI}" -> "net:${API}" [label="may reach tcp/8080", style=dashed`)
  t.match(dot, `"src:192.0.2.0/24" -> "net:${API}"`)
  t.match(dot, '"ctr:api\\"1"', 'a quote in a name is escaped')
  t.notMatch(dot, /\bpos=|\bpin=/, 'the layout is left to Graphviz')
})

t.test('SVG from Graphviz in WebAssembly: valid XML holding every container, network and port', async (t) => {
  const svg = await renderSvg(topologyDot(topologyOf(statusModel(input), 'node1')))
  t.equal(XMLValidator.validate(svg), true, 'the SVG parses as XML')
  const doc = new XMLParser({ ignoreAttributes: false }).parse(svg) as { svg: Record<string, unknown> }
  t.ok(doc.svg, 'its root is <svg>')
  const texts: string[] = []
  const walk = (x: unknown): void => {
    if (Array.isArray(x)) x.forEach(walk)
    else if (x && typeof x === 'object') for (const [k, v] of Object.entries(x)) (k === 'text' ? [v].flat().forEach((tx) => texts.push(typeof tx === 'object' ? String((tx as Record<string, unknown>)['#text']) : String(tx))) : walk(v))
  }
  walk(doc.svg)
  const decode = (x: string) => x.replace(/&#(\d+);/g, (_m, n: string) => String.fromCharCode(Number(n))).replace(/&quot;/g, '"').replace(/&gt;/g, '>').replace(/&lt;/g, '<').replace(/&amp;/g, '&')
  const said = texts.map(decode)
  for (const name of ['container web1', 'container web2', 'container api"1', 'network web', 'network ui', 'network api', 'published *:8080->80/tcp', 'may reach tcp/8080', 'host node1']) {
    t.ok(said.includes(name), `the picture says "${name}"`)
  }
  t.match(svg, /<g id="graph0" class="graph"/)
  t.match(svg, /<path [^>]*stroke-dasharray/, 'policy arrows are dashed')
})

t.test('a graph Graphviz cannot read is a clear error', async (t) => {
  await t.rejects(renderSvg('digraph { a -> '), /Graphviz could not lay out the picture/)
})

t.test('the command: an empty store draws an empty host; -o writes the file; a wrong --format is a usage error (2)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tsnet-topology-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const shared = ['--state-dir', join(dir, 'state'), '--socket', join(dir, 'none.sock')]
  t.equal(await runCli(['topology', '-o', join(dir, 'x.svg'), ...shared], {}), 0)
  const svg = await readFile(join(dir, 'x.svg'), 'utf8')
  t.equal(XMLValidator.validate(svg), true, 'an SVG, valid XML')
  t.match(svg, />host \S+<\/text>/, 'the host box')
  t.match(svg, />no tsnet networks<\/text>/, 'saying it holds nothing')
  t.equal(await runCli(['topology', '--format', 'json', '-o', join(dir, 'x.json'), ...shared], {}), 0)
  t.same(JSON.parse(await readFile(join(dir, 'x.json'), 'utf8')), { host: JSON.parse(await readFile(join(dir, 'x.json'), 'utf8')).host, networks: [], containers: [], policies: [], peers: [] })
  t.equal(await runCli(['topology', '--format', 'png', '-o', join(dir, 'y'), ...shared], {}), 2)
  await t.rejects(readFile(join(dir, 'y')), 'nothing written')
})

t.test('overlay networks: the swarm\'s other hosts beside this one, joined to each overlay network by VXLAN', async (t) => {
  const OV = id('dd')
  const overlay: NetworkRecord = {
    ...network(OV, '10.210.0.0/24'), mode: 'overlay',
    spec: { bridge: `tsbr-${OV.slice(0, 10)}`, vxlan: `tsvx-${OV.slice(0, 10)}`, vni: 4097, port: 4789, underlayMtu: 1500 },
  } as NetworkRecord
  const peerBook = { self: '10.251.0.1', peers: { '10.251.0.2': 'discovery' as const, '10.251.0.3': 'docker' as const } }
  const g = topologyOf(statusModel({ ...input, networks: [...input.networks, overlay], peerBook }), 'node1')
  t.same(g.peers, ['10.251.0.2', '10.251.0.3'], 'the other hosts, not this one')
  const dot = topologyDot(g)
  t.match(dot, `"peer:10.251.0.2" -> "net:${OV}" [label="VXLAN"`, 'each peer is joined to the overlay network')
  t.notMatch(dot, `"peer:10.251.0.2" -> "net:${WEB}"`, 'and to no bridge network')
  const svg = await renderSvg(dot)
  t.equal(XMLValidator.validate(svg), true, 'the SVG parses as XML')
  t.match(svg, 'host 10.251.0.3', 'the picture names the other hosts')
  t.same(topologyOf(statusModel({ ...input, peerBook }), 'node1').peers, [], 'positive control: without an overlay network no peer is drawn')
})
