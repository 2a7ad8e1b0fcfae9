// core/ipam: default pools, pool choice, explicit pools, address picking, RequestPool validation.
import t from 'tap'
import { formatIp, formatPrefix, type Prefix } from '../../src/core/addr.js'
import {
  Cooling, DOCKER_DEFAULT_POOLS_TEXT, checkExplicitPool, chooseDefaultPool, chooseUlaPool, isReserved, parseDefaultPools,
  parsePoolRequest, pickAddress, pickAvoiding, poolIdOf, type AddressRequest,
} from '../../src/core/ipam.js'
import { ip, pfx } from './fixtures/util.js'

const fmt = (p: Prefix | undefined) => (p ? formatPrefix(p) : undefined)
const used = (...addrs: string[]) => new Set(addrs.map((a) => ip(a).value))
const pick = (req: Omit<AddressRequest, 'poolId' | 'used'> & { used?: ReadonlySet<bigint>; poolId?: string }) =>
  formatIp({ family: req.pool.family, value: pickAddress({ used: new Set(), poolId: 'LocalDefault/test', ...req }) })

t.test('parseDefaultPools: Docker defaults', async (t) => {
  const pools = parseDefaultPools(DOCKER_DEFAULT_POOLS_TEXT)
  t.same(pools.map((p) => `${formatPrefix(p.base)}:${p.size}`), [
    '172.17.0.0/16:16', '172.18.0.0/16:16', '172.19.0.0/16:16', '172.20.0.0/14:16', '172.24.0.0/14:16', '172.28.0.0/14:16',
    '192.168.0.0/16:20',
  ])
})

t.test('parseDefaultPools: good inputs', async (t) => {
  t.same(parseDefaultPools('10.0.0.0/8:24').map((p) => [formatPrefix(p.base), p.size]), [['10.0.0.0/8', 24]])
  t.same(parseDefaultPools(' 10.0.0.0/8:24 , 192.168.0.0/16:16 ,').map((p) => [formatPrefix(p.base), p.size]),
    [['10.0.0.0/8', 24], ['192.168.0.0/16', 16]], 'spaces and a trailing comma are tolerated')
  t.same(parseDefaultPools('10.0.0.0/8:8').map((p) => p.size), [8], 'size equal to the base length')
  t.same(parseDefaultPools('10.0.0.0/8:30').map((p) => p.size), [30], 'size /30 is the smallest allowed')
})

