/** A throwaway CA, a certificate for 127.0.0.1 and a client certificate, made with openssl in a temporary directory. */
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { MemberTls } from './etcd-cluster.js'

export interface TestCerts extends MemberTls {
  /** A second CA that signed nothing here: a client trusting it must not reach the members. */
  otherCaFile: string
}

export async function makeTestCerts(t: { teardown: (fn: () => unknown) => void }): Promise<TestCerts> {
  const dir = await mkdtemp(join(tmpdir(), 'tsnet-certs-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const f = (name: string) => join(dir, name)
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  for (const ca of ['ca', 'other-ca']) openssl('req', '-x509', ...ec, '-keyout', f(`${ca}.key`), '-out', f(`${ca}.pem`), '-days', '1', '-subj', `/CN=tsnet test ${ca}`)
  const sign = async (name: string, ext: string) => {
    await writeFile(f(`${name}.ext`), ext)
    openssl('req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=tsnet test ${name}`)
    openssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${name}.pem`), '-days', '1', '-extfile', f(`${name}.ext`))
  }
  await sign('server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n')
  await sign('client', 'extendedKeyUsage=clientAuth\n')
  return {
    caFile: f('ca.pem'), certFile: f('server.pem'), keyFile: f('server.key'),
    clientCertFile: f('client.pem'), clientKeyFile: f('client.key'), otherCaFile: f('other-ca.pem'),
  }
}
