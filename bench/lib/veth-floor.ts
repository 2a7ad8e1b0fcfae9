/** The kernel floor of DeleteEndpoint, measured in a namespace (see veth-floor-child.mjs). */
import { fileURLToPath } from 'node:url'
import { runOk } from '../../test/e2e/lib/proc.js'

const CHILD = fileURLToPath(new URL('./veth-floor-child.mjs', import.meta.url))

/** `count` bare netlink deletes of an endpoint-like veth pair in the namespace at `netnsPath`, in ms. */
export async function vethDeleteFloor(netnsPath: string, count: number): Promise<number[]> {
  const r = await runOk('nsenter', [`--net=${netnsPath}`, '--', process.execPath, CHILD, String(count)], { timeoutMs: 120_000 + count * 1_000 })
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { deleteMs?: number[] }
  if (!Array.isArray(out.deleteMs) || out.deleteMs.length !== count) throw new Error(`veth-floor-child printed no measurements: ${r.stdout.slice(-300)}`)
  return out.deleteMs
}
