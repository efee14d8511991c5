/** CIDRs, apart from the values checks (which read render's names) so render can use them too. */
import {BlockList, isIP} from 'node:net'

export function isCidr(s: string): boolean {
  const [addr, bits, ...more] = s.split('/')
  if (more.length || addr === undefined || bits === undefined || !/^\d{1,3}$/.test(bits)) return false
  const v = isIP(addr)
  return v !== 0 && Number(bits) <= (v === 4 ? 32 : 128)
}

/** Whether the address `ip` is in `cidr` (both of one family). */
export function inCidr(ip: string, cidr: string): boolean {
  const [net, bitsText] = cidr.split('/') as [string, string]
  if (isIP(ip) !== isIP(net)) return false
  const list = new BlockList()
  list.addSubnet(net, Number(bitsText), isIP(net) === 6 ? 'ipv6' : 'ipv4')
  return list.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4')
}
