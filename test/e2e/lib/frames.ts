// Raw Ethernet frames for L2 isolation tests: what a container with CAP_NET_RAW can send.
// The sender writes whole frames (any destination and source MAC) on an AF_PACKET socket in
// the container's network namespace; the listener counts frames carrying a marker on an
// interface of another namespace. The EtherType is 0x88b5 (IEEE local experimental), so no
// stack answers or forwards them: a frame is seen only where the link layer delivers it.
import { spawn } from 'node:child_process';
import { runOk, sysEnv } from './proc.js';

const ETHERTYPE = 0x88b5;

// An interface's index (SIOCGIFINDEX) or MAC (SIOCGIFHWADDR) from the socket's own namespace:
// under nsenter --net, /sys still shows the namespace that mounted it.
const IFREQ_PL = `sub ifreq { my ($s, $if, $req) = @_; my $r = pack('a16 a24', $if, ''); ioctl($s, $req, $r) or die "no interface $if: $!"; $r }`;

// argv: ifname dst-mac count marker. Source MAC: the interface's own.
const SEND_PL = `
use strict; use Socket;
my ($if, $dst, $count, $marker) = @ARGV;
my $mac = sub { my $m = shift; $m =~ s/://g; pack('H12', $m) };
socket(my $s, 17, SOCK_RAW, 0) or die "socket: $!";
${IFREQ_PL}
my $ix = unpack('i', substr(ifreq($s, $if, 0x8933), 16, 4));
my $src = substr(ifreq($s, $if, 0x8927), 18, 6);
my $to = pack('S n i S C C a8', 17, ${ETHERTYPE}, $ix, 0, 0, 6, $mac->($dst));
my $frame = $mac->($dst) . $src . pack('n', ${ETHERTYPE}) . $marker . ("\\0" x 46);
for (1..$count) { defined(send($s, $frame, 0, $to)) or die "send: $!"; select(undef, undef, undef, 0.005) }
print "sent $count\\n";
`;

// argv: ifname seconds marker. Until SIGINT (or the seconds pass), then prints how many frames
// arriving on the interface (not outgoing ones) carried the marker. ETH_P_ALL: a tap sees a bridge
// port's frames before the bridge takes them.
const LISTEN_PL = `
use strict; use Socket;
my ($if, $secs, $marker) = @ARGV;
socket(my $s, 17, SOCK_RAW, unpack('S', pack('n', 3))) or die "socket: $!";
${IFREQ_PL}
my $ix = unpack('i', substr(ifreq($s, $if, 0x8933), 16, 4));
bind($s, pack('S n i S C C a8', 17, 3, $ix, 0, 0, 0, '')) or die "bind: $!";
my ($n, $end) = (0, time + $secs);
$SIG{INT} = sub { print "got $n\\n"; exit 0 };
$| = 1; print "ready\\n";
while ((my $left = $end - time) > 0) {
  my $rin = ''; vec($rin, fileno($s), 1) = 1;
  next unless select(my $rout = $rin, undef, undef, $left) > 0;
  my $from = recv($s, my $buf, 2048, 0); next unless defined $from;
  my $pkttype = unpack('C', substr($from, 10, 1));
  $n++ if $pkttype != 4 && substr($buf, 12, 2) eq pack('n', ${ETHERTYPE}) && index($buf, $marker) >= 0;
}
print "got $n\\n";
`;

/** Sends `count` frames to `dstMac` out of `ifname` in the namespace at `nsPath`. */
export async function sendFrames(nsPath: string, ifname: string, dstMac: string, count: number, marker: string): Promise<void> {
  await runOk('nsenter', [`--net=${nsPath}`, '--', 'perl', '-e', SEND_PL, ifname, dstMac, String(count), marker], { timeoutMs: 20_000 });
}

export interface Listener {
  /** Stops listening; resolves to the number of marked frames that arrived. */
  stop(): Promise<number>;
}

/** Starts counting frames carrying `marker` that arrive on `ifname` in the namespace at `nsPath`. */
export async function listenFrames(nsPath: string, ifname: string, marker: string): Promise<Listener> {
  const child = spawn('nsenter', [`--net=${nsPath}`, '--', 'perl', '-e', LISTEN_PL, ifname, '120', marker], { env: sysEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((res) => child.on('close', () => res()));
  const t0 = Date.now();
  while (!out.includes('ready')) {
    if (child.exitCode !== null || Date.now() - t0 > 5_000) {
      child.kill('SIGKILL');
      throw new Error(`frame listener on ${ifname} did not start: ${err.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    async stop() {
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGINT');
      await exited;
      const m = /got (\d+)/.exec(out);
      if (!m) throw new Error(`frame listener on ${ifname} printed no count: ${out.trim()} ${err.trim()}`);
      return Number(m[1]);
    },
  };
}

/** Runs `send` while the listeners count, and stops them whatever happens; resolves to their counts. */
export async function countWhile(listeners: readonly Listener[], send: () => Promise<void>): Promise<number[]> {
  let failure: unknown;
  try {
    await send();
  } catch (err) {
    failure = err ?? new Error('sending frames failed');
  }
  const counts = await Promise.all(listeners.map((l) => l.stop()));
  if (failure !== undefined) throw failure;
  return counts;
}
