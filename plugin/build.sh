#!/usr/bin/env bash
# plugin/build.sh - build tsnet as a managed Docker plugin: assemble config.json + rootfs/ in a build
# directory and run `docker plugin create NAME:TAG DIR`. The plugin is created disabled; enable it
# with `docker plugin enable NAME:TAG`. See docs/managed-plugin.md.
#
# usage: plugin/build.sh [options]
#   --name NAME         plugin name (default tsnet)
#   --tag TAG           plugin tag (default latest). Docker names the driver NAME:TAG, e.g.
#                       `docker network create -d tsnet:latest --ipam-driver tsnet:latest ...`
#   --rootfs offline    (default) assemble the rootfs from this machine: the local node binary,
#                       Debian's iptables (nf_tables), ipset, conntrack, their libraries, dist/ and the
#                       production node_modules. No registry, no `docker build`.
#   --rootfs dockerfile build the rootfs with `docker build` of ./Dockerfile (needs a registry for
#                       the base image and npm, or a locally imported base: --node-image)
#   --node-image IMAGE  base image for --rootfs dockerfile (default node:20-bookworm-slim)
#   --stamp TEXT        build stamp, written to /opt/tsnet/BUILD in the rootfs and appended to the
#                       plugin's description (default: <package version>+<git commit or "local">,
#                       plus the build time)
#   --docker PATH       docker CLI (default $DOCKER_BIN or /usr/bin/docker)
#   -H, --host URL      Docker daemon to create the plugin on (passed as docker -H URL)
#   --build-dir DIR     where to assemble (default: a new /tmp/tsnet-plugin.XXXXXX); it must not
#                       exist or be empty, and it is removed at the end unless --keep
#   --keep              keep the build directory
#   --compile           run `npm run build` first (default: only when dist/cli.js is missing)
#   --no-create         assemble only (implies --keep); print the build directory
#   --replace           offline upgrade: if NAME:TAG exists, assemble first, then disable -f, rm -f,
#                       create, re-apply the settings made on it (`docker plugin set` of each env
#                       value other than the old plugin's default and each mount source other
#                       than config.json's; docker-socket.source only together with a DOCKER_HOST)
#                       and enable it again if it was enabled. Networks and leases live in the
#                       state directory and stay.
#   -h, --help          this text
# The last lines on stdout are key=value facts for scripts:
#   plugin=NAME:TAG rootfs_bytes=N rootfs_files=N assemble_ms=N create_ms=N build_dir=DIR stamp=TEXT
#   (with --replace also: replaced=0|1 settings=KEY=VALUE,... downtime_ms=N)
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
repo=$(cd "$here/.." && pwd)
# sbin directories last: the caller's node and npm come first
export PATH=$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
NODE=${NODE:-$(command -v node || true)}
[ -n "$NODE" ] && [ -x "$NODE" ] || { echo "build.sh: node not found (set NODE=/path/to/node)" >&2; exit 1; }
export NODE

name=tsnet tag=latest mode=offline node_image=node:20-bookworm-slim stamp=''
docker_bin=${DOCKER_BIN:-/usr/bin/docker}
host='' build_dir='' keep=0 compile=auto create=1 replace=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "build.sh: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

while [ $# -gt 0 ]; do
  case $1 in
    --name) name=${2:?}; shift ;;
    --tag) tag=${2:?}; shift ;;
    --rootfs) mode=${2:?}; shift ;;
    --node-image) node_image=${2:?}; shift ;;
    --stamp) stamp=${2:?}; shift ;;
    --docker) docker_bin=${2:?}; shift ;;
    -H|--host) host=${2:?}; shift ;;
    --build-dir) build_dir=${2:?}; shift ;;
    --keep) keep=1 ;;
    --compile) compile=1 ;;
    --no-create) create=0; keep=1 ;;
    --replace) replace=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
