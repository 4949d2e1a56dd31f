/**
 * Who may read a site's files: its owner alone. A site directory holds the hosts' data (volumes, journal
 * segments) and the site's state; the README's threat model has a local user who is not the site's owner,
 * who must read none of it. Every data file is created {@link siteFileMode} and every directory of a site
 * {@link siteDirMode}; {@link protectSiteDir} tightens a site directory made looser by hand or by an older
 * version (its files then sit behind a directory no one else may enter).
 */

import * as fs from 'node:fs';

/** The mode of every data file of a site (volumes, journal segments and metadata, floor record, state files, traces). */
export const siteFileMode = 0o600;

/** The mode of a site's directory and the directories in it. */
export const siteDirMode = 0o700;

/** The permission bits that let anyone but the owner in. */
const othersBits = 0o077;

/**
 * Creates the site directory `dir` with {@link siteDirMode}, or tightens it to that mode when it lets anyone
 * but its owner in. Returns the mode it had when it was tightened (for the caller's log line), else null.
 */
export function protectSiteDir(dir: string): number | null {
  fs.mkdirSync(dir, { recursive: true, mode: siteDirMode });
  const mode = fs.statSync(dir).mode & 0o777;
  if ((mode & othersBits) === 0) return null;
  fs.chmodSync(dir, mode & ~othersBits);
  return mode;
}
