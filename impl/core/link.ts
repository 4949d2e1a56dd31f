/**
 * The vocabulary of the links between sites, shared by every transport: the in-process deterministic one
 * (`impl/cluster/transport.ts`) and the TCP peer links (`impl/net/transport-tcp.ts`). It lives in the core
 * because a storage system's handlers address their messages with it; the transports implement the carrying.
 */

/** A site on a link. */
export type LinkSite = 1 | 2 | 3;

/** Whether a value names a site on a link (wire input is checked with it). */
export function isLinkSite(value: unknown): value is LinkSite {
  return value === 1 || value === 2 || value === 3;
}

/** A message on its way: sender, receiver, and the message itself. */
export interface Envelope<M> {
  readonly from: LinkSite;
  readonly to: LinkSite;
  readonly message: M;
}

/** The name of a link, smaller site first: `"1-2"`. */
export function linkName(a: LinkSite, b: LinkSite): string {
  return a < b ? `${a}-${b}` : `${b}-${a}`;
}
