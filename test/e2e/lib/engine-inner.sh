#!/bin/sh
# engine-inner.sh STATE_DIR HOSTNAME [dockerd args...]
#
# Runs as: nsenter --net=/run/netns/tse-NAME -- unshare --mount --uts --propagation slave -- \
#            /bin/sh engine-inner.sh /tmp/tse/NAME tse-NAME [...]
# i.e. already inside the engine's netns, in a fresh mount + UTS namespace (slave propagation: host
# mounts still propagate in, ours never leak out). Prepares the mount namespace and execs dockerd,
# so the pid of the spawned process is dockerd's pid.
#  - /sys is remounted so /sys/class/net shows this netns, but the cgroup tree is saved (rbind) and
#    put back on top (`ip netns exec` drops /sys/fs/cgroup and dockerd then fails on cgroups);
#  - /run/docker/plugins (legacy plugin discovery) and /etc/docker (key.json) are hard-coded
#    paths in dockerd: bind them to per-engine directories.
set -eu
st=$1
host=$2
shift 2
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
hostname "$host"
mount --rbind /sys/fs/cgroup "$st/cg"
mount -t sysfs sysfs /sys
mount --rbind "$st/cg" /sys/fs/cgroup
umount -l "$st/cg"
mount --bind "$st/plugins" /run/docker/plugins
mount --bind "$st/etc" /etc/docker
exec /usr/sbin/dockerd \
  --data-root "$st/data" \
  --exec-root "$st/exec" \
  --pidfile "$st/dockerd.pid" \
  -H "unix://$st/docker.sock" \
  --shutdown-timeout 2 \
  "$@"
