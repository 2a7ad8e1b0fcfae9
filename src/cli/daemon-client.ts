/** The commands' side of tsnet's own calls on the plugin socket (server/tsnet-routes.ts). */
import { request } from 'node:http'
import { TsnetError } from '../errors.js'

/** Nothing answers on the socket: the daemon is not running there (a finding, not a failure). */
export class DaemonAbsent extends Error {
  constructor(readonly socket: string, readonly reason: string) {
    super(`no tsnet daemon answers on ${socket} (${reason})`)
  }
}

const ABSENT_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK', 'EACCES'])
/** An answer is a few KB; a daemon that sends more is not one to trust. */
const MAX_ANSWER = 16 * 1024 * 1024

/**
 * POSTs `body` to `path` on the daemon's socket and returns its JSON answer. Throws DaemonAbsent
 * when nothing listens there, and a TsnetError for an {"Err"} or an answer that is not JSON.
 */
export function callDaemon<T>(socket: string, path: string, body: unknown, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path, method: 'POST', timeout: timeoutMs, agent: false }, (res) => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (c: Buffer) => {
        size += c.length
        if (size > MAX_ANSWER) req.destroy(new Error(`the answer is larger than ${MAX_ANSWER} bytes`))
        else chunks.push(c)
      })
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        let parsed: { Err?: string }
        try {
          parsed = JSON.parse(text) as { Err?: string }
        } catch {
          reject(new TsnetError('host', `the daemon on ${socket} answered ${path} with something that is not JSON: ${text.slice(0, 200)}`))
          return
        }
        if (parsed.Err !== undefined) reject(new TsnetError('invalid', parsed.Err))
        else if (res.statusCode !== 200) reject(new TsnetError('host', `the daemon on ${socket} answered ${path} with HTTP ${res.statusCode}`))
        else resolve(parsed as T)
      })
    })
    req.on('timeout', () => req.destroy(new Error(`the daemon did not answer within ${timeoutMs / 1000} s`)))
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== undefined && ABSENT_CODES.has(err.code)) reject(new DaemonAbsent(socket, err.code === 'ENOENT' ? 'no socket file' : err.code))
      else reject(new TsnetError('host', `cannot reach the tsnet daemon on ${socket}: ${err.message}`))
    })
    req.end(JSON.stringify(body ?? {}))
  })
}
