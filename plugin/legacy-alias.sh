#!/usr/bin/env bash
# plugin/legacy-alias.sh - let networks created in legacy mode (driver "tsnet") reach a managed tsnet
# plugin. See "Switching a host from legacy to managed mode" in docs/managed-plugin.md.
#
# Docker records each network's driver by name. Networks made by the legacy plugin say "tsnet";
# Docker finds a legacy plugin of that name through /run/docker/plugins/tsnet.sock or a spec file
# /etc/docker/plugins/tsnet.spec. This script points that name at the managed plugin's socket,
# /run/docker/plugins/<plugin id>/tsnet.sock:
#   /etc/docker/plugins/tsnet.sock   symlink -> /run/docker/plugins/<id>/tsnet.sock  (the one place
#                                    that names the plugin id; rewritten by every run)
#   /etc/docker/plugins/tsnet.spec   "unix:///etc/docker/plugins/tsnet.sock": found at every dockerd
#                                    start, also after a reboot
#   /run/docker/plugins/tsnet.sock   symlink -> /etc/docker/plugins/tsnet.sock: for a dockerd that
#                                    already talked to the legacy tsnet and remembers this path
#                                    (gone after a reboot, when the spec file takes over)
# The managed plugin must NOT be called tsnet (tsnet:latest): Docker resolves the name "tsnet" to a
# managed plugin tsnet:latest first and never looks at legacy plugins then. Run it again after an
# offline upgrade (a new plugin id). --remove deletes the three files.
#
# usage: plugin/legacy-alias.sh --plugin NAME:TAG [--legacy-name tsnet] [-H URL] [--docker PATH]
#                               [--etc-dir /etc/docker] [--run-dir /run/docker/plugins] [--remove]
# --etc-dir/--run-dir are where dockerd's /etc/docker and /run/docker/plugins are on this machine
# (they differ only when dockerd runs in its own mount namespace, as in the e2e tests); the links
# always name dockerd's paths.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
plugin='' legacy=tsnet host='' docker_bin=${DOCKER_BIN:-/usr/bin/docker}
etc_dir=/etc/docker run_dir=/run/docker/plugins remove=0
die() { echo "legacy-alias.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case $1 in
    --plugin) plugin=${2:?}; shift ;;
    --legacy-name) legacy=${2:?}; shift ;;
    -H|--host) host=${2:?}; shift ;;
    --docker) docker_bin=${2:?}; shift ;;
    --etc-dir) etc_dir=${2:?}; shift ;;
    --run-dir) run_dir=${2:?}; shift ;;
    --remove) remove=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
  shift
done
[[ $legacy =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die "bad legacy name: $legacy"
spec=$etc_dir/plugins/$legacy.spec
link=$etc_dir/plugins/$legacy.sock
runlink=$run_dir/$legacy.sock

if [ $remove = 1 ]; then
  rm -f "$spec" "$link"
  [ -L "$runlink" ] && rm -f "$runlink"
  exit 0
fi
[ -n "$plugin" ] || die "--plugin NAME:TAG is required"
docker() { "$docker_bin" ${host:+-H "$host"} "$@"; }
id=$(docker plugin inspect -f '{{.Id}}' "$plugin") || die "no plugin $plugin"
full=$(docker plugin inspect -f '{{.Name}}' "$plugin")
norm=$legacy:latest
[ "$full" != "$norm" ] || die "the managed plugin is called $full, which hides the legacy name $legacy from Docker; create it under another name (e.g. $legacy-managed)"
socket=$(docker plugin inspect -f '{{.Config.Interface.Socket}}' "$plugin")
if [ -e "$runlink" ] && [ ! -L "$runlink" ]; then
  die "$runlink exists and is not a link: stop the legacy tsnet first (or remove its stale socket)"
fi
mkdir -p "$etc_dir/plugins"
ln -sfn "/run/docker/plugins/$id/$socket" "$link"
printf 'unix:///etc/docker/plugins/%s.sock\n' "$legacy" > "$spec.tmp" && mv -f "$spec.tmp" "$spec"
mkdir -p "$run_dir"
ln -sfn "/etc/docker/plugins/$legacy.sock" "$runlink"
echo "legacy-alias.sh: driver name $legacy -> $full (/run/docker/plugins/$id/$socket)" >&2