[[ $name =~ ^[a-z0-9][a-z0-9._/:-]*$ ]] || die "bad plugin name: $name (lower case, e.g. tsnet or registry.example:5000/tsnet)"
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "bad tag: $tag"
case $mode in offline|dockerfile) ;; *) die "--rootfs must be offline or dockerfile, not $mode" ;; esac
if [ $create = 1 ] || [ $mode = dockerfile ]; then
  [ -x "$docker_bin" ] || die "docker CLI not found at $docker_bin (--docker PATH)"
fi
docker() { "$docker_bin" ${host:+-H "$host"} "$@"; }

if [ -z "$build_dir" ]; then
  build_dir=$(mktemp -d /tmp/tsnet-plugin.XXXXXX)
else
  mkdir -p "$build_dir"
  [ -z "$(ls -A "$build_dir")" ] || die "build directory $build_dir is not empty"
  build_dir=$(cd "$build_dir" && pwd)
fi
image='' ctr=''
cleanup() {
  local rc=$?
  if [ -n "$ctr" ]; then docker rm -f "$ctr" >/dev/null 2>&1 || true; fi
  if [ -n "$image" ]; then docker rmi -f "$image" >/dev/null 2>&1 || true; fi
  if [ $keep = 0 ]; then rm -rf --one-file-system "$build_dir"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

cd "$repo"
if [ $mode = offline ] && { [ $compile = 1 ] || { [ $compile = auto ] && [ ! -f dist/cli.js ]; }; }; then
  echo "build.sh: compiling (tsc)" >&2
  PATH="$(dirname "$NODE"):$PATH" npx tsc -p tsconfig.json
fi
version=$("$NODE" -p 'require("./package.json").version' 2>/dev/null || echo unknown)
if [ -z "$stamp" ]; then
  commit=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo local)
  git -C "$repo" diff --quiet HEAD -- 2>/dev/null || commit="$commit-dirty"
  stamp="$version+$commit $(date -u +%Y-%m-%dT%H:%M:%SZ)"
fi

t0=$(now_ms)
rootfs=$build_dir/rootfs
case $mode in
  offline)
    bash "$here/offline-rootfs.sh" "$rootfs" "$repo" >&2
    ;;
  dockerfile)
    image="tsnet-plugin-rootfs:build-$$"
    echo "build.sh: docker build (base $node_image)" >&2
    docker build --build-arg NODE_IMAGE="$node_image" -t "$image" -f "$repo/Dockerfile" "$repo" >&2
    ctr=$(docker create "$image")
    mkdir -p "$rootfs"
    docker export "$ctr" | tar -x -C "$rootfs"
    ;;
esac
printf '%s\n' "tsnet $version" "build $stamp" > "$rootfs/opt/tsnet/BUILD"
# config.json, with the stamp in the description (docker plugin inspect shows it)
STAMP="$stamp" "$NODE" -e '
  const fs = require("fs")
  const c = JSON.parse(fs.readFileSync(process.argv[1], "utf8"))
  c.description = `${c.description} [${process.env.STAMP}]`
  fs.writeFileSync(process.argv[2], JSON.stringify(c, null, 2) + "\n")
' "$repo/config.json" "$build_dir/config.json"
rootfs_bytes=$(du -sb "$rootfs" | cut -f1)
rootfs_files=$(find "$rootfs" | wc -l)
t1=$(now_ms)
echo "build.sh: rootfs $((rootfs_bytes / 1000000)) MB, $rootfs_files entries, assembled in $((t1 - t0)) ms ($mode)" >&2

