// Self-healing end to end (issue 11): with containers running, something else damages what tsnet
// made, and tsnet brings it back by itself. A private engine "heal" (netns tse-heal), the built
// plugin as a legacy plugin started with --reconcile-interval 3, busybox containers, and the
// "outside machine" of lib/outside.ts (netns tsed-out, 198.51.100.2) for the published port.
//
// One network hnet (h1 serves :80 and :81, -p 8080:80; h2; hv) and one network hsrc (p1) whose
// subnet hnet's policy lets in on tcp/80. Three paths carry traffic: h2 -> h1 (inside the
// network), p1 -> h1 (across networks, by the policy), outside -> 198.51.100.1:8080 (published).
// Each step checks the three paths, takes a picture of the host (links, rules per chain, sets, the
// bridge's MAC, group, addresses and settings), damages it, waits until the picture is the one
// from before again (timed: within the interval plus a margin), checks the log names the repair,
// checks the three paths again, and that the foreign link, rules and set members planted beside
// tsnet's are untouched. Every step ends with the idempotence check (a reconcile plans nothing).
//
// Steps: a flush of tsnet's chains; a firewall reload (iptables-restore of the ruleset without
// tsnet's parts); a deleted set member (ipset del); a deleted DNAT rule; a joined container's veth
// deleted (reported missing, not made again: only Docker can make the container's end); then,
// with tsnet restarted on the default interval (30 s), a deleted bridge, repaired from the link
// event within seconds, long before the period. About 3.5 minutes.
// Run: npm run build && npx tap run --timeout=900 test/e2e/self-healing.test.ts   (as root)
import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import {
  BB,
  destroyEngine,
  diffSnapshots,
  ensureBusyboxImage,
  expectForwardingClosed,
  forwardingOf,
  nsExec,
  nsExecOk,
  reconcilePlan,
  removeAllContainersAndNetworks,
  runSleeper,
  snapshotHost,
  startEngine,
  startTsnet,
  TSNET_CLI,
  waitFor,
  type Engine,
  type HostSnapshot,
  type TsnetHandle,
} from './lib/index.js';
import { expectIdle, withDiagnostics } from './lib/scenario.js';
import { counterDelta, createOutside, dropCounters, ENGINE_IP, type Outside } from './lib/outside.js';
import { fileSize, logSince, type LogLine } from './lib/resilience.js';
import { run } from './lib/proc.js';

t.setTimeout(600_000);

const TS = ['-d', 'tsnet', '--ipam-driver', 'tsnet'];
/**
 * The period of the reconcile under test, and the margin beyond it: a pass reads every table and
 * set (up to 3 s on a busy 2-core machine), and damage that lands just after a pass looked waits
 * for the rest of that pass, the interval, and the whole next pass.
 */
const INTERVAL_S = 3;
const MARGIN_MS = 7_000;
const REPAIR_LIMIT_MS = INTERVAL_S * 1_000 + MARGIN_MS;
/** The link-event path, with the default 30 s period: one pass 200 ms after the event. */
const EVENT_LIMIT_MS = 5_000;
const SUBNET = '10.84.1.0/24';
const SRC_SUBNET = '10.84.2.0/24';
const PUBLISHED = 8080;
const HTTP_NC = `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc -w 2`;
const REPAIRED = 'reconcile repaired drift on the host';
const MISSING = 'wanted objects are gone and are not made again';
const FAMILIES = [
  { bin: 'iptables', save: 'iptables-save', restore: 'iptables-restore' },
  { bin: 'ip6tables', save: 'ip6tables-save', restore: 'ip6tables-restore' },
] as const;

let E: Engine | undefined;
let ts: TsnetHandle | undefined;
let out: Outside | undefined;
let base: HostSnapshot | undefined;
let forwardingAtBase: { v4: string; v6: string } | undefined;
const figures: Record<string, number> = {};

function scenario(name: string, fn: (t: Test) => Promise<void>) {
  const body = async (tt: Test) => {
    await fn(tt);
    await expectIdle(tt, ts?.running ? ts.socketPath : undefined);
  };
  return t.test(name, (tt) =>
    withDiagnostics(tt, body, (tt) => {
      if (!E) return;
      tt.comment(`--- tail of ${E.stateDir}/tsnet.log:\n${ts?.logTail(30) ?? '(tsnet not started)'}`);
      tt.comment(`--- tail of ${E.logPath}:\n${E.dockerdLogTail(10)}`);
    }),
  );
}