t.test('parseDefaultPools: bad inputs say what is wrong', async (t) => {
  t.throws(() => parseDefaultPools(''), { name: 'TsnetError', kind: 'invalid', message: /default pool list is empty/ })
  t.throws(() => parseDefaultPools(' , '), { name: 'TsnetError', kind: 'invalid', message: /empty/ })
  t.throws(() => parseDefaultPools('10.0.0.0/8'), { name: 'TsnetError', kind: 'invalid', message: /"10\.0\.0\.0\/8" is not of the form IPv4-CIDR:SIZE/ })
  t.throws(() => parseDefaultPools('fd00::/8:64'), { name: 'TsnetError', kind: 'invalid', message: /"fd00::\/8:64" is not of the form IPv4-CIDR:SIZE/ }, 'IPv6 refused')
  t.throws(() => parseDefaultPools('x:24'), { name: 'TsnetError', kind: 'invalid', message: /"x:24"/ })
  t.throws(() => parseDefaultPools('10.0.0.0/33:33'), { name: 'TsnetError', kind: 'invalid', message: /not of the form/ })
  t.throws(() => parseDefaultPools('10.0.0.0/8:7'), { name: 'TsnetError', kind: 'invalid', message: /size \/7 must lie between the base's \/8 and \/30/ })
  t.throws(() => parseDefaultPools('10.0.0.0/8:31'), { name: 'TsnetError', kind: 'invalid', message: /size \/31 must lie between the base's \/8 and \/30/ })
  t.throws(() => parseDefaultPools('10.0.0.0/8:24,junk'), { name: 'TsnetError', kind: 'invalid', message: /"junk"/ }, 'names the bad entry, not the good one')
})

t.test('poolIdOf follows the built-in IPAM format', async (t) => {
  t.equal(poolIdOf('LocalDefault', pfx('172.18.0.0/16')), 'LocalDefault/172.18.0.0/16')
  t.equal(poolIdOf('LocalDefault', pfx('172.18.0.0/16'), pfx('172.18.5.0/24')), 'LocalDefault/172.18.0.0/16/172.18.5.0/24')
  t.equal(poolIdOf('GlobalDefault', pfx('fd00::/64')), 'GlobalDefault/fd00::/64')
})

t.test('chooseDefaultPool', async (t) => {
  const docker = parseDefaultPools(DOCKER_DEFAULT_POOLS_TEXT)

  t.test('Docker defaults give 172.17.0.0/16 first, then the next ones in order', async (t) => {
    t.equal(fmt(chooseDefaultPool(docker, [], [])), '172.17.0.0/16')
    t.equal(fmt(chooseDefaultPool(docker, [pfx('172.17.0.0/16')], [])), '172.18.0.0/16')
    t.equal(fmt(chooseDefaultPool(docker, [pfx('172.17.0.0/16'), pfx('172.18.0.0/16'), pfx('172.19.0.0/16')], [])), '172.20.0.0/16')
    t.equal(fmt(chooseDefaultPool(docker, [pfx('172.17.0.0/16'), pfx('172.18.0.0/16'), pfx('172.19.0.0/16'), pfx('172.20.0.0/16')], [])), '172.21.0.0/16',
      'the /14 ranges are cut into /16s')
  })

  t.test('skips taken pools and routed prefixes', async (t) => {
    t.equal(fmt(chooseDefaultPool(docker, [], [pfx('172.17.0.0/16')])), '172.18.0.0/16', 'docker0 route')
    t.equal(fmt(chooseDefaultPool(docker, [], [pfx('172.17.3.0/24')])), '172.18.0.0/16', 'a small route inside a candidate blocks it')
    t.equal(fmt(chooseDefaultPool(docker, [], [pfx('172.17.3.4/32')])), '172.18.0.0/16', 'a host route blocks it')
    t.equal(fmt(chooseDefaultPool(docker, [pfx('172.17.0.0/16')], [pfx('172.18.0.0/16')])), '172.19.0.0/16', 'taken and routed together')
    t.equal(fmt(chooseDefaultPool(docker, [], [pfx('10.0.0.0/8'), pfx('fd00::/8')])), '172.17.0.0/16', 'unrelated routes are ignored')
  })

  t.test('a blocker bigger than the candidate size skips all it covers', async (t) => {
    t.equal(fmt(chooseDefaultPool(docker, [pfx('172.17.0.0/16')], [pfx('172.18.0.0/15')])), '172.20.0.0/16')
    t.equal(fmt(chooseDefaultPool(docker, [], [pfx('172.16.0.0/12')])), '192.168.0.0/20', 'a /12 covering every 172 candidate')
    t.equal(fmt(chooseDefaultPool(docker, [], [pfx('172.16.0.0/12'), pfx('192.168.0.0/18')])), '192.168.64.0/20', 'a /18 skips four /20s')
    const tens = [{ base: pfx('10.0.0.0/16'), size: 24 }]
    t.equal(fmt(chooseDefaultPool(tens, [], [pfx('10.0.0.0/22'), pfx('10.0.5.0/24')])), '10.0.4.0/24', 'lands between blockers')
    t.equal(fmt(chooseDefaultPool(tens, [], [pfx('10.0.2.0/23')])), '10.0.0.0/24', 'a blocker further on is not reached')
    t.equal(fmt(chooseDefaultPool(tens, [pfx('10.0.0.0/24')], [pfx('10.0.0.0/17')])), '10.0.128.0/24', 'several blockers overlap the first candidate')
    t.equal(fmt(chooseDefaultPool(tens, [], [pfx('0.0.0.0/1')])), undefined, 'a blocker covering the whole base and beyond')
    t.equal(fmt(chooseDefaultPool([...tens, { base: pfx('10.1.0.0/16'), size: 24 }], [], [pfx('10.0.0.0/16')])), '10.1.0.0/24',
      'a blocker of exactly one base moves on to the next base')
  })

  t.test('size-only request', async (t) => {
    t.equal(fmt(chooseDefaultPool(docker, [], [], 24)), '172.17.0.0/24')
    t.equal(fmt(chooseDefaultPool(docker, [pfx('172.17.0.0/24')], [], 24)), '172.17.1.0/24')
    t.equal(fmt(chooseDefaultPool(docker, [pfx('172.17.0.0/16')], [], 24)), '172.18.0.0/24')
    t.equal(fmt(chooseDefaultPool(docker, [], [], 20)), '172.17.0.0/20')
    t.equal(fmt(chooseDefaultPool(docker, [], [], 14)), '172.20.0.0/14', 'a /14 fits only the first /14 base')
    t.equal(fmt(chooseDefaultPool(docker, [pfx('172.21.0.0/16')], [], 14)), '172.24.0.0/14', 'a taken /16 inside it moves on to the next base')
    t.equal(fmt(chooseDefaultPool(docker, [], [], 13)), undefined, 'no base is big enough for a /13')
    t.equal(fmt(chooseDefaultPool(docker, [], [pfx('172.16.0.0/12')], 18)), '192.168.0.0/18', 'smaller than the /20 default size')
    const tens = [{ base: pfx('10.0.0.0/16'), size: 24 }]
    t.equal(fmt(chooseDefaultPool(tens, [], [pfx('10.0.1.0/24')], 23)), '10.0.2.0/23')
    t.equal(fmt(chooseDefaultPool(tens, [], [pfx('10.0.0.0/22')], 22)), '10.0.4.0/22')
  })

  t.test('exhaustion gives undefined', async (t) => {
    t.equal(chooseDefaultPool(docker, [], [pfx('0.0.0.0/0')]), undefined)
    t.equal(chooseDefaultPool([{ base: pfx('10.0.0.0/30'), size: 30 }], [pfx('10.0.0.0/30')], []), undefined)
    const taken: Prefix[] = []
    for (let i = 0; i < 31; i++) {
      const p = chooseDefaultPool(docker, taken, [])
      if (!p) break
      t.notOk(taken.some((x) => x.network === p.network), `pool ${formatPrefix(p)} not handed out twice`)
      taken.push(p)
    }
    t.equal(taken.length, 31, 'Docker defaults hold 31 pools')
    t.equal(fmt(taken.at(-1)), '192.168.240.0/20')
    t.equal(chooseDefaultPool(docker, taken, []), undefined)
  })

  t.test('chooseUlaPool: first free /64 of the /48', async (t) => {
    const ula = pfx('fd12:3456:789a::/48')
    t.equal(fmt(chooseUlaPool(ula, [])), 'fd12:3456:789a::/64')
    t.equal(fmt(chooseUlaPool(ula, [pfx('fd12:3456:789a::/64'), pfx('fd12:3456:789a:2::/64')])), 'fd12:3456:789a:1::/64')
    t.equal(fmt(chooseUlaPool(ula, [pfx('fd12:3456:789a::/56')])), 'fd12:3456:789a:100::/64')
    t.equal(chooseUlaPool(ula, [ula]), undefined)
    t.equal(fmt(chooseUlaPool(ula, [], [pfx('fd12:3456:789a::/63')])), 'fd12:3456:789a:2::/64', 'a routed prefix blocks it too')
    t.equal(fmt(chooseUlaPool(ula, [pfx('fd12:3456:789a::/64')], [], 56)), 'fd12:3456:789a:100::/56', 'a size-only request')
  })
})

t.test('pickAvoiding: cooling addresses only when nothing else is left; a preferred one may take one', async (t) => {
  const req = { pool: pfx('10.0.0.0/29'), used: used('10.0.0.1'), poolId: 'LocalDefault/10.0.0.0/29' }
  const cooling = [ip('10.0.0.2').value, ip('10.0.0.3').value]
  const show = (v: bigint) => formatIp({ family: 4, value: v })
  t.equal(show(pickAvoiding(req, cooling)), '10.0.0.4', 'skips the cooling .2 and .3')
  t.equal(show(pickAvoiding(req, [])), '10.0.0.2', 'nothing cooling: the lowest free')
  t.equal(show(pickAvoiding({ ...req, preferred: ip('10.0.0.2') }, cooling)), '10.0.0.2', 'asked for by address')
  t.equal(show(pickAvoiding({ ...req, used: used('10.0.0.1', '10.0.0.4', '10.0.0.5', '10.0.0.6') }, cooling)), '10.0.0.2', 'only cooling ones left: the lowest of them')
  t.throws(() => pickAvoiding({ ...req, used: used('10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6') }, cooling), { name: 'TsnetError', kind: 'exhausted' }, 'full: exhausted')
})

t.test('Cooling: per pool, until a time', async (t) => {
  const c = new Cooling()
  c.add('p', 2n, 100)
  c.add('p', 3n, 200)
  c.add('q', 9n, 100)
  t.same(c.at('p', 99), [2n, 3n])
  t.same(c.at('p', 100), [3n], 'an entry ends at its time')
  c.forget('q')
  t.same(c.at('q', 0), [], 'forgotten with its pool')
  t.same(c.at('p', 200), [])
})

t.test('checkExplicitPool', async (t) => {
  const taken = [{ id: 'LocalDefault/10.0.5.0/24', prefix: pfx('10.0.5.0/24') }, { id: 'LocalDefault/172.30.0.0/16', prefix: pfx('172.30.0.0/16') }]
  t.doesNotThrow(() => checkExplicitPool(pfx('10.1.0.0/16'), taken))
  t.doesNotThrow(() => checkExplicitPool(pfx('10.0.6.0/24'), taken), 'adjacent is fine')
  t.doesNotThrow(() => checkExplicitPool(pfx('10.0.0.0/16'), []))
  t.throws(() => checkExplicitPool(pfx('10.0.0.0/16'), taken), {
    name: 'TsnetError',
    kind: 'conflict',
    message: /subnet 10\.0\.0\.0\/16 overlaps subnet 10\.0\.5\.0\/24/,
    context: { pool: '10.0.0.0/16', existing: 'LocalDefault/10.0.5.0/24' },
  }, 'names both subnets')
  t.throws(() => checkExplicitPool(pfx('172.30.7.0/24'), taken), { name: 'TsnetError', kind: 'conflict', message: /172\.30\.7\.0\/24 overlaps subnet 172\.30\.0\.0\/16.*pool LocalDefault\/172\.30\.0\.0\/16/ })
  t.throws(() => checkExplicitPool(pfx('10.0.5.0/24'), taken), { name: 'TsnetError', kind: 'conflict' }, 'the identical subnet')
})

t.test('isReserved', async (t) => {
  const p = pfx('10.0.0.0/24')
  t.ok(isReserved(p, ip('10.0.0.0').value))
  t.ok(isReserved(p, ip('10.0.0.255').value))
  t.notOk(isReserved(p, ip('10.0.0.1').value))
  t.notOk(isReserved(pfx('10.0.0.0/31'), ip('10.0.0.0').value), '/31 has no network address')
  t.notOk(isReserved(pfx('10.0.0.0/31'), ip('10.0.0.1').value), '/31 has no broadcast')
  t.notOk(isReserved(pfx('10.0.0.7/32'), ip('10.0.0.7').value))
  t.ok(isReserved(pfx('fd00::/64'), ip('fd00::').value), 'IPv6 subnet-router anycast')
  t.notOk(isReserved(pfx('fd00::/64'), ip('fd00::ffff:ffff:ffff:ffff').value), 'IPv6 has no broadcast')
})

t.test('pickAddress: automatic picks', async (t) => {
  const p24 = pfx('10.0.0.0/24')
  t.equal(pick({ pool: p24 }), '10.0.0.1', 'lowest address skipping the network address')
  t.equal(pick({ pool: p24, used: used('10.0.0.1', '10.0.0.3') }), '10.0.0.2', 'the lowest free, filling holes')
  t.equal(pick({ pool: p24, used: used('10.0.0.1', '10.0.0.2') }), '10.0.0.3')
  const full = new Set<bigint>()
  for (let i = 1; i <= 253; i++) full.add(ip(`10.0.0.${i}`).value)
  t.equal(pick({ pool: p24, used: full }), '10.0.0.254', 'the last host, never the broadcast')
  full.add(ip('10.0.0.254').value)
  t.throws(() => pick({ pool: p24, used: full, poolId: 'LocalDefault/10.0.0.0/24' }), {
    name: 'TsnetError', kind: 'exhausted', message: /pool 10\.0\.0\.0\/24 has no free address left/, context: { pool: 'LocalDefault/10.0.0.0/24' },
  }, 'exhausted: names the pool, and never hands out the broadcast')
  t.throws(() => pick({ pool: pfx('10.0.0.0/30'), used: used('10.0.0.1', '10.0.0.2') }), { name: 'TsnetError', kind: 'exhausted', message: /10\.0\.0\.0\/30/ },
    'a /30 has two usable addresses')
  t.equal(pick({ pool: pfx('fd00::/64') }), 'fd00::1', 'IPv6: the subnet-router anycast address is skipped')
  t.equal(pick({ pool: pfx('fd00::/126'), used: used('fd00::1', 'fd00::2') }), 'fd00::3', 'IPv6: the last address is usable')
})

t.test('pickAddress: /31 and /32', async (t) => {
  const p31 = pfx('10.0.0.0/31')
  t.equal(pick({ pool: p31 }), '10.0.0.0', '/31: both addresses are usable (RFC 3021)')
  t.equal(pick({ pool: p31, used: used('10.0.0.0') }), '10.0.0.1')
  t.throws(() => pick({ pool: p31, used: used('10.0.0.0', '10.0.0.1') }), { name: 'TsnetError', kind: 'exhausted' })
  t.equal(pick({ pool: p31, preferred: ip('10.0.0.1') }), '10.0.0.1', 'preferred /31 upper address')
  const p32 = pfx('10.0.0.7/32')
  t.equal(pick({ pool: p32 }), '10.0.0.7', '/32: its one address')
  t.throws(() => pick({ pool: p32, used: used('10.0.0.7') }), { name: 'TsnetError', kind: 'exhausted', message: /10\.0\.0\.7\/32/ })
})

t.test('pickAddress: a range restricts automatic picks only', async (t) => {
  const pool = pfx('10.0.0.0/24')
  t.equal(pick({ pool, range: pfx('10.0.0.128/25') }), '10.0.0.128', 'first of the range (not the pool network address)')
  t.equal(pick({ pool, range: pfx('10.0.0.128/25'), used: used('10.0.0.128') }), '10.0.0.129')
  t.equal(pick({ pool, range: pfx('10.0.0.0/25') }), '10.0.0.1', 'the pool network address is still reserved in a range')
  t.throws(() => pick({ pool, range: pfx('10.0.0.252/30'), used: used('10.0.0.252', '10.0.0.253', '10.0.0.254') }),
    { name: 'TsnetError', kind: 'exhausted', context: { pool: 'LocalDefault/test' } }, 'the pool broadcast stays reserved at the end of a range')
  t.throws(() => pick({ pool, range: pfx('10.0.0.64/30'), used: used('10.0.0.64', '10.0.0.65', '10.0.0.66', '10.0.0.67') }),
    { name: 'TsnetError', kind: 'exhausted' }, 'range full while the pool is not: no pick outside the range')
  t.equal(pick({ pool, range: pfx('10.0.0.128/25'), preferred: ip('10.0.0.5') }), '10.0.0.5', 'preferred may lie outside the range')
  t.equal(pick({ pool, range: pfx('10.0.0.64/30'), used: used('10.0.0.64', '10.0.0.65', '10.0.0.66', '10.0.0.67'), preferred: ip('10.0.0.200') }),
    '10.0.0.200', 'preferred works while the range is full')
})

t.test('pickAddress: preferred address', async (t) => {
  const pool = pfx('10.0.0.0/24')
  t.equal(pick({ pool, preferred: ip('10.0.0.50') }), '10.0.0.50')
  t.equal(pick({ pool, preferred: ip('10.0.0.254'), used: used('10.0.0.1') }), '10.0.0.254')
  t.throws(() => pick({ pool, preferred: ip('10.0.1.5') }), { name: 'TsnetError', kind: 'invalid', message: /address 10\.0\.1\.5 is outside pool 10\.0\.0\.0\/24/ })
  t.throws(() => pick({ pool, preferred: ip('10.0.0.0') }), { name: 'TsnetError', kind: 'invalid', message: /10\.0\.0\.0 is the network or broadcast address/ })
  t.throws(() => pick({ pool, preferred: ip('10.0.0.255') }), { name: 'TsnetError', kind: 'invalid', message: /10\.0\.0\.255 is the network or broadcast address/ })
  t.throws(() => pick({ pool, preferred: ip('10.0.0.9'), used: used('10.0.0.9') }), { name: 'TsnetError', kind: 'conflict', message: /10\.0\.0\.9 is already in use in pool 10\.0\.0\.0\/24/ })
  t.throws(() => pick({ pool, preferred: ip('::1'), poolId: 'LocalDefault/10.0.0.0/24' }), { name: 'TsnetError', kind: 'invalid', message: /::1 is not an IPv4 address, but pool LocalDefault\/10\.0\.0\.0\/24 is/ })
  t.throws(() => pick({ pool: pfx('fd00::/64'), preferred: ip('10.0.0.1') }), { name: 'TsnetError', kind: 'invalid', message: /not an IPv6 address/ })
  t.equal(pick({ pool: pfx('fd00::/64'), preferred: ip('fd00::ffff:ffff:ffff:ffff') }), 'fd00::ffff:ffff:ffff:ffff', 'IPv6 last address')
  t.throws(() => pick({ pool: pfx('fd00::/64'), preferred: ip('fd00::') }), { name: 'TsnetError', kind: 'invalid', message: /network or broadcast/ })
})

t.test('parsePoolRequest', async (t) => {
  const show = (r: ReturnType<typeof parsePoolRequest>) => ({ pool: fmt(r.pool), subPool: fmt(r.subPool), sizeOnly: r.sizeOnly })
  t.same(parsePoolRequest('', '', false), {}, 'no pool: automatic')
  t.same(parsePoolRequest('', '', true), {})
  t.same(show(parsePoolRequest('10.0.0.0/24', '', false)), { pool: '10.0.0.0/24', subPool: undefined, sizeOnly: undefined })
  t.same(show(parsePoolRequest('10.0.0.0/24', '10.0.0.128/25', false)), { pool: '10.0.0.0/24', subPool: '10.0.0.128/25', sizeOnly: undefined })
  t.same(show(parsePoolRequest('10.0.0.0/24', '10.0.0.0/24', false)), { pool: '10.0.0.0/24', subPool: '10.0.0.0/24', sizeOnly: undefined }, 'range = subnet')
  t.same(show(parsePoolRequest('0.0.0.0/24', '', false)), { pool: undefined, subPool: undefined, sizeOnly: 24 }, 'size-only /24')
  t.same(show(parsePoolRequest('::/64', '', true)), { pool: undefined, subPool: undefined, sizeOnly: 64 }, 'size-only IPv6')
  t.same(show(parsePoolRequest('fd00:1::/64', '', true)), { pool: 'fd00:1::/64', subPool: undefined, sizeOnly: undefined })

  t.throws(() => parsePoolRequest('10.0.0.1/24', '', false), { name: 'TsnetError', kind: 'invalid', message: /subnet 10\.0\.0\.1\/24 has host bits set; did you mean 10\.0\.0\.0\/24\?/ })
  t.throws(() => parsePoolRequest('fd00::1/64', '', true), { name: 'TsnetError', kind: 'invalid', message: /did you mean fd00::\/64\?/ })
  t.throws(() => parsePoolRequest('', '10.0.0.0/25', false), { name: 'TsnetError', kind: 'invalid', message: /IP range \(10\.0\.0\.0\/25\) needs an explicit subnet/ })
  t.throws(() => parsePoolRequest('10.0.0.0/24', '10.0.1.0/25', false), { name: 'TsnetError', kind: 'invalid', message: /IP range 10\.0\.1\.0\/25 is not inside subnet 10\.0\.0\.0\/24/ })
  t.throws(() => parsePoolRequest('10.0.0.0/24', '10.0.0.0/23', false), { name: 'TsnetError', kind: 'invalid', message: /not inside subnet/ }, 'range larger than the subnet')
  t.throws(() => parsePoolRequest('10.0.0.0/24', '10.0.0.129/25', false), { name: 'TsnetError', kind: 'invalid', message: /IP range 10\.0\.0\.129\/25 has host bits set; did you mean 10\.0\.0\.128\/25\?/ })
  t.throws(() => parsePoolRequest('10.0.0.0/24', 'bogus', false), { name: 'TsnetError', kind: 'invalid', message: /IP range "bogus" is not a valid CIDR/ })
  t.throws(() => parsePoolRequest('10.0.0.0/24', 'fd00::/120', false), { name: 'TsnetError', kind: 'invalid' }, 'range of the other family')
  t.throws(() => parsePoolRequest('fd00::/64', '', false), { name: 'TsnetError', kind: 'invalid', message: /fd00::\/64 is IPv6, but the request is for IPv4/ })
  t.throws(() => parsePoolRequest('10.0.0.0/24', '', true), { name: 'TsnetError', kind: 'invalid', message: /10\.0\.0\.0\/24 is IPv4, but the request is for IPv6/ })
  t.throws(() => parsePoolRequest('bogus', '', false), { name: 'TsnetError', kind: 'invalid', message: /subnet "bogus" is not a valid CIDR/ })
  t.throws(() => parsePoolRequest('10.0.0.0/33', '', false), { name: 'TsnetError', kind: 'invalid', message: /not a valid CIDR/ })
  t.throws(() => parsePoolRequest('0.0.0.0/0', '', false), { name: 'TsnetError', kind: 'invalid', message: /covers the whole address space/ })
})
