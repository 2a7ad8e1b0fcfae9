# Root filesystem of the managed tsnet plugin (plugin/build.sh --rootfs dockerfile exports it).
# Needs a registry for the base image and for npm. Without one, use the offline path
# (plugin/build.sh, the default), or point NODE_IMAGE at a Node 20 Debian 12 image you imported
# yourself (docker load / docker import) - the last stage still needs Debian's apt mirrors.
ARG NODE_IMAGE=node:20-bookworm-slim

# --- build: all dependencies, compile TypeScript to dist/
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json

# --- production dependencies only
FROM ${NODE_IMAGE} AS deps
WORKDIR /opt/tsnet
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && find node_modules \( -name '*.d.ts' -o -name '*.map' \) -type f -delete

# --- the plugin's root filesystem: node (from the base), iptables (nf_tables), ipset,
# conntrack, tsnet. Keep the tool list in step with plugin/offline-rootfs.sh (TOOLS).
FROM ${NODE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ipset conntrack \
 && update-alternatives --set iptables /usr/sbin/iptables-nft \
 && update-alternatives --set ip6tables /usr/sbin/ip6tables-nft \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /run/docker/plugins /var/lib/tsnet
COPY --from=deps /opt/tsnet /opt/tsnet
COPY --from=build /src/dist /opt/tsnet/dist
# config.json's entrypoint: /usr/local/bin/node /opt/tsnet/dist/cli.js serve (node is there in the
# official images). The plugin runs with config.json's env and mounts, not with this image's.
CMD ["/usr/local/bin/node", "/opt/tsnet/dist/cli.js", "serve"]
