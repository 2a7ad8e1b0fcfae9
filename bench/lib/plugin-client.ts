/** Talks to a tsnet socket the way Docker does: JSON bodies over keep-alive HTTP on a unix socket. */
import { Agent, request } from 'node:http'

export class PluginClient {
  private readonly agent: Agent

  constructor(private readonly socketPath: string, concurrency = 16) {
    this.agent = new Agent({ keepAlive: true, maxSockets: concurrency })
  }

  /** POSTs `body` to `/<method>`; resolves with the parsed answer and the round trip in ms; throws on {"Err"}. */
  call<T = Record<string, unknown>>(method: string, body: unknown): Promise<{ reply: T; ms: number }> {
    const text = JSON.stringify(body)
    const started = process.hrtime.bigint()
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.socketPath, path: `/${method}`, method: 'POST', agent: this.agent, headers: { 'Content-Length': Buffer.byteLength(text) } }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const ms = Number(process.hrtime.bigint() - started) / 1e6
          const reply = JSON.parse(Buffer.concat(chunks).toString() || '{}') as T & { Err?: string }
          if (reply.Err) reject(new Error(`${method}: ${reply.Err}`))
          else resolve({ reply, ms })
        })
      })
      req.on('error', reject)
      req.end(text)
    })
  }

  close(): void {
    this.agent.destroy()
  }
}
