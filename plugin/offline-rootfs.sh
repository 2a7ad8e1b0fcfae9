#!/usr/bin/env bash
# offline-rootfs.sh ROOTFS REPO - assemble tsnet's managed-plugin root filesystem from this machine,
# with no registry and no `docker build`:
#   /usr/local/bin/node            the local Node runtime (`command -v node`, or $NODE), + its libraries
#   ipset, conntrack               Debian's, with libipset and libnetfilter_conntrack
#   iptables, ip6tables, *-restore, *-save
#                                  symlinks to Debian's xtables-nft-multi (+ its dlopen'ed xtables/ modules)
#   every shared library ldd names for the above, and the dynamic loader
#   /etc/protocols, /etc/ethertypes (iptables resolves protocol names through them)
#   /opt/tsnet/{package.json,dist/,node_modules/}
#                                  the built code and the production dependencies only
#   mount points                   /run/docker/plugins, /var/lib/tsnet, /var/run -> /run, /etc/hosts, ...
# Called by build.sh; usable alone. ROOTFS must not exist or be empty. Run on the Linux distribution
# whose binaries should go into the plugin (tested on Debian 12).
set -euo pipefail
rootfs=${1:?usage: offline-rootfs.sh ROOTFS REPO}
repo=$(cd "${2:?usage: offline-rootfs.sh ROOTFS REPO}" && pwd)
node_bin=$(readlink -f "${NODE:-$(command -v node || true)}" || true)
# node's own directory first (its npm), sbin directories last (xtables-nft-multi, chroot)
export PATH=$(dirname "$node_bin"):$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() { echo "offline-rootfs.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found${2:+: $2}"; }

mkdir -p "$rootfs"
[ -z "$(ls -A "$rootfs")" ] || die "$rootfs is not empty"
rootfs=$(cd "$rootfs" && pwd)

