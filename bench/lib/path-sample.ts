/**
 * One round trip and throughput sample across hosts: busybox `ping -A` (after a warm-up) and a 3 s iperf3, either
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

/** Pings before the measured ones, unrecorded. */
const WARM_UP = 200

/** A container pair: [engine of the client, client, engine of the server, server]. */
export type ContainerPair = readonly [Engine, string, Engine, string]

/** Samples toward `to` from the container pair `via`, or (without it) between the raw namespaces `raw`. */
export async function samplePath(to: string, pings: number, via: ContainerPair | undefined, raw: readonly [Engine, Engine]): Promise<Sample> {
  if (!/^[0-9.]+$/.test(to) || !Number.isInteger(pings)) throw new Error(`bad ping target ${to} or count ${pings}`)
  // A warm-up first, in the same shell: starting a process in a container (docker exec) keeps
  // dockerd, containerd and the shim busy for some milliseconds, and the samples must not see it.
  // The replies go to a file, read once ping is done: ping writes a line per reply, and through
  // docker exec's pipe each line woke the shim and dockerd while the next request was in flight.
  const pingScript = (ping: string) => {
    const file = '/tmp/tsnet-bench-ping-$$.out'
    return `${ping} -A -q -c ${WARM_UP} ${to} >/dev/null; ${ping} -A -c ${pings} ${to} >${file}; s=$?; busybox cat ${file}; busybox rm -f ${file}; exit $s`
  }
  const pause = () => new Promise((res) => setTimeout(res, 300))
  let pingOut: string
  let iperfOut: string
  if (!via) {
    pingOut = await nsExecOk(raw[0], ['busybox', 'sh', '-c', pingScript('busybox ping')])
    await nsExecOk(raw[1], ['iperf3', '-s', '-D', '-1'])
    await pause()
    iperfOut = await nsExecOk(raw[0], ['iperf3', '-c', to, '-t', '3', '-J'], { timeoutMs: 30_000 })
  } else {
    const [ea, a, eb, b] = via
    pingOut = await ea.dockerOk(['exec', a, 'sh', '-c', pingScript('ping')])
    await eb.dockerOk(['exec', '-d', b, 'iperf3', '-s', '-1'])
    await pause()
    iperfOut = await ea.dockerOk(['exec', a, 'iperf3', '-c', to, '-t', '3', '-J'], { timeoutMs: 30_000 })
  }
  const ping = parsePing(pingOut)
  return { rttAvgUs: ping.rttAvgUs, rttMinUs: ping.rttMinUs, rttMedUs: medianReplyUs(pingOut), gbps: parseIperf(iperfOut) }
}
