/**
 * The small world the generated requests talk about. IDs, subnets and pools are drawn from short
 * fixed lists so that generated sequences keep colliding with the state earlier requests built:
 * the same network created twice with other settings, endpoints of one network used under
 * another, two endpoint IDs that map to the same veth name, pools that overlap, and so on.
 */

/** Network IDs: two recorded ones, a Swarm-style one, and one whose default bridge name is NETS[0]'s. */
export const NETS = [
  'd1165a9890211cbbdc75963cefdb8b9e0e2c3fe08bed731593b73df39ed49313', // legacy/01
  '2c78a1a9b4e08472fe66fb7e6f3ea3fc48456b4b104de5686b6de32bf0400a2b', // legacy/10
  'fq0bo2qfnh77jurgsai67zq00', // managed/51 (Swarm IDs are 25 alphanumerics)
  'd1165a9890ffee00112233445566778899aabbccddeeff00112233445566778899'.slice(0, 64), // tsbr-d1165a9890 too
] as const

/** Endpoint IDs: four recorded ones, and two whose host veth name collides with E0's and E1's. */
export const EPS = [
  '433d8bbee599be5be86465e9fd29458412a92f39fa536ccc8a4db5e043840b14', // legacy/02
  '6281e3083cb5227edadada0fcc72b916887fcdf1d6d7b9e8af81e44201770763', // legacy/03
  '9c954d84adce0e1500f4721911a7cf3d855d215f0ad979815f1d4fbfc15d5ba1', // legacy/10
  'a9afa990d43595bc6b67aec01988a31d362eba81e94e488eab5f3f14f9438a7f', // legacy/21
  `433d8bbee599${'f'.repeat(52)}`, // same first 12 characters as EPS[0]: same tsv… name
  `6281E3083CB5${'0'.repeat(52)}`, // EPS[1]'s first 12 in upper case: the same name once lowercased
] as const

/** IDs nobody creates (valid syntax), for "unknown object" requests. */
export const UNKNOWN_NET = '4a'.repeat(32)
export const UNKNOWN_EP = '3f'.repeat(32)

export const netV4 = (i: number) => `10.${200 + i}.0.0/24`
export const gwV4 = (i: number) => `10.${200 + i}.0.1/24`
export const netV6 = (i: number) => `fd00:${i + 1}::/64`
export const gwV6 = (i: number) => `fd00:${i + 1}::1/64`
export const epV4 = (i: number, j: number) => `10.${200 + i}.0.${10 + j}/24`
export const epV6 = (i: number, j: number) => `fd00:${i + 1}::${(10 + j).toString(16)}/64`
/** A bridge name a valid CreateNetwork may ask for. */
export const userBridge = (i: number) => `fzbr${i}`

/** Explicit pools the IPAM requests ask for (some overlap on purpose, some are tiny). */
export const POOLS_V4 = ['10.210.0.0/24', '10.210.0.0/16', '10.211.0.0/30', '10.212.0.0/31', '10.213.0.0/32', '10.214.0.0/29', '10.215.0.0/24'] as const
export const POOLS_V6 = ['fd10:1::/64', 'fd10:1::/126', 'fd10:2::/127'] as const
/** Pool + IP range pairs. */
export const SUBPOOLS = [['10.215.0.0/24', '10.215.0.128/25'], ['10.216.0.0/24', '10.216.0.0/30'], ['fd10:3::/64', 'fd10:3::/126']] as const
/** Preferred addresses for RequestAddress: inside, at the edges of, and outside those pools. */
export const PREFERRED = [
  '10.210.0.5', '10.210.0.0', '10.210.0.255', '10.211.0.1', '10.211.0.2', '10.211.0.3', '10.212.0.0', '10.212.0.1',
  '10.213.0.0', '10.215.0.10', '10.215.0.200', '10.216.0.2', 'fd10:1::5', 'fd10:1::', 'fd10:2::1', 'fd10:3::2',
  '172.18.0.9', '10.0.0.3', '10.210.0.7/24', 'FD10:1:0:0::6',
] as const

/**
 * The IPAM default pools the fuzzed app runs with: few, so that automatic pools run out. The
 * hosts (fake and real) route 172.17.0.0/16 and 192.168.1.0/24, which tsnet must skip.
 */
export const DEFAULT_POOLS_TEXT = '172.17.0.0/16:16,172.18.0.0/16:16,192.168.0.0/23:24'
export const GLOBAL_POOLS_TEXT = '10.0.0.0/23:24'
export const HOST_ROUTES = ['192.168.1.0/24', '172.17.0.0/16']
/** The fixed IPv6 ULA /48 of the fuzzed app (tsnet picks a random one on first start). */
export const ULA48 = 'fd5e:ed00:1::/48'