[ -x "$node_bin" ] || die "no node binary (set NODE=/path/to/node)"
major=$("$node_bin" -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || die "$node_bin is Node $major; tsnet needs Node 20 or newer"
need ldd
xt=$(readlink -f "$(command -v xtables-nft-multi || true)")
[ -x "$xt" ] || die "xtables-nft-multi not found: install iptables (Debian's, nf_tables backend)"
[ -f "$repo/dist/cli.js" ] || die "$repo/dist/cli.js missing: build first (npx tsc -p tsconfig.json)"
[ -f "$repo/package-lock.json" ] || die "$repo/package-lock.json missing"
[ -d "$repo/node_modules" ] || die "$repo/node_modules missing: run npm ci first"
need npm

# Merged /usr (Debian 12): /bin /sbin /lib /lib64 are symlinks into /usr. Mirror them, so paths
# as ldd prints them (/lib/x86_64-linux-gnu/..., /lib64/ld-linux-...) work inside the plugin.
mkdir -p "$rootfs/usr/bin" "$rootfs/usr/sbin" "$rootfs/usr/lib" "$rootfs/usr/local/bin"
for d in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then
    target=$(readlink "/$d")
    target=${target#/} # relative, so that copying into the rootfs never follows it onto the host
    mkdir -p "$rootfs/$target"
    ln -s "$target" "$rootfs/$d"
  fi
done

# put FILE at the same path inside the rootfs, dereferenced
put() {
  local src=$1 dst=${2:-$1}
  mkdir -p "$rootfs$(dirname "$dst")"
  cp -L --preserve=mode "$src" "$rootfs$dst"
}

# every library ldd names for FILE (+ the loader); "not found" is an error
libs_of() {
  local out
  out=$(ldd "$1" 2>&1) || { [[ $out == *"not a dynamic executable"* ]] && return 0; die "ldd $1: $out"; }
  if grep -q 'not found' <<<"$out"; then die "ldd $1: $(grep 'not found' <<<"$out")"; fi
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"
}

declare -A seen=()
add_libs() {
  local f l list
  for f in "$@"; do
    list=$(libs_of "$f") # not in a pipe or <(...): a failure must stop the script
    while read -r l; do
      [ -n "$l" ] && [ -z "${seen[$l]:-}" ] || continue
      seen[$l]=1
      put "$l"
    done <<<"$list"
  done
}

# --- node
put "$node_bin" /usr/local/bin/node
add_libs "$node_bin"

# No iproute2: tsnet changes links, addresses and neighbours over rtnetlink in-process.

# --- single-binary tools: the binary, a link where PATH finds it, its libraries.
# add_tool NAME DEBIAN-PACKAGE. A new runtime tool is one line here, one word in the Dockerfile's
# apt-get install and in the smoke test below (e.g. util-linux's flock: add_tool flock util-linux).
TOOLS=(ipset conntrack)
add_tool() {
  local name=$1 pkg=$2 found bin
  found=$(command -v "$name" || true)
  bin=$(readlink -f "$found")
  [ -n "$found" ] && [ -x "$bin" ] || die "$name not found: install Debian's $pkg"
  put "$bin"
  # a link only where the rootfs has nothing yet (/sbin is usr/sbin: never replace the binary)
  [ -e "$rootfs$found" ] || { mkdir -p "$rootfs$(dirname "$found")"; ln -s "$bin" "$rootfs$found"; }
  add_libs "$bin"
}
add_tool ipset ipset             # the per-network facts the firewall looks up (links libipset)
add_tool conntrack conntrack     # clears the conntrack entries of revoked mappings

# --- iptables (nf_tables backend): one multi-call binary, dispatching on the name it was called by
put "$xt"
xtdir=$(dirname "$xt")
for n in iptables ip6tables iptables-restore ip6tables-restore iptables-save ip6tables-save; do
  ln -s "$(basename "$xt")" "$rootfs$xtdir/$n"
done
add_libs "$xt"
# the match/target extensions are dlopen'ed from libxtables' directory (ldd cannot see them)
libxt=$(libs_of "$xt" | grep '/libxtables\.so' | head -1)
[ -n "$libxt" ] || die "xtables-nft-multi does not link libxtables: cannot find its extension directory"
modules=$(dirname "$(readlink -f "$libxt")")/xtables
[ -d "$modules" ] || modules=$(dirname "$libxt")/xtables
[ -d "$modules" ] || die "xtables extension directory not found next to $libxt"
mkdir -p "$rootfs$modules"
cp -a "$modules/." "$rootfs$modules/"
add_libs "$modules"/*.so
mkdir -p "$rootfs/etc"
for f in /etc/protocols /etc/ethertypes; do [ -f "$f" ] && cp "$f" "$rootfs$f"; done
[ -f "$rootfs/etc/protocols" ] || die "/etc/protocols missing (install netbase)"

# --- the app: package.json, dist/, production node_modules
app=$rootfs/opt/tsnet
mkdir -p "$app"
cp "$repo/package.json" "$repo/package-lock.json" "$app/"
cp -a "$repo/dist" "$app/dist"
# Copy the packages package-lock.json does not mark dev-only, then let npm remove anything else
# (`npm prune --omit=dev`, offline: it only deletes). The result is what `npm ci --omit=dev`
# installs, without asking a registry.
(cd "$repo" && "$node_bin" -e '
  const lock = require("./package-lock.json")
  for (const [path, meta] of Object.entries(lock.packages ?? {})) {
    if (!path || meta.dev || meta.link) continue
    // top-level installs only; nested ones come along inside their parent
    if (/^node_modules\/(@[^/]+\/)?[^/]+$/.test(path)) console.log(path)
  }') | while read -r p; do
  [ -d "$repo/$p" ] || continue # an optional package for another platform
  mkdir -p "$app/$(dirname "$p")"
  cp -a "$repo/$p" "$app/$p"
done
(cd "$app" && npm prune --omit=dev --offline --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
(cd "$app" && npm ls --omit=dev --all --offline --loglevel=error >/dev/null) \
  || die "production dependencies incomplete in $app/node_modules (run npm ci in $repo)"
rm -f "$app/package-lock.json"
# never loaded at run time: type declarations, source maps, intermediate objects of native builds
find "$app/node_modules" \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \) -type f -delete
find "$app/node_modules" -path '*/build/Release/obj.target' -type d -prune -exec rm -rf {} +
# nor prebuilt addons for other platforms (fs-native-extensions ships a dozen; ldd cannot read them)
platform=$("$node_bin" -p 'process.platform + "-" + process.arch')
find "$app/node_modules" -type d -path '*/prebuilds/*' -prune ! -name "$platform" -exec rm -rf {} +
# native addons among them need their libraries too
while IFS= read -r -d '' so; do add_libs "$so"; done < <(find "$app/node_modules" -name '*.node' -type f -print0)

# --- mount points and the rest of a minimal tree
mkdir -p "$rootfs/run/docker/plugins" "$rootfs/var/lib/tsnet" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" "$rootfs/tmp" "$rootfs/host/proc/sys/net"
chmod 1777 "$rootfs/tmp"
ln -s ../run "$rootfs/var/run"
: > "$rootfs/run/docker.sock" # mount point of the docker-socket mount (/var/run/docker.sock; /dev/null unless opted in)
: > "$rootfs/etc/hosts"       # Docker bind-mounts the host's for network type host
: > "$rootfs/etc/resolv.conf"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\n' > "$rootfs/etc/group"

# smoke test: the binaries start inside the tree (chroot, so only what is in the rootfs counts)
if [ "$(id -u)" = 0 ] && command -v chroot >/dev/null; then
  inside() { env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin chroot "$rootfs" "$@"; }
  for n in "${TOOLS[@]}"; do
    inside "$n" --version >/dev/null 2>&1 || die "$n does not run inside the rootfs"
  done
  for n in iptables ip6tables iptables-restore ip6tables-restore iptables-save ip6tables-save; do
    inside "$n" --version >/dev/null || die "$n does not run inside the rootfs"
  done
  # cli.js imports every module tsnet serves with (and so every production dependency it loads)
  inside /usr/local/bin/node /opt/tsnet/dist/cli.js help >/dev/null || die "tsnet does not load inside the rootfs"
  # the state directory lock's addon is loaded only by serve: load it here
  inside /usr/local/bin/node -e 'require("/opt/tsnet/node_modules/fs-native-extensions")' 2>/dev/null \
    || die "the file lock addon (fs-native-extensions) does not load inside the rootfs"
fi
