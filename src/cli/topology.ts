/**
 * `tsnet topology`: a picture of this host's tsnet networks, containers, published ports and
 * policies, laid out by Graphviz (compiled to WebAssembly, @viz-js/viz): SVG, DOT or JSON.
 * It reads what `tsnet status` reads, and changes nothing.
 */
import { writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { invalid } from '../errors.js'
import { topologyDot, topologyOf } from '../observe/topology.js'
import { type Command, SHARED_SETTINGS } from './command.js'
import { readStatusModel } from './status.js'

const FORMATS = ['svg', 'dot', 'json'] as const

/** DOT laid out and drawn as SVG by Graphviz in WebAssembly (loaded only for this). */
export async function renderSvg(dot: string): Promise<string> {
  const { instance } = await import('@viz-js/viz')
  const viz = await instance()
  const r = viz.render(dot, { format: 'svg', engine: 'dot' })
  if (r.status !== 'success') throw invalid(`Graphviz could not lay out the picture: ${r.errors.map((e) => e.message).join('; ')}`)
  return r.output
}

export const topologyCommand: Command = {
  name: 'topology',
  synopsis: 'tsnet topology [--format svg|dot|json] [-o FILE]',
  summary: 'a picture of networks, containers, ports and policies',
  usage: `usage: tsnet topology [--format svg|dot|json] [-o FILE]
  Draws this host's tsnet networks, the containers on them (by Docker's names with --docker-host,
  else as the daemon last saw them), their published ports and the tsnet.allow arrows between
  networks. Graphviz lays it out. Reads the store read-only; changes nothing.
  --format    svg (default), dot (Graphviz source) or json (the graph)
  -o FILE     write there instead of standard output

${SHARED_SETTINGS}`,
  options: { format: { type: 'string' }, output: { type: 'string', short: 'o' } },
  async run({ config, values }) {
    const format = (values.format ?? 'svg') as string
    if (!(FORMATS as readonly string[]).includes(format)) {
      console.error(`tsnet topology: --format ${JSON.stringify(format.slice(0, 40))}: use svg, dot or json`)
      return 2
    }
    const graph = topologyOf(await readStatusModel(config), hostname())
    const text = format === 'json' ? `${JSON.stringify(graph, null, 2)}\n` : format === 'dot' ? topologyDot(graph) : await renderSvg(topologyDot(graph))
    if (typeof values.output === 'string') await writeFile(values.output, text)
    else process.stdout.write(text)
    return 0
  },
}
