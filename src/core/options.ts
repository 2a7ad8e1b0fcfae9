/** Parsing of option values as Docker's own drivers read them, shared by every mode. */
import { clip, invalid, quote } from '../errors.js'
import { type Family, parseCidr, prefixContains } from './addr.js'
import { OPT } from './docker-keys.js'
import type { SubnetRecord } from './records.js'

export const MTU_MIN = 68
export const MTU_MAX = 65535

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Go's strconv.ParseBool, which is what Docker's own drivers use for option values. */
export function parseBool(key: string, value: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false
  throw invalid(`option ${key}=${quote(value)} must be true or false`)
}

export function parseMtu(value: string, what: string): number {
  if (!/^\d+$/.test(value)) throw invalid(`${what}=${quote(value)} is not a number: the MTU must be a whole number from ${MTU_MIN} to ${MTU_MAX}`)
  if (Number(value) < MTU_MIN || Number(value) > MTU_MAX) {
    throw invalid(`${what}=${quote(value)} is out of range: the MTU must be a whole number from ${MTU_MIN} to ${MTU_MAX}`)
  }
  return Number(value)
}

/** The `-o` map as strings; which keys are known is the mode's business. */
export function genericOptions(options: Record<string, unknown>): Record<string, string> {
  const raw = options[OPT.generic]
  if (raw === undefined || raw === null) return {}
  if (!isObject(raw)) throw invalid('network options (-o) must be a map of strings')
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'string') throw invalid(`option ${clip(k)} must be a string, got ${quote(v)}`)
    out[k] = v
  }
  return out
}

/** A boolean Docker sends either as JSON or as a string. */
export function boolOption(options: Record<string, unknown>, key: string): boolean {
  const v = options[key]
  if (v === undefined || v === null) return false
  if (typeof v === 'boolean') return v
  if (typeof v === 'string') return parseBool(key, v)
  throw invalid(`option ${key} must be true or false, got ${quote(v)}`)
}

/** IPAM data as Docker passes it to CreateNetwork. */
export interface SubnetInput {
  Pool: string
  Gateway?: string
  AuxAddresses?: Record<string, string> | null
}

export function parseSubnets(list: SubnetInput[] | null | undefined, family: Family): SubnetRecord[] {
  return (list ?? []).map((d) => {
    const pool = parseCidr(d.Pool)
    if (!pool || pool.ip.family !== family) throw invalid(`IPv${family} pool ${quote(d.Pool)} is not a valid IPv${family} CIDR`)
    const record: SubnetRecord = { pool: d.Pool }
    const inPool = (text: string, what: string) => {
      const c = parseCidr(text)
      if (!c || !prefixContains(pool.prefix, c.ip)) throw invalid(`${what} ${quote(text)} is not an address inside pool ${d.Pool}`)
      return text
    }
    if (d.Gateway !== undefined && d.Gateway !== '') record.gateway = inPool(d.Gateway, 'gateway')
    if (d.AuxAddresses && Object.keys(d.AuxAddresses).length > 0) {
      record.auxAddresses = {}
      for (const [name, addr] of Object.entries(d.AuxAddresses)) record.auxAddresses[name] = inPool(addr, `aux address ${name}`)
    }
    return record
  })
}

/** JSON with object keys sorted, so records built in different orders compare equal. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (isObject(v) ? Object.fromEntries(Object.entries(v).sort(([x], [y]) => x.localeCompare(y))) : v))
}
