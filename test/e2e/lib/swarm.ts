// A swarm across private engines, with tsnet's managed plugin on every node as users install it
// (docs/overlay.md): built once with plugin/build.sh, created on each engine under the same name,
// set to global scope, enabled. A swarm needs the plugin on the managers too: the leader runs
// AllocateNetwork.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine } from './engine.js';
import { buildPlugin, pluginId, pluginSocketPath } from './plugin.js';
import { pluginPost } from './tsnet.js';
import { waitFor } from './wait.js';

export interface SwarmNode {
  e: Engine;
  /** Its address on the underlay: advertise, listen and data-path address. */
  ip: string;
  /** The plugin's ID on this engine (its socket is under the engine's plugins dir). */
  pluginId?: string;
}

/**
 * plugin/build.sh --name NAME on the first node (keeping the build directory), then `docker
 * plugin create` from that directory on the others; on each: `settings(node)` with `docker plugin
 * set`, then enable. The nodes are separate engines: the creates, and each node's set and enable,
 * run side by side. Returns build.sh's facts.
 */
export async function installPlugin(nodes: SwarmNode[], name: string, settings: (n: SwarmNode) => string[]): Promise<Record<string, string>> {
  const [first, ...rest] = nodes;
  if (!first) throw new Error('no nodes');
  const dir = join(first.e.stateDir, 'plugin-build');
  const built = await buildPlugin(first.e, ['--name', name.replace(/:.*$/, ''), '--build-dir', dir, '--keep']);
  await Promise.all(rest.map((n) => n.e.dockerOk(['plugin', 'create', name, dir], { timeoutMs: 180_000 })));
  await Promise.all(nodes.map(async (n) => {
    mkdirSync(join(n.e.stateDir, 'tsnet-state'), { recursive: true });
    await n.e.dockerOk(['plugin', 'set', name, ...settings(n)]);
    await n.e.dockerOk(['plugin', 'enable', name], { timeoutMs: 60_000 });
    n.pluginId = await pluginId(n.e, name);
  }));
  return built.facts;
}

export async function swarmInit(manager: SwarmNode): Promise<string> {
  await manager.e.dockerOk(['swarm', 'init', '--advertise-addr', manager.ip, '--listen-addr', `${manager.ip}:2377`]);
  return manager.e.dockerOk(['swarm', 'join-token', '-q', 'worker']);
}

export async function swarmJoin(worker: SwarmNode, manager: SwarmNode, token: string): Promise<void> {
  await worker.e.dockerOk(['swarm', 'join', '--advertise-addr', worker.ip, '--listen-addr', `${worker.ip}:2377`, '--token', token, `${manager.ip}:2377`], { timeoutMs: 60_000 });
}

/** Waits until the manager lists `count` nodes Ready. */
export async function waitReady(manager: SwarmNode, count: number, timeoutMs = 60_000): Promise<void> {
  await waitFor(async () => {
    const states = (await manager.e.dockerOk(['node', 'ls', '--format', '{{.Status}}'])).split('\n').filter(Boolean);
    return states.filter((s) => s === 'Ready').length === count;
  }, { timeoutMs, intervalMs: 500, what: `${count} swarm nodes Ready` });
}

/** Calls one of tsnet's own verbs on a node's plugin socket; the parsed answer. */
export async function pluginCall(n: SwarmNode, method: string, body: unknown): Promise<Record<string, unknown>> {
  if (!n.pluginId) throw new Error(`no plugin on ${n.e.name}`);
  const r = await pluginPost(pluginSocketPath(n.e, n.pluginId), `/${method}`, JSON.stringify(body), 30_000);
  return JSON.parse(r.body || '{}') as Record<string, unknown>;
}

/** The tasks of a service that are running: node hostname → container IPs on `network`. */
export async function runningTasks(manager: SwarmNode, service: string): Promise<Array<{ node: string; id: string }>> {
  const out = await manager.e.dockerOk(['service', 'ps', service, '--filter', 'desired-state=running', '--format', '{{.Node}} {{.ID}} {{.CurrentState}}']);
  return out.split('\n').filter((l) => / Running /.test(l)).map((l) => {
    const [node, id] = l.split(' ');
    return { node: node ?? '', id: id ?? '' };
  });
}
