#!/bin/bash
# How a container can sit on a VXLAN device: raw (the device in the container), a macvlan child of
# it, or a veth on a bridge with the device as a port. Namespaces only, no firewall; round trip
# (busybox ping -A) and TCP throughput (iperf3). The measurement behind docs/overlay.md, "Data path".
#   bash bench/vxlan-attach.sh
set -u
# iperf3 is not a test dependency: install it as the other benches do (bench/datapath.ts ensureIperf).
command -v iperf3 >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iperf3 >/dev/null
P=mvx
cleanup() { for n in u1 u2 c1 c2; do ip netns del $P-$n 2>/dev/null; done; }
cleanup; trap cleanup EXIT
for n in u1 u2 c1 c2; do ip netns add $P-$n; ip -n $P-$n link set lo up; done
ip link add $P-a netns $P-u1 type veth peer name $P-b netns $P-u2
ip -n $P-u1 addr add 192.168.77.1/24 dev $P-a; ip -n $P-u1 link set $P-a up
ip -n $P-u2 addr add 192.168.77.2/24 dev $P-b; ip -n $P-u2 link set $P-b up
setup() { # mode
  for i in 1 2; do
    u=$P-u$i; c=$P-c$i; me=192.168.77.$i; peer=192.168.77.$((3-i))
    for l in vx0 mv0 ce0; do ip -n $c link del $l 2>/dev/null; done; for l in vx0 br0 ve0; do ip -n $u link del $l 2>/dev/null; done
    ip -n $u link add vx0 type vxlan id 100 local $me dstport 4800 learning ageing 300
    ip -n $u link set vx0 mtu 1450
    bridge -n $u fdb append 00:00:00:00:00:00 dev vx0 dst $peer
    case $1 in
      raw) ip -n $u link set vx0 netns $c; ip -n $c addr add 10.99.0.$i/24 dev vx0; ip -n $c link set vx0 up ;;
      macvlan) ip -n $u link set vx0 up; ip -n $u link add mv0 link vx0 type macvlan mode bridge; ip -n $u link set mv0 netns $c
               ip -n $c addr add 10.99.0.$i/24 dev mv0; ip -n $c link set mv0 up ;;
      bridge) ip -n $u link add br0 type bridge; ip -n $u link set br0 mtu 1450 up; ip -n $u link set vx0 master br0 up
              ip -n $u link add ve0 mtu 1450 type veth peer name ce0 netns $c; ip -n $u link set ve0 master br0 up
              ip -n $c addr add 10.99.0.$i/24 dev ce0; ip -n $c link set ce0 up ;;
    esac
  done
  ip netns exec $P-c1 busybox ping -c 3 -W 1 10.99.0.2 >/dev/null || echo "$1: NO PING"
}
rtt() { ip netns exec $P-c1 busybox ping -q -A -c ${N:-2000} 10.99.0.2 | sed -n 's#.*= [0-9.]*/\([0-9.]*\)/.*#\1#p'; }
for round in 1 2 3; do
  for m in raw macvlan bridge; do setup $m; sleep 0.3; echo "$round $m avg_ms $(rtt)"; done
done
tput() { ip netns exec $P-c2 iperf3 -s -1 -D -p 5299 >/dev/null 2>&1; sleep 0.3; ip netns exec $P-c1 iperf3 -c 10.99.0.2 -p 5299 -t 2 -J | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9,2))'; }
for round in 1 2; do for m in raw macvlan bridge; do setup $m; sleep 0.3; echo "$round $m Gbit/s $(tput)"; done; done
