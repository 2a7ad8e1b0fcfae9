/** Option keys of Docker's vocabulary that the planning code interprets (the wire types re-export them). */
export const OPT = {
  generic: 'com.docker.network.generic',
  enableIpv4: 'com.docker.network.enable_ipv4',
  enableIpv6: 'com.docker.network.enable_ipv6',
  internal: 'com.docker.network.internal',
  portMap: 'com.docker.network.portmap',
  exposedPorts: 'com.docker.network.endpoint.exposedports',
  endpointMac: 'com.docker.network.endpoint.macaddress',
  requestAddressType: 'RequestAddressType',
  gatewayType: 'com.docker.network.gateway',
  endpointName: 'com.docker.network.endpoint.name',
} as const

/** `-o` keys every mode reads. */
export const COMMON_OPTION = {
  mode: 'tsnet.mode',
  mtu: 'com.docker.network.driver.mtu',
  ifacePrefix: 'com.docker.network.container_iface_prefix',
  allow: 'tsnet.allow',
} as const

/** Keys the daemon itself interprets when given with -o; they may be echoed in the generic map. */
export const DAEMON_KEYS: readonly string[] = [OPT.enableIpv6, OPT.enableIpv4, OPT.internal, 'com.docker.network.bridge.default_bridge']
