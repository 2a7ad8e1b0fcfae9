/** Runs host tools with argument arrays (never a shell), optionally inside a namespace via a prefix. */
import { spawn } from 'node:child_process'
import { TsnetError } from '../errors.js'

export interface ExecResult {
  code: number
  stdout: string
  stderr: string
}

export interface Runner {
  run(cmd: string, args: readonly string[], opts?: { input?: string }): Promise<ExecResult>
}

export class HostCommandError extends TsnetError {
  constructor(readonly argv: readonly string[], readonly result: ExecResult) {
    super('host', `${argv.join(' ')} failed (exit ${result.code}): ${result.stderr.trim() || result.stdout.trim() || 'no output'}`, {
      context: { argv, code: result.code },
    })
  }
}

/** `prefix` wraps every command, e.g. ['nsenter', '--net=/run/netns/x'] for tests in a namespace. */
export function createRunner(prefix: readonly string[] = []): Runner {
  return {
    run(cmd, args, opts = {}) {
      const argv = [...prefix, cmd, ...args]
      return new Promise((resolve, reject) => {
        const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] })
        const out: Buffer[] = []
        const err: Buffer[] = []
        child.stdout.on('data', (b: Buffer) => out.push(b))
        child.stderr.on('data', (b: Buffer) => err.push(b))
        child.on('error', (e) => reject(new TsnetError('host', `cannot run ${cmd}: ${e.message}`, { cause: e })))
        child.on('close', (code, signal) => {
          resolve({ code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() })
        })
        child.stdin.on('error', () => undefined) // the tool may exit before reading its input
        child.stdin.end(opts.input ?? '')
      })
    },
  }
}

/** Runs and throws HostCommandError on a non-zero exit. */
export async function runOk(runner: Runner, cmd: string, args: readonly string[], opts?: { input?: string }): Promise<string> {
  const r = await runner.run(cmd, args, opts)
  if (r.code !== 0) throw new HostCommandError([cmd, ...args], r)
  return r.stdout
}
