/**
 * IP addresses of connections, for the per-address connection limit and the networks exempt
 * from it. Works on multiaddrs as libp2p gives them (`/ip4/…/tcp/…`, `/ip6/…`).
 */
import { BlockList, isIPv6 } from 'node:net';
import { multiaddr } from '@multiformats/multiaddr';
import { ErrorCode, NoatunError, quote } from '../errors.js';

/** The IP address of a multiaddr, with its family, or undefined (a DNS name, a relay, …). */
export function ipOf(address: { getComponents(): { name: string; value?: string | undefined }[] }): { ip: string; family: 'ipv4' | 'ipv6' } | undefined {
  for (const component of address.getComponents()) {
    if ((component.name === 'ip4' || component.name === 'ip6') && component.value !== undefined) {
      return { ip: component.value, family: component.name === 'ip4' ? 'ipv4' : 'ipv6' };
    }
  }
  return undefined;
}

/**
 * The key connections are counted under: the IPv4 address, or the /64 prefix of an IPv6 address
 * (one host usually holds a whole /64, so counting single IPv6 addresses would limit nothing).
 */
export function addressKey(ip: string, family: 'ipv4' | 'ipv6'): string {
  if (family === 'ipv4') return ip;
  return `${expandIpv6(ip).slice(0, 4).join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (an embedded IPv4 tail counts as two groups). */
function expandIpv6(ip: string): string[] {
  const [head = '', tail] = ip.split('::') as [string, string | undefined];
  const parse = (part: string): string[] => {
    if (part === '') return [];
    const groups = part.split(':');
    const last = groups[groups.length - 1]!;
    if (last.includes('.')) {
      const bytes = last.split('.').map(Number);
      groups.splice(-1, 1, ((bytes[0]! << 8) | bytes[1]!).toString(16), ((bytes[2]! << 8) | bytes[3]!).toString(16));
    }
    return groups.map((group) => Number.parseInt(group, 16).toString(16));
  };
  const front = parse(head);
  const back = tail === undefined ? [] : parse(tail);
  const zeros = tail === undefined ? [] : Array<string>(Math.max(0, 8 - front.length - back.length)).fill('0');
  return [...front, ...zeros, ...back];
}

/**
 * Networks exempt from the per-address limits (given as libp2p's `/ip4/<net>/ipcidr/<bits>`
 * multiaddrs). Throws `INVALID_ARGUMENT` on anything else.
 */
export class TrustedNetworks {
  readonly #list = new BlockList();
  readonly #empty: boolean;

  constructor(networks: readonly string[]) {
    for (const network of networks) {
      const components = (() => {
        try {
          return multiaddr(network).getComponents();
        } catch {
          return [];
        }
      })();
      const [ip, cidr] = components;
      if (components.length !== 2 || (ip?.name !== 'ip4' && ip?.name !== 'ip6') || cidr?.name !== 'ipcidr' || ip.value === undefined) {
        throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `not a network (like /ip4/127.0.0.0/ipcidr/8): ${quote(network)}`);
      }
      this.#list.addSubnet(ip.value, Number(cidr.value), ip.name === 'ip4' ? 'ipv4' : 'ipv6');
    }
    this.#empty = networks.length === 0;
  }

  /** Whether `ip` lies in one of the networks. */
  has(ip: string, family: 'ipv4' | 'ipv6' = isIPv6(ip) ? 'ipv6' : 'ipv4'): boolean {
    return !this.#empty && this.#list.check(ip, family);
  }
}
