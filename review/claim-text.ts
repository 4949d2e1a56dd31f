/**
 * The claims' own words on the review page: the parser that turns the claim set as filed
 * (`shared/seed/claims.txt`: a scanned patent with page-line numbers 5, 10, 15, 20 in the margin, list dashes
 * and page breaks inside sentences) into one clean paragraph per claim, and the mapping of the claims'
 * vocabulary (first..sixth storage area, first..third storage system, first and second host device) to the
 * sites, volumes and journals of this project (shared/DESIGN.md, "The parts").
 *
 * The seed lives outside the repository, so the parsed text is committed as `claim-text-data.ts`, written by
 * `npx tsx review/claim-text-cli.ts`; `test/review/claim-text.test.ts` parses the seed again and fails when
 * the two differ.
 */

/** How many claims the claim set holds. */
export const claimTextCount = 40;

/** The longest claim text accepted, in characters (claim 16, the longest, has about 1,300). */
export const claimTextCharsMax = 4_000;

/** Thrown when the claim set's text does not have the shape the parser reads. */
export class ClaimTextError extends Error {
  constructor(
    readonly claim: number | null,
    readonly reason: string,
  ) {
    super(`claim text${claim === null ? '' : ` of claim ${claim}`}: ${reason}`);
    this.name = 'ClaimTextError';
  }
}

/** A margin line number of the scanned patent: 5, 10, 15 or 20. */
const marginNumber = /^(?:5|10|15|20)$/;

/**
 * One clean paragraph per claim, in order: margin numbers, list dashes and line breaks removed, words
 * otherwise exactly as filed (including the filing's own slips: "stop wiring", "according to claim 35").
 * Throws {@link ClaimTextError} unless the text holds claims 1..40 in order, each within {@link claimTextCharsMax}.
 */
export function parseClaimText(raw: string): string[] {
  const lines = raw.replace(/\r\n?/g, '\n').split('\n');
  const claims: string[][] = [];
  let started = false;
  for (const line of lines) {
    const head = /^\s*(?:(?:5|10|15|20)\s+)?(\d{1,2})\.\s+(A data processing system.*)$/.exec(line);
    if (head) {
      const number = Number(head[1]);
      if (number !== claims.length + 1) throw new ClaimTextError(number, `found after claim ${claims.length}`);
      claims.push([head[2]!]);
      started = true;
      continue;
    }
    if (!started) continue;
    let text = line.trim();
    if (text === '' || marginNumber.test(text)) continue;
    text = text.replace(/^-\s+/, '');
    // A margin number printed at the start of a text line: "5 a second storage system ...".
    text = text.replace(/^(?:5|10|15|20)\s+(?=[a-z])/, '');
    claims[claims.length - 1]!.push(text);
  }
  if (claims.length !== claimTextCount) throw new ClaimTextError(null, `found ${claims.length} claims, expected ${claimTextCount}`);
  return claims.map((parts, i) => {
    const text = parts.join(' ').replace(/\s+/g, ' ').trim();
    if (text.length > claimTextCharsMax) throw new ClaimTextError(i + 1, `${text.length} characters, more than ${claimTextCharsMax}`);
    return text;
  });
}

/** One of the claims' six storage areas, as this project builds it. */
export interface StorageArea {
  /** 1..6, as the claims number them ("first storage area" is 1). */
  number: number;
  /** The claims' words. */
  words: string;
  site: 1 | 2 | 3;
  /** What it is here: the site's volumes or its journal. */
  kind: 'volumes' | 'journal';
  /** One line for the page: what it holds and where the model keeps it. */
  here: string;
  /** The claims that say something of it beyond claim 1/16. */
  claims: number[];
}

/** The claims' storage areas 1-6 named as sites' volumes and journals (shared/DESIGN.md, "The parts"). */
export const storageAreas: readonly StorageArea[] = [
  { number: 1, words: 'first storage area', site: 1, kind: 'volumes', here: "site 1's data volumes (several, one consistency group: claim 12)", claims: [2, 3, 7, 12, 29, 30] },
  { number: 2, words: 'second storage area', site: 1, kind: 'journal', here: "site 1's journal: entries with update number, volume, block and data", claims: [3, 4, 8, 9, 10, 15, 17, 30, 31, 32] },
  { number: 3, words: 'third storage area', site: 2, kind: 'volumes', here: "site 2's data volumes (several: claim 13)", claims: [2, 5, 13, 21, 22, 28, 29, 32, 36] },
  { number: 4, words: 'fourth storage area', site: 2, kind: 'journal', here: "site 2's journal: what makes a delta resync possible (claims 18-20)", claims: [5, 6, 13, 15, 17, 18, 19, 20, 23, 24, 25, 27, 30, 31, 34, 37, 38, 39] },
  { number: 5, words: 'fifth storage area', site: 3, kind: 'journal', here: "site 3's journal: entries pulled (received), not yet restored", claims: [8, 11, 14, 15, 17, 18, 19, 20, 23, 26, 27, 30, 31, 37, 40] },
  { number: 6, words: 'sixth storage area', site: 3, kind: 'volumes', here: "site 3's data volumes, restored from its journal in update-number order (several: claim 14)", claims: [7, 8, 14, 22, 23, 36, 37] },
];

/** The claims' storage systems and host devices, named as sites and hosts. */
export const claimParts: readonly { words: string; here: string }[] = [
  { words: 'first storage system', here: 'site 1 (primary at start)' },
  { words: 'second storage system', here: 'site 2 (synchronous secondary at start; primary after failover)' },
  { words: 'third storage system', here: 'site 3 (asynchronous remote)' },
  { words: 'first host device', here: 'host 1 (writes at site 1)' },
  { words: 'second host device', here: 'host 2 (writes at site 2 after failover)' },
  { words: 'update number', here: "the journal entry's update number: orders every write of the consistency group" },
];

const ordinals = ['first', 'second', 'third', 'fourth', 'fifth', 'sixth'];

/** What a storage area is here, in a few words: `site 1 volumes`, `site 3 journal`. */
export function storageAreaShort(area: StorageArea): string {
  return `site ${area.site} ${area.kind}`;
}

/** A piece of claim text: plain words, or a storage area / storage system / host named in the claims' words. */
export type ClaimTextPiece = { text: string } | { text: string; area: StorageArea } | { text: string; part: string };

/**
 * A claim's text cut into pieces so the page can name each storage area (and storage system, host device)
 * where the claim mentions it: "the fourth storage area" becomes "fourth storage area [site 2 journal]".
 */
export function claimTextPieces(text: string): ClaimTextPiece[] {
  const pattern = /\b(first|second|third|fourth|fifth|sixth) storage areas?\b|\b(first|second|third) storage system\b|\b(first|second) host device\b/g;
  const pieces: ClaimTextPiece[] = [];
  let at = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > at) pieces.push({ text: text.slice(at, match.index) });
    if (match[1]) {
      pieces.push({ text: match[0], area: storageAreas[ordinals.indexOf(match[1])]! });
    } else if (match[2]) {
      pieces.push({ text: match[0], part: `site ${ordinals.indexOf(match[2]) + 1}` });
    } else {
      pieces.push({ text: match[0], part: `host ${ordinals.indexOf(match[3]!) + 1}` });
    }
    at = match.index + match[0].length;
  }
  if (at < text.length) pieces.push({ text: text.slice(at) });
  return pieces;
}
