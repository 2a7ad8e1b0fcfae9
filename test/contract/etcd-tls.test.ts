// EtcdStore over TLS with client certificates, against a real etcd that requires them: the CA,
// certificate and key files reach the client; without them, or trusting another CA, nothing does.
import t from 'tap'
import { TsnetError } from '../../src/errors.js'
import { EtcdStore } from '../../src/store/etcd-store.js'
import type { EtcdTls } from '../../src/store/etcd-client.js'
import { etcdMissing, startEtcdCluster } from './lib/etcd-cluster.js'
import { makeTestCerts } from './lib/test-certs.js'

if (etcdMissing) {
  t.plan(0, `EtcdStore over TLS against a real etcd: ${etcdMissing}`)
} else {
  const certs = await makeTestCerts(t)
  const cluster = await startEtcdCluster(t, 1, certs)
  const open = (tls: EtcdTls | undefined) => {
    const store = new EtcdStore({ endpoints: cluster.endpoints, cluster: 'tls', timeoutMs: 2000, ...(tls ? { tls } : {}) })
    t.teardown(() => store.close())
    return store
  }
  const outcome = async (store: EtcdStore) => {
    try {
      await store.put('tls', 'probe', 1)
      return 'ok'
    } catch (err) {
      return err instanceof TsnetError ? err.kind : `foreign: ${String(err)}`
    }
  }

  t.test('with the CA, certificate and key files: the store works', async (t) => {
    t.match(cluster.endpoints[0], /^https:\/\/127\.0\.0\.1:/, 'the member serves https')
    const store = open({ caFile: certs.caFile, certFile: certs.clientCertFile, keyFile: certs.clientKeyFile })
    t.equal(await outcome(store), 'ok', 'a write')
    t.equal((await store.get('tls/probe'))?.value, 1, 'a read')
  })

  t.test('without them, or trusting another CA: refused as unavailable', async (t) => {
    t.equal(await outcome(open({ caFile: certs.caFile })), 'unavailable', 'the right CA but no client certificate')
    t.equal(await outcome(open({ caFile: certs.otherCaFile, certFile: certs.clientCertFile, keyFile: certs.clientKeyFile })), 'unavailable', 'a client certificate but another CA')
    t.equal(await outcome(open(undefined)), 'unavailable', 'no TLS files at all (the system\'s CAs)')
  })

  t.test('trusting another CA: the message says why, also once the member\'s circuit breaker is open', async (t) => {
    const store = open({ caFile: certs.otherCaFile, certFile: certs.clientCertFile, keyFile: certs.clientKeyFile })
    const messages: string[] = []
    for (let i = 0; i < 4; i++) {
      try {
        await store.put('tls', 'probe', 1)
      } catch (err) {
        messages.push(err instanceof Error ? err.message : String(err))
      }
    }
    t.equal(messages.length, 4, 'every write failed')
    for (const m of messages) t.match(m, /certificate|self[- ]signed|verify/i, `the certificate problem is named: ${m}`)
  })

  t.test('unreadable files are refused at construction with kind invalid', async (t) => {
    t.throws(() => open({ caFile: '/nonexistent/ca.pem' }), { name: 'TsnetError', kind: 'invalid', message: /cannot read the etcd CA certificate \/nonexistent\/ca\.pem/ })
    t.throws(() => open({ caFile: certs.caFile, certFile: certs.clientCertFile }), { kind: 'invalid', message: /both its certificate and its key/ })
  })
}