create_ms=0 replaced=0 downtime_ms=0 was_enabled=false
settings=()
if [ $create = 1 ] && [ $replace = 1 ] && docker plugin inspect "$name:$tag" >/dev/null 2>&1; then
  # The settings worth keeping: what the operator set (an env value other than the OLD plugin's
  # default; a mount source other than the new default; Docker writes a set source into
  # Config.Mounts, so that is where it is read), settable in the new config.json. The Docker API
  # is one opt-in of two settings: docker-socket.source is kept only with a DOCKER_HOST, so an
  # upgrade never mounts the engine's socket (root on the host) for nothing.
  mapfile -t settings < <(docker plugin inspect -f '{{json .}}' "$name:$tag" | "$NODE" -e '
    const fs = require("fs")
    const old = JSON.parse(fs.readFileSync(0, "utf8"))
    const cfg = JSON.parse(fs.readFileSync(process.argv[1], "utf8"))
    const oldDefault = new Map((old.Config?.Env ?? []).map((e) => [e.Name, e.Value ?? ""]))
    const env = new Map((cfg.env ?? []).map((e) => [e.name, e.value ?? ""]))
    for (const kv of old.Settings?.Env ?? []) {
      const i = kv.indexOf("="), k = kv.slice(0, i), v = kv.slice(i + 1)
      const e = (cfg.env ?? []).find((x) => x.name === k)
      const setByOperator = !oldDefault.has(k) || oldDefault.get(k) !== v
      if (e && (e.settable ?? []).includes("value") && setByOperator && (e.value ?? "") !== v) {
        console.log(`${k}=${v}`)
        env.set(k, v)
      }
    }
    const mounts = old.Config?.Mounts?.length ? old.Config.Mounts : old.Settings?.Mounts ?? []
    for (const m of mounts) {
      const c = (cfg.mounts ?? []).find((x) => x.name === m.Name)
      if (!c || !(c.settable ?? []).includes("source") || !m.Source || c.source === m.Source) continue
      if (m.Name === "docker-socket" && !env.get("DOCKER_HOST")) {
        console.error(`build.sh: not keeping docker-socket.source=${m.Source}: DOCKER_HOST is empty, so tsnet runs without the Docker API; to opt in: docker plugin set PLUGIN docker-socket.source=${m.Source} DOCKER_HOST=unix:///var/run/docker.sock`)
        continue
      }
      console.log(`${m.Name}.source=${m.Source}`)
    }' "$build_dir/config.json")
  was_enabled=$(docker plugin inspect -f '{{.Enabled}}' "$name:$tag")
  echo "build.sh: replacing $name:$tag (enabled: $was_enabled; keeping: ${settings[*]:-no settings})" >&2
  t2=$(now_ms)
  if [ "$was_enabled" = true ]; then docker plugin disable -f "$name:$tag" >&2; fi
  docker plugin rm -f "$name:$tag" >&2
  replaced=1
fi
if [ $create = 1 ]; then
  echo "build.sh: docker plugin create $name:$tag" >&2
  t3=$(now_ms)
  docker plugin create "$name:$tag" "$build_dir" >&2
  create_ms=$(($(now_ms) - t3))
  echo "build.sh: created $name:$tag in $create_ms ms" >&2
  if [ ${#settings[@]} -gt 0 ]; then docker plugin set "$name:$tag" "${settings[@]}" >&2; fi
  if [ "$was_enabled" = true ]; then
    docker plugin enable "$name:$tag" >&2
    downtime_ms=$(($(now_ms) - t2))
    echo "build.sh: $name:$tag enabled again; it was down for $downtime_ms ms" >&2
  else
    echo "build.sh: $name:$tag is disabled; enable it with: docker plugin enable $name:$tag" >&2
  fi
fi
echo "plugin=$name:$tag"
echo "rootfs_bytes=$rootfs_bytes"
echo "rootfs_files=$rootfs_files"
echo "assemble_ms=$((t1 - t0))"
echo "create_ms=$create_ms"
echo "build_dir=$([ $keep = 1 ] && echo "$build_dir" || echo removed)"
echo "stamp=$stamp"
if [ $replace = 1 ]; then
  echo "replaced=$replaced"
  echo "settings=$(IFS=,; echo "${settings[*]}")"
  echo "downtime_ms=$downtime_ms"
fi
