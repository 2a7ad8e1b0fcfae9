/**
 * One round trip and throughput sample across hosts: busybox `ping -A` and a 3 s iperf3, either
 * between two containers (through `docker exec` on their engines) or between two namespaces of the
 * raw VXLAN path. Shared by bench/overlay.ts and bench/cluster-hosts.ts.
 */
import { nsExecOk, type Engine } from '../../test/e2e/lib/engine.js'
import { parseIperf, parsePing } from '../datapath.js'
import { median } from './stats.js'

/** Round trips in µs (the median of the replies too: one late reply among hundreds moves the average, not it) and Gbit/s. */
export interface Sample { rttAvgUs: number; rttMinUs: number; rttMedUs: number; gbps: number }

/** The median of busybox ping's per-reply times (`time=0.021 ms`), in µs. */
export function medianReplyUs(out: string): number {
  const times = [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000)
  if (times.length === 0) throw new Error(`no ping replies in: ${out.slice(0, 500)}`)
  return median(times)
}

/** A container pair: [engine of the client, client, engine of the server, server]. */
export type ContainerPair = readonly [Engine, string, Engine, string]

/** Samples toward `to` from the container pair `via`, or (without it) between the raw namespaces `raw`. */
export async function samplePath(to: string, pings: number, via: ContainerPair | undefined, raw: readonly [Engine, Engine]): Promise<Sample> {
  const pingArgs = ['ping', '-A', '-c', String(pings), to]
  const pause = () => new Promise((res) => setTimeout(res, 300))
  let pingOut: string
  let iperfOut: string
  if (!via) {
    pingOut = await nsExecOk(raw[0], ['busybox', ...pingArgs])
    await nsExecOk(raw[1], ['iperf3', '-s', '-D', '-1'])
    await pause()
    iperfOut = await nsExecOk(raw[0], ['iperf3', '-c', to, '-t', '3', '-J'], { timeoutMs: 30_000 })
  } else {
    const [ea, a, eb, b] = via
    pingOut = await ea.dockerOk(['exec', a, ...pingArgs])
    await eb.dockerOk(['exec', '-d', b, 'iperf3', '-s', '-1'])
    await pause()
    iperfOut = await ea.dockerOk(['exec', a, 'iperf3', '-c', to, '-t', '3', '-J'], { timeoutMs: 30_000 })
  }
  const ping = parsePing(pingOut)
  return { rttAvgUs: ping.rttAvgUs, rttMinUs: ping.rttMinUs, rttMedUs: medianReplyUs(pingOut), gbps: parseIperf(iperfOut) }
}
