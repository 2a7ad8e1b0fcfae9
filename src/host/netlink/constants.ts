/**
 * The rtnetlink numbers tsnet uses, from the kernel's uapi headers (linux/netlink.h, rtnetlink.h,
 * if_link.h, if_addr.h, neighbour.h). Only what the modules here send or read.
 */

export const NETLINK_ROUTE = 0
export const RTNLGRP_LINK = 1

/** nlmsghdr types every protocol shares. */
export const NLMSG = { NOOP: 1, ERROR: 2, DONE: 3, OVERRUN: 4 } as const

/** nlmsghdr flags. The same bits mean different things on GET (DUMP) and NEW (REPLACE/EXCL/CREATE/APPEND). */
export const NLM_F = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  DUMP_INTR: 0x10,
  DUMP: 0x300,
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
  APPEND: 0x800,
  /** On an NLMSG_ERROR: the original request is not echoed in full. */
  CAPPED: 0x100,
} as const

export const RTM = {
  NEWLINK: 16, DELLINK: 17, GETLINK: 18,
  NEWADDR: 20, DELADDR: 21, GETADDR: 22,
  NEWROUTE: 24, DELROUTE: 25, GETROUTE: 26,
  NEWNEIGH: 28, DELNEIGH: 29, GETNEIGH: 30,
} as const

export const AF = { UNSPEC: 0, INET: 2, BRIDGE: 7, INET6: 10 } as const

export const IFF_UP = 0x1

export const IFLA = {
  ADDRESS: 1, IFNAME: 3, MTU: 4, LINK: 5, MASTER: 10, OPERSTATE: 16, LINKINFO: 18, IFALIAS: 20, GROUP: 27,
  EXT_MASK: 29, LINK_NETNSID: 37,
} as const

/** IFLA_EXT_MASK bits: what a link dump may leave out (a kernel that knows no bit ignores it). */
export const RTEXT_FILTER = { SKIP_STATS: 1 << 3 } as const

export const IFLA_INFO = { KIND: 1, DATA: 2, SLAVE_KIND: 4 } as const

export const VETH_INFO_PEER = 1

export const IFLA_VXLAN = {
  ID: 1, GROUP: 2, LINK: 3, LOCAL: 4, TTL: 5, LEARNING: 7, AGEING: 8, PROXY: 11, L2MISS: 13, L3MISS: 14, PORT: 15, LOCAL6: 17,
} as const

export const IFLA_MACVLAN_MODE = 1
export const MACVLAN_MODES = { private: 1, vepa: 2, bridge: 4, passthru: 8, source: 16 } as const

export const IFLA_VLAN = { ID: 1, PROTOCOL: 5 } as const
export const VLAN_PROTOCOLS = { '802.1Q': 0x8100, '802.1ad': 0x88a8 } as const

export const IFLA_BR = { FORWARD_DELAY: 1, AGEING_TIME: 4, STP_STATE: 5, VLAN_FILTERING: 7, MCAST_SNOOPING: 23 } as const

/** IF_OPER_* in the order of their values. */
export const OPERSTATES = ['unknown', 'notpresent', 'down', 'lowerlayerdown', 'testing', 'dormant', 'up'] as const

export const IFA = { ADDRESS: 1, LOCAL: 2, LABEL: 3, FLAGS: 8 } as const
export const IFA_F = { NODAD: 0x02, DADFAILED: 0x08, TENTATIVE: 0x40, PERMANENT: 0x80 } as const

export const RTA = { DST: 1, OIF: 4, GATEWAY: 5, PRIORITY: 6, PREFSRC: 7, METRICS: 8, TABLE: 15 } as const
export const RTAX_MTU = 2
export const RT_TABLE_MAIN = 254

export const RT_SCOPES: Record<number, string> = { 0: 'global', 200: 'site', 253: 'link', 254: 'host', 255: 'nowhere' }
export const RT_PROTOCOLS: Record<number, string> = { 0: 'unspec', 1: 'redirect', 2: 'kernel', 3: 'boot', 4: 'static', 9: 'ra', 16: 'dhcp' }
export const RT_TYPES: Record<number, string> = {
  1: 'unicast', 2: 'local', 3: 'broadcast', 4: 'anycast', 5: 'multicast', 6: 'blackhole', 7: 'unreachable', 8: 'prohibit',
}

export const NDA = { DST: 1, LLADDR: 2, VLAN: 5, PORT: 6, VNI: 7, IFINDEX: 8, MASTER: 9 } as const

export const NUD = {
  INCOMPLETE: 0x01, REACHABLE: 0x02, STALE: 0x04, DELAY: 0x08, PROBE: 0x10, FAILED: 0x20, NOARP: 0x40, PERMANENT: 0x80,
} as const

export const NTF = { USE: 0x01, SELF: 0x02, MASTER: 0x04, PROXY: 0x08, EXT_LEARNED: 0x10, STICKY: 0x40, ROUTER: 0x80 } as const