await t.test(`setup: engine heal, the outside namespace, tsnet with --reconcile-interval ${INTERVAL_S}`, async (t) => {
  t.ok(existsSync(TSNET_CLI), `${TSNET_CLI} is built`);
  if (!existsSync(TSNET_CLI)) return;
  E = await startEngine('heal');
  await ensureBusyboxImage(E);
  out = await createOutside(E);
  base = await snapshotHost(E);
  forwardingAtBase = await forwardingOf(E);
  ts = await startTsnet(E, { extraArgs: ['--reconcile-interval', String(INTERVAL_S)] });
  t.ok(ts.running, `tsnet running (pid ${ts.pid})`);
});

if (!E || !ts || !out || !base) {
  t.fail('setup failed: the scenarios are not run');
  await out?.destroy();
  if (E) await destroyEngine(E);
} else {
  const e: Engine = E;
  const o: Outside = out;
  const s0: HostSnapshot = base;
  t.teardown(async () => {
    await o.destroy();
    await destroyEngine(e);
    t.comment(`figures (ms): ${JSON.stringify(figures)}`);
  });

  // ---------- helpers ----------

  const ip4 = (c: string, net: string) => e.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, c]);
  const endpointOf = (c: string, net: string) => e.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").EndpointID}}`, c]);

  interface Probe {
    ok: boolean;
    detail: string;
  }
  const http = async (from: string, host: string, port: number, expect: string): Promise<Probe> => {
    const r = await e.docker(['exec', from, 'sh', '-c', `${HTTP_NC} ${host} ${port}`], { timeoutMs: 20_000 });
    const body = r.stdout.split('\r\n\r\n').slice(1).join('').trim();
    return { ok: r.code === 0 && body.includes(expect), detail: `${(body || r.stderr).trim().slice(0, 120)} (${r.ms} ms)` };
  };
  const fromOutside = async (port: number, expect: string): Promise<Probe> => {
    const r = await o.http(ENGINE_IP, port, expect);
    return { ok: r.ok, detail: `${r.out.split('\r\n\r\n').slice(1).join('').trim() || r.err} (${r.ms} ms)` };
  };

  let h1 = '';
  /**
   * The three paths, at once; each is retried for up to `pollMs` (a repaired bridge or rule may
   * need a moment for ARP). Asserts each and says how long it took.
   */
  const traffic = async (t: Test, when: string, pollMs = 10_000): Promise<void> => {
    const paths: Array<[string, () => Promise<Probe>]> = [
      [`h2 -> h1 ${h1}:80 (same network)`, () => http('h2', h1, 80, 'h1')],
      [`p1 (hsrc) -> h1 ${h1}:80 (the policy)`, () => http('p1', h1, 80, 'h1')],
      [`outside -> ${ENGINE_IP}:${PUBLISHED} (published)`, () => fromOutside(PUBLISHED, 'h1')],
    ];
    await Promise.all(paths.map(async ([what, probe]) => {
      const t0 = Date.now();
      let p = await probe();
      while (!p.ok && Date.now() - t0 < pollMs) {
        await new Promise((r) => setTimeout(r, 200));
        p = await probe();
      }
      t.ok(p.ok, `${when}: ${what}: ${p.detail}${Date.now() - t0 > 1_000 ? ` [after ${Date.now() - t0} ms]` : ''}`);
    }));
  };

  let bridge = '';
  /**
   * iptables-save lines grouped by table and chain: declarations (sorted) and each chain's rules in
   * order. FORWARD's jumps to TSNET-FORWARD and DOCKER-USER are one fact instead, whether tsnet
   * decides first: Docker moves its jump first whenever it creates a network, and tsnet's jump
   * first in DOCKER-USER is then as good as first in FORWARD (edge.test.ts accepts both too).
   */
  const byChain = (lines: readonly string[]): string[] => {
    let table = '';
    const decl: string[] = [];
    const rules = new Map<string, string[]>();
    for (const l of lines) {
      if (l.startsWith('*')) table = l.slice(1);
      else if (l.startsWith(':')) decl.push(`${table} ${l}`);
      else if (l.startsWith('-A ')) {
        const chain = l.split(' ')[1] ?? '';
        rules.set(`${table} ${chain}`, [...(rules.get(`${table} ${chain}`) ?? []), l]);
      }
    }
    const forward = rules.get('filter FORWARD') ?? [];
    const jumpTo = (chain: string) => `-A FORWARD -j ${chain}`;
    const first = forward[0] === jumpTo('TSNET-FORWARD')
      || (forward[0] === jumpTo('DOCKER-USER') && rules.get('filter DOCKER-USER')?.[0] === '-A DOCKER-USER -j TSNET-FORWARD');
    const count = (chain: string) => forward.filter((r) => r === jumpTo(chain)).length;
    rules.set('filter FORWARD', forward.filter((r) => r !== jumpTo('TSNET-FORWARD') && r !== jumpTo('DOCKER-USER')));
    const fact = `filter FORWARD: tsnet decides first ${first}, jumps to TSNET-FORWARD ${count('TSNET-FORWARD')}, to DOCKER-USER ${count('DOCKER-USER')}`;
    return [...decl.sort(), fact, ...[...rules].sort(([a], [b]) => a.localeCompare(b)).map(([k, r]) => `${k}: ${r.join(' | ')}`)];
  };
  /** What "as before" means: links, rules per chain (both families), set members, and the bridge's details. */
  const picture = async (): Promise<string[]> => {
    const s = await snapshotHost(e);
    const lines = [
      ...s.links.map((l) => `link ${l}`),
      ...byChain(s.iptables).map((l) => `v4 ${l}`),
      ...byChain(s.ip6tables).map((l) => `v6 ${l}`),
      ...s.ipsets.map((l) => `ipset ${l}`),
    ];
    if (bridge) {
      const link = await nsExec(e, ['ip', '-j', '-d', 'addr', 'show', 'dev', bridge]);
      if (link.code !== 0) return [...lines, `bridge ${bridge} absent`];
      const [l] = JSON.parse(link.stdout) as Array<{ address?: string; group?: string; mtu?: number; flags?: string[]; addr_info?: Array<{ family: string; local: string; prefixlen: number; scope: string }> }>;
      const addrs = (l?.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`).sort();
      const sys = await nsExec(e, ['cat', `/proc/sys/net/ipv4/conf/${bridge}/route_localnet`, `/proc/sys/net/ipv6/conf/${bridge}/accept_ra`]);
      lines.push(`bridge ${bridge} mac ${l?.address} group ${l?.group} mtu ${l?.mtu} up ${l?.flags?.includes('UP')} addrs ${addrs.join(',')}`);
      lines.push(`bridge ${bridge} route_localnet,accept_ra ${sys.stdout.trim().split('\n').join(',')}`);
    }
    return lines;
  };
  const differences = (a: readonly string[], b: readonly string[]): string[] => {
    const sa = new Set(a);
    const sb = new Set(b);
    return [...a.filter((x) => !sb.has(x)).map((x) => `- ${x}`), ...b.filter((x) => !sa.has(x)).map((x) => `+ ${x}`)];
  };

  /** Polls until the host is the picture `before` again; resolves with the time from `since`, or -1. */
  const repairedWithin = async (before: readonly string[], since: number, limitMs: number): Promise<{ ms: number; left: string[] }> => {
    let left: string[] = ['(not looked yet)'];
    for (;;) {
      left = differences(before, await picture());
      if (left.length === 0) return { ms: Date.now() - since, left };
      if (Date.now() - since > limitMs) return { ms: -1, left };
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  /** tsnet's repair lines since byte `off` (each lists the changes a reconcile pass made). */
  const repairs = async (off: number): Promise<LogLine[]> => (await logSince(ts!.logPath, off)).filter((l) => l.msg === REPAIRED);
  const repairedKeys = (lines: readonly LogLine[]) => lines.flatMap((l) => (Array.isArray(l.repaired) ? (l.repaired as string[]) : []));
  /** Waits (briefly: the line is written when the pass ends) for a repair line naming a change that matches `re`. */
  const repairLine = (off: number, re: RegExp) =>
    waitFor(async () => (await repairs(off)).find((l) => repairedKeys([l]).some((k) => re.test(k))), { timeoutMs: 3_000, what: `a "${REPAIRED}" line naming ${re}` }).catch(() => undefined);

  // ---------- foreign objects beside tsnet's: no repair may touch them ----------

  const FOREIGN_RULE = ['-i', 'hsforeign0', '-o', 'hsforeign0', '-m', 'comment', '--comment', 'not-tsnet', '-j', 'ACCEPT'];
  const FOREIGN_NAT = ['-p', 'tcp', '--dport', '9', '-m', 'comment', '--comment', 'not-tsnet', '-j', 'RETURN'];
  /** What of the foreign objects is gone or changed ([] when all are there as planted). */
  const foreignProblems = async (): Promise<string[]> => {
    const problems: string[] = [];
    const links = JSON.parse(await nsExecOk(e, ['ip', '-j', '-d', 'link', 'show'])) as Array<{ ifname: string; ifalias?: string; master?: string }>;
    const link = (n: string) => links.find((l) => l.ifname === n);
    if (!link('hsforeign0')) problems.push('link hsforeign0 is gone');
    if (link('hsfa0')?.master !== 'hsforeign0' || link('hsfa0')?.ifalias !== 'other:owner:1') problems.push(`link hsfa0 changed: ${JSON.stringify(link('hsfa0'))}`);
    for (const f of FAMILIES) {
      if ((await nsExec(e, [f.bin, '-w', '-C', 'FORWARD', ...FOREIGN_RULE])).code !== 0) problems.push(`${f.bin}: the foreign FORWARD rule is gone`);
      if ((await nsExec(e, [f.bin, '-w', '-t', 'nat', '-C', 'PREROUTING', ...FOREIGN_NAT])).code !== 0) problems.push(`${f.bin}: the foreign nat PREROUTING rule is gone`);
    }
    if ((await nsExec(e, ['ipset', 'test', 'hsforeign', '10.98.0.0/24'])).code !== 0) problems.push('ipset hsforeign lost 10.98.0.0/24');
    if ((await nsExec(e, ['ipset', 'test', 'tsnet-masq4', '10.97.0.0/24'])).code !== 0) problems.push("the untagged member 10.97.0.0/24 of tsnet's set tsnet-masq4 is gone");
    return problems;
  };

  /** The common frame of a repair step: traffic, picture, damage, timed repair, log, traffic, foreign objects. */
  const step = async (t: Test, what: string, damage: () => Promise<void>, expectRepair: RegExp[], limitMs = REPAIR_LIMIT_MS): Promise<{ ms: number; lines: LogLine[] }> => {
    await traffic(t, `before ${what}`);
    const before = await picture();
    const off = await fileSize(ts!.logPath);
    const t0 = Date.now();
    await damage();
    const damaged = differences(before, await picture());
    t.ok(damaged.length > 0, `${what} changed the host (${damaged.length} difference(s), e.g. ${damaged.slice(0, 2).join('; ')})`);
    const r = await repairedWithin(before, t0, limitMs);
    t.ok(r.ms >= 0, `the host is as before ${r.ms >= 0 ? `${r.ms} ms` : 'not'} after ${what} (limit ${limitMs} ms)${r.ms < 0 ? `; still different:\n  ${r.left.slice(0, 12).join('\n  ')}` : ''}`);
    const lines: LogLine[] = [];
    for (const re of expectRepair) {
      const line = await repairLine(off, re);
      t.ok(line, `tsnet logged "${REPAIRED}" naming ${re}: ${JSON.stringify(line?.repaired ?? repairedKeys(await repairs(off))).slice(0, 300)}`);
      if (line) lines.push(line);
    }
    await traffic(t, `after ${what}`);
    t.same(await foreignProblems(), [], 'the foreign link, rules, set and set member beside tsnet\'s are untouched');
    t.ok(ts!.running, 'tsnet kept running');
    return { ms: r.ms, lines };
  };

  // ---------- the network ----------

  await scenario('shared: networks hnet (policy, published port) and hsrc, four containers, foreign objects beside', async (t) => {
    await nsExecOk(e, ['ip', 'link', 'add', 'hsforeign0', 'type', 'bridge']);
    await nsExecOk(e, ['ip', 'link', 'add', 'hsfa0', 'type', 'veth', 'peer', 'name', 'hsfb0']);
    await nsExecOk(e, ['ip', 'link', 'set', 'dev', 'hsfa0', 'alias', 'other:owner:1', 'master', 'hsforeign0']);
    await nsExecOk(e, ['ipset', 'create', 'hsforeign', 'hash:net']);
    await nsExecOk(e, ['ipset', 'add', 'hsforeign', '10.98.0.0/24']);
    for (const f of FAMILIES) {
      await nsExecOk(e, [f.bin, '-w', '-A', 'FORWARD', ...FOREIGN_RULE]);
      await nsExecOk(e, [f.bin, '-w', '-t', 'nat', '-A', 'PREROUTING', ...FOREIGN_NAT]);
    }
    await e.dockerOk(['network', 'create', ...TS, '--subnet', SRC_SUBNET, 'hsrc']);
    await e.dockerOk(['network', 'create', ...TS, '--subnet', SUBNET, '-o', `tsnet.allow=${SRC_SUBNET} tcp/80`, 'hnet']);
    bridge = `tsbr-${(await e.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'hnet'])).slice(0, 10)}`;
    // an untagged member in one of tsnet's own sets is not tsnet's either
    await nsExecOk(e, ['ipset', 'add', 'tsnet-masq4', '10.97.0.0/24']);
    const serve = 'mkdir -p /www && echo h1 > /www/index.html && httpd -p 80 -h /www && httpd -p 81 -h /www && exec sleep 3600';
    await e.dockerOk(['run', '-d', '--init', '--name', 'h1', '--network', 'hnet', '-p', `${PUBLISHED}:80`, BB, 'sh', '-c', serve]);
    await Promise.all([runSleeper(e, 'h2', ['--network', 'hnet']), runSleeper(e, 'hv', ['--network', 'hnet']), runSleeper(e, 'p1', ['--network', 'hsrc'])]);
    h1 = await ip4('h1', 'hnet');
    await waitFor(async () => (await http('h2', h1, 80, 'h1')).ok, { timeoutMs: 15_000, what: 'h1 serving' });
    await traffic(t, 'at the start');
    // the policy path is the policy: p1 reaches h1 on tcp/80 only, and the firewall refuses :81
    const c0 = await dropCounters(e);
    const p81 = await http('p1', h1, 81, 'h1');
    const d = counterDelta(c0, await dropCounters(e), ['tsnet: not allowed']);
    t.notOk(p81.ok, `control: p1 -> h1:81 (not in the policy) is refused: ${p81.detail}`);
    t.ok(d > 0, `control: and "tsnet: not allowed" counted it (${d})`);
    t.same(await foreignProblems(), [], 'the foreign objects are in place');
  });

  // ---------- periodic repairs (interval 3 s) ----------

  await scenario("tsnet's chains flushed (both families, every table): back within the interval", async (t) => {
    const r = await step(t, "a flush of tsnet's chains", async () => {
      for (const f of FAMILIES) {
        for (const c of ['TSNET-FORWARD', 'TSNET-FROM', 'TSNET-TO']) await nsExecOk(e, [f.bin, '-w', '-F', c]);
        for (const c of ['TSNET-DNAT', 'TSNET-POSTROUTING']) await nsExecOk(e, [f.bin, '-w', '-t', 'nat', '-F', c]);
        await nsExecOk(e, [f.bin, '-w', '-t', 'raw', '-F', 'TSNET-RAW']);
      }
    }, [/^update chains$/, new RegExp(`^create dnat 4 .*--dport ${PUBLISHED}\\b`)]);
    figures.chainsFlushedMs = r.ms;
  });

  await scenario('a firewall reload (iptables-restore of the rules without tsnet\'s): back within the interval', async (t) => {
    const r = await step(t, 'a firewall reload', async () => {
      for (const f of FAMILIES) {
        const saved = (await nsExecOk(e, [f.save])).split('\n').filter((l) => !l.includes('TSNET')).join('\n');
        const res = await run('nsenter', [`--net=${e.netnsPath}`, '--', f.restore, '-w', '10'], { input: `${saved}\n` });
        if (res.code !== 0) throw new Error(`${f.restore} of the rules without tsnet's: ${res.stderr.trim()}`);
      }
      const left = (await nsExecOk(e, ['iptables-save'])).split('\n').filter((l) => l.includes('TSNET'));
      if (left.length) throw new Error(`the reload left tsnet's rules: ${left.join(' | ')}`);
    }, [/^update chains$/, new RegExp(`^create dnat 4 .*--dport ${PUBLISHED}\\b`)]);
    figures.firewallReloadMs = r.ms;
  });

  await scenario('a member of tsnet-src4 deleted (ipset del): back within the interval', async (t) => {
    const member = `${SUBNET},${bridge}`;
    const r = await step(t, `ipset del tsnet-src4 ${member}`, async () => {
      await nsExecOk(e, ['ipset', 'del', 'tsnet-src4', member]);
    }, [new RegExp(`^create set tsnet-src4 ${SUBNET.replace(/[./]/g, '\\$&')},${bridge}$`)]);
    figures.setMemberMs = r.ms;
  });

  await scenario(`the DNAT rule of ${PUBLISHED} deleted: back within the interval`, async (t) => {
    const r = await step(t, `the DNAT rule of ${PUBLISHED} deleted`, async () => {
      const rules = (await nsExecOk(e, ['iptables', '-w', '-t', 'nat', '-S', 'TSNET-DNAT'])).split('\n').filter((l) => l.startsWith('-A '));
      const n = rules.findIndex((l) => new RegExp(`--dport ${PUBLISHED}\\b`).test(l)) + 1;
      if (n === 0) throw new Error(`no DNAT rule for ${PUBLISHED} in ${rules.join(' | ')}`);
      await nsExecOk(e, ['iptables', '-w', '-t', 'nat', '-D', 'TSNET-DNAT', String(n)]);
    }, [new RegExp(`^create dnat 4 .*--dport ${PUBLISHED}\\b`)]);
    figures.dnatRuleMs = r.ms;
  });

  await scenario("a joined container's veth deleted: reported missing once, not made again, nothing breaks", async (t) => {
    const ep = await endpointOf('hv', 'hnet');
    const veth = `tsv${ep.slice(0, 12)}`;
    t.equal((await e.docker(['exec', 'hv', 'ip', 'link', 'show', 'eth0'])).code, 0, `control: hv has eth0 (the peer of ${veth})`);
    const off = await fileSize(ts!.logPath);
    const t0 = Date.now();
    await nsExecOk(e, ['ip', 'link', 'del', veth]);
    t.not((await e.docker(['exec', 'hv', 'ip', 'link', 'show', 'eth0'])).code, 0, "hv's eth0 went with it");
    const said = await waitFor(async () => (await logSince(ts!.logPath, off)).find((l) => l.msg === MISSING), { timeoutMs: REPAIR_LIMIT_MS, intervalMs: 100, what: `"${MISSING}"` }).catch(() => undefined);
    t.ok(said, `tsnet logged "${MISSING}" ${Date.now() - t0} ms after the deletion`);
    t.same(said?.missingObjects, [`link ${veth}`], `naming the veth only: ${JSON.stringify(said?.missingObjects)}`);
    // two more periodic passes: none may make the veth again, or say the same thing again
    await new Promise((r) => setTimeout(r, 2 * INTERVAL_S * 1_000 + 500));
    const links = JSON.parse(await nsExecOk(e, ['ip', '-j', 'link', 'show'])) as Array<{ ifname: string }>;
    t.notOk(links.some((l) => l.ifname === veth), `${veth} was not made again over ${Date.now() - t0} ms`);
    const lines = await logSince(ts!.logPath, off);
    t.equal(lines.filter((l) => l.msg === MISSING).length, 1, 'said once, not at every pass');
    t.same(repairedKeys(lines.filter((l) => l.msg === REPAIRED)).filter((k) => k.includes(veth)), [], 'no pass tried to change it');
    t.same(lines.filter((l) => (l.level ?? 0) >= 50).map((l) => l.msg), [], 'no error in the log (no failed pass, no crash)');
    const plan = await reconcilePlan(ts!.socketPath);
    t.same({ changes: plan.Changes, missing: plan.Missing }, { changes: [], missing: [`link ${veth}`] }, 'a dry run reports it missing and plans no change');
    t.ok(ts!.running, 'tsnet kept running');
    await traffic(t, 'with hv cut off');
    const rm = await e.docker(['rm', '-f', 'hv']);
    t.equal(rm.code, 0, `docker rm -f hv works without its veth ${rm.stderr.trim()}`);
    t.same(await foreignProblems(), [], 'the foreign objects are untouched');
    // the idempotence check that ends the scenario: nothing missing once Docker removed the endpoint
  });

  // ---------- the link-event path ----------

  await scenario('tsnet restarted with the default interval (30 s): the boot reconcile only holds the published port again', async (t) => {
    await ts!.stop();
    const off = await fileSize(ts!.logPath);
    ts = await startTsnet(e);
    const boot = await waitFor(async () => (await logSince(ts!.logPath, off)).find((l) => l.msg === 'boot reconcile done'), { timeoutMs: 30_000, what: 'boot reconcile done' });
    // the socket that held 8080 went with the old process; everything else is in place
    const changed = (await logSince(ts!.logPath, off)).filter((l) => typeof l.host === 'string' && (l.level ?? 0) >= 30).map((l) => `${String(l.host)} ${String(l.port ?? l.link ?? '')}`);
    t.same(changed, [`port.held ${PUBLISHED}`], `the boot reconcile changed nothing but holding ${PUBLISHED} again (${boot.ms} ms)`);
    t.equal(boot.changes, 1, 'one change');
    await traffic(t, 'after the restart');
  });

  await scenario(`the bridge deleted (ip link del): back from the link event in under ${EVENT_LIMIT_MS} ms, long before the 30 s period`, async (t) => {
    const r = await step(t, `ip link del ${bridge}`, async () => {
      await nsExecOk(e, ['ip', 'link', 'del', bridge]);
    }, [new RegExp(`^create link ${bridge}$`)], EVENT_LIMIT_MS);
    figures.bridgeDeletedMs = r.ms;
    t.equal(r.lines[0]?.reconcile, 'event', `the pass that repaired it was the one the link event started (${String(r.lines[0]?.reconcile)})`);
    const lines = await logSince(ts!.logPath, 0);
    const why = lines.filter((l) => l.msg === "a tsnet link changed behind tsnet's back: reconciling now").map((l) => String(l.why));
    t.ok(why.includes(`link ${bridge} was deleted`), `tsnet logged the link event: ${JSON.stringify(why.slice(-3))}`);
    t.comment(`repaired: ${JSON.stringify(r.lines[0]?.repaired)}`);
  });

  // ---------- teardown ----------

  await scenario('teardown: foreign objects and everything else removed, host back to the base snapshot', async (t) => {
    await nsExecOk(e, ['ipset', 'del', 'tsnet-masq4', '10.97.0.0/24']);
    for (const f of FAMILIES) {
      await nsExecOk(e, [f.bin, '-w', '-D', 'FORWARD', ...FOREIGN_RULE]);
      await nsExecOk(e, [f.bin, '-w', '-t', 'nat', '-D', 'PREROUTING', ...FOREIGN_NAT]);
    }
    await nsExecOk(e, ['ip', 'link', 'del', 'hsfa0']);
    await nsExecOk(e, ['ip', 'link', 'del', 'hsforeign0']);
    await nsExecOk(e, ['ipset', 'destroy', 'hsforeign']);
    t.same(await removeAllContainersAndNetworks(e), [], 'all containers and networks removed');
    await expectIdle(t, ts!.socketPath);
    const exit = await ts!.stop();
    t.same(exit, { code: 0, signal: null }, 'tsnet exits 0 on SIGTERM');
    const now = await snapshotHost(e);
    const expected = expectForwardingClosed(s0, forwardingAtBase!, await forwardingOf(e));
    t.same(diffSnapshots(expected, now, ['links', 'iptables', 'ip6tables', 'ipsets']), [], 'links, iptables, ip6tables and ipsets identical to the base snapshot');
    t.same(now.storeFiles, [], 'the tsnet store holds no records');
  });
}
