/**
 * The etcd3 client as the etcd store uses it: TLS from files, and fault handling that keeps every
 * call bounded. Per attempt a gRPC deadline; per call a cockatiel timeout over the client's own
 * retries (which try another member each time); per member a circuit breaker that fails calls at
 * once while a member is down and tries it again soon after. Errors become TsnetErrors naming the
 * endpoints.
 */
import { readFileSync } from 'node:fs'
import {
  ClientClosedError, Etcd3, EtcdLeaseInvalidError, GRPCCancelledError, GRPCDeadlineExceededError, GRPCInvalidArgumentError,
  type IOptions, isRecoverableError,
} from 'etcd3'
import {
  ConsecutiveBreaker, ExponentialBackoff, type IBackoff, TaskCancelledError, TimeoutStrategy, circuitBreaker, handleWhen, isBrokenCircuitError,
  retry, timeout, wrap,
} from 'cockatiel'
import { TsnetError, errorMessage, invalid } from '../errors.js'

export interface EtcdTls {
  /** PEM file of the CA that signed the members' certificates. */
  caFile?: string
  /** PEM files of this client's certificate and key (client-certificate authentication). */
  certFile?: string
  keyFile?: string
}

export interface EtcdClientOptions {
  /** http(s)://host:port of the members. */
  endpoints: readonly string[]
  tls?: EtcdTls
  /** Every call answers or fails within this (default 5000 ms). */
  timeoutMs?: number
}

export const DEFAULT_ETCD_TIMEOUT_MS = 5000
/** A member that failed this many calls in a row gets no calls until the breaker half-opens. */
const BREAKER_FAILURES = 3
const BREAKER_HALF_OPEN_MS = 1000
/** Watch streams reconnect with backoff up to this, so a returning etcd is noticed within seconds. */
const WATCH_BACKOFF_MAX_MS = 2000

/** Why a member last failed a call, per client: what an open circuit breaker's error cannot say. */
const lastFailures = new WeakMap<Etcd3, { reason?: string }>()

export const lastFailureOf = (client: Etcd3): string | undefined => lastFailures.get(client)?.reason

export function createEtcdClient(options: EtcdClientOptions): Etcd3 {
  const lastFailure: { reason?: string } = {}
  const timeoutMs = options.timeoutMs ?? DEFAULT_ETCD_TIMEOUT_MS
  // Several attempts fit in the bound: a member that hangs costs one deadline, then another is tried.
  const attemptMs = Math.max(200, Math.floor(timeoutMs / 2))
  const clientOptions: IOptions = {
    hosts: [...options.endpoints],
    dialTimeout: timeoutMs,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + attemptMs }),
    // A member that vanishes without a reset (a partition) is noticed by HTTP/2 pings; etcd permits one per 5 s.
    grpcOptions: { 'grpc.keepalive_time_ms': 10_000, 'grpc.keepalive_timeout_ms': 5_000 },
    faultHandling: {
      host: () => {
        const breaker = circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: BREAKER_HALF_OPEN_MS, breaker: new ConsecutiveBreaker(BREAKER_FAILURES) })
        // An open breaker hides why the member failed (a wrong CA, a refused connection): keep the last reason.
        breaker.onFailure(({ reason }) => { if ('error' in reason) lastFailure.reason = grpcMessage(reason.error) })
        breaker.onSuccess(() => { lastFailure.reason = undefined })
        return breaker
      },
      global: wrap(
        timeout(timeoutMs, TimeoutStrategy.Aggressive),
        retry(handleWhen(isRecoverableError), { maxAttempts: 3, backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 500 }) }),
      ),
      // etcd3 types this as a backoff but uses it as cockatiel 3's factory, as its own default is.
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: WATCH_BACKOFF_MAX_MS }) as unknown as IBackoff<unknown>,
    },
  }
  const tls = options.tls
  if (tls && (tls.caFile || tls.certFile || tls.keyFile)) {
    if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) throw invalid('an etcd client certificate needs both its certificate and its key file')
    clientOptions.credentials = {
      rootCertificate: readPem(tls.caFile, 'CA certificate') as Buffer,
      ...(tls.keyFile ? { privateKey: readPem(tls.keyFile, 'client key'), certChain: readPem(tls.certFile, 'client certificate') } : {}),
    }
  }
  try {
    const client = new Etcd3(clientOptions)
    lastFailures.set(client, lastFailure)
    return client
  } catch (err) {
    throw invalid(`cannot set up the etcd client for ${options.endpoints.join(',')}: ${errorMessage(err)}`)
  }
}

function readPem(path: string | undefined, what: string): Buffer | undefined {
  if (path === undefined) return undefined
  try {
    return readFileSync(path)
  } catch (err) {
    throw invalid(`cannot read the etcd ${what} ${path}: ${errorMessage(err)}`)
  }
}

/** cockatiel 3.2's isTaskCancelledError tests the wrong property: the timeout's own error, by class. */
const isTimedOut = (err: unknown) => err instanceof TaskCancelledError

/** Whether an error means etcd could not be reached (in time): retrying later may work. */
export function isUnreachable(err: unknown): boolean {
  return err instanceof Error && (isRecoverableError(err) || err instanceof GRPCDeadlineExceededError || err instanceof GRPCCancelledError ||
    isBrokenCircuitError(err) || isTimedOut(err) || err instanceof ClientClosedError)
}

/** An error's message without grpc-js's empty "Resolution note:" trailer. */
const grpcMessage = (err: unknown) => errorMessage(err).replace(/\.?\s*Resolution note:\s*$/, '')

/** An etcd3 or cockatiel error as a TsnetError with a sentence naming the endpoints. */
export function etcdFailure(err: unknown, endpoints: readonly string[], doing: string, lastFailure?: string): TsnetError {
  if (err instanceof TsnetError) return err
  const at = `etcd at ${endpoints.join(',')}`
  const last = lastFailure ? `; the last failure: ${lastFailure}` : ''
  const why = isTimedOut(err) ? `no answer in time${last}` : isBrokenCircuitError(err) ? `every member failed its last calls${last}`
    : grpcMessage(err)
  if (isUnreachable(err)) return new TsnetError('unavailable', `${at} is unreachable: ${why} (${doing})`, { cause: err, context: { endpoints } })
  if (err instanceof EtcdLeaseInvalidError) return new TsnetError('invalid', `${doing}: the lease has expired or was revoked in ${at}`, { cause: err })
  if (err instanceof GRPCInvalidArgumentError) return new TsnetError('invalid', `${at} refused ${doing}: ${why}`, { cause: err })
  return new TsnetError('host', `${at} failed ${doing}: ${why}`, { cause: err, context: { endpoints } })
}
