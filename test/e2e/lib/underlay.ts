// Several private engines joined by an underlay, for multi-host tests on one machine. The
// underlay is a bridge in a namespace of its own (tse-<name>), so the root namespace's firewall
// and br_netfilter never see its frames; each engine's namespace gets an eth0 on it, and an
// "outside" namespace stands for the world beyond the hosts. Every namespace is made through
// createEngineNetns, so the e2e cleanup (t.teardown, exit handlers, the reaper) sweeps it and
// every process in it, also when the test dies.
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createEngineNetns, destroyEngine, nsExecOk, type Engine } from './engine.js';
import { track } from './cleanup.js';
import { sleep } from './proc.js';

export interface Underlay {
  /** The namespace holding the bridge (an Engine without a dockerd, for cleanup). */
  ns: Engine;
  prefix: number;
  /** Gives `e`'s namespace an eth0 on the underlay with `ip`. */
  attach(e: Engine, ip: string): Promise<void>;
  /** Cuts `e` off the underlay (its eth0 down: as a power cut looks to the others). */
  cut(e: Engine): Promise<void>;
  destroy(): Promise<void>;
}

const BRIDGE = 'ul0';

export async function createUnderlay(name: string, prefix = 24): Promise<Underlay> {
  const ns = await createEngineNetns(name);
  await nsExecOk(ns, ['ip', 'link', 'add', BRIDGE, 'type', 'bridge']);
  await nsExecOk(ns, ['ip', 'link', 'set', BRIDGE, 'up']);
  let n = 0;
  return {
    ns,
    prefix,
    async attach(e, ip) {
      const outer = `up${n++}`;
      await nsExecOk(ns, ['ip', 'link', 'add', outer, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', e.netnsPath]);
      await nsExecOk(ns, ['ip', 'link', 'set', outer, 'master', BRIDGE, 'up']);
      await nsExecOk(e, ['ip', 'addr', 'add', `${ip}/${prefix}`, 'dev', 'eth0']);
      await nsExecOk(e, ['ip', 'link', 'set', 'eth0', 'up']);
    },
    async cut(e) {
      await nsExecOk(e, ['ip', 'link', 'set', 'eth0', 'down']);
    },
    async destroy() {
      await destroyEngine(ns);
    },
  };
}

/**
 * The outside world: a namespace on the underlay serving TEXT over HTTP on port 80 (busybox
 * httpd, swept with the namespace).
 */
export async function createOutside(name: string, underlay: Underlay, ip: string, text: string): Promise<Engine> {
  const ns = await createEngineNetns(name);
  await underlay.attach(ns, ip);
  const www = join(ns.stateDir, 'www');
  mkdirSync(www, { recursive: true });
  writeFileSync(join(www, 'index.html'), `${text}\n`);
  const child = spawn('nsenter', [`--net=${ns.netnsPath}`, '--', 'busybox', 'httpd', '-f', '-p', '80', '-h', www], { stdio: 'ignore', detached: true });
  child.unref();
  if (child.pid) {
    const untrack = track({ kind: 'pid', pid: child.pid, what: 'outside httpd' });
    const pid = child.pid;
    ns.attached.add({
      stop: async () => {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
        untrack();
      },
    });
  }
  await sleep(100);
  return ns;
}
