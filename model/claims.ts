/**
 * The 40 claims of `shared/seed/claims.txt`, each as a short subject line for traceability tables and the
 * review page. Claim 35 reads "according to claim 35"; we read it as depending on claim 34.
 */

/** A claim: its number, the claim it depends on, and its subject in one line. */
export interface Claim {
  number: number;
  dependsOn: number | null;
  subject: string;
  /**
   * For a claim that reads "at specified time intervals" (9, 24, 38): what stands for the interval in the
   * model, which has no clock ({@link intervalStandIn}).
   */
  interval?: string;
}

/**
 * Why the model needs no clock for "at specified time intervals": an interval elapsing is an event, and the
 * explorer tries it between any two other events.
 */
const intervalReasoning =
  'The model has no clock; the implementation pulls when its timer fires (pullIntervalTicks in one process, pullIntervalMs in a site process), and the model lets that pull happen between any two other events. ' +
  'The explorer takes every interleaving within its bounds, so between two pulls it puts every number of host writes, failures, link cuts and restores, from none to all the bounds allow: ' +
  'an interval short enough to pull after each write, and one long enough for the journal to overflow first, are both paths it checked. RESTORE_JOURNAL is the restore interval elapsing, explored the same way.';

/** What stands for the interval of claims 9, 24 and 38, whose source and setting differ. */
function intervalStandIn(pull: string): string {
  return `${pull} is the interval elapsing. ${intervalReasoning}`;
}

/** Every claim, in order. */
export const claims: readonly Claim[] = [
  { number: 1, dependsOn: null, subject: 'Three storage systems; site 1 journals host data; site 3 pulls the journal and restores it' },
  { number: 2, dependsOn: 1, subject: 'Writes at site 1 are synchronous with writes at site 2' },
  { number: 3, dependsOn: 2, subject: 'Site 1 asks site 2 to write and acknowledges the host only after site 2 answers; site 1 journals the write' },
  { number: 4, dependsOn: 3, subject: 'Site 1 assigns an update number and sends it with the write to site 2' },
  { number: 5, dependsOn: 3, subject: 'Site 2 answers, writes its volume and journals the write' },
  { number: 6, dependsOn: 5, subject: "Site 2 journals the update number it received from site 1" },
  { number: 7, dependsOn: 1, subject: 'Writes at site 1 are asynchronous with writes at site 3' },
  { number: 8, dependsOn: 7, subject: "Site 3 stores site 1's journal entries in its journal and restores them into its volumes" },
  { number: 9, dependsOn: 8, subject: "Site 3 reads site 1's journal at specified time intervals", interval: intervalStandIn('PULL_JOURNAL while site 1 is the source (guard pullFromSite1)') },
  { number: 10, dependsOn: 8, subject: "Site 1's journal carries the update number it generated" },
  { number: 11, dependsOn: 8, subject: "Site 3's journal carries the update number" },
  { number: 12, dependsOn: 1, subject: "Site 1 has several volumes; its journal covers all of them" },
  { number: 13, dependsOn: 1, subject: "Site 2 has several volumes; its journal covers all of them" },
  { number: 14, dependsOn: 1, subject: "Site 3 has several volumes, restored from its one journal" },
  { number: 15, dependsOn: 1, subject: "The same update number is in the journals of sites 1, 2 and 3" },
  { number: 16, dependsOn: null, subject: 'Three storage systems with a second host at site 2' },
  { number: 17, dependsOn: 16, subject: 'The same update number is in all three journals (second-host system)' },
  { number: 18, dependsOn: 17, subject: "When site 1 fails, site 3 sends site 2 its latest update number and site 2 judges whether site 3 can be updated" },
  { number: 19, dependsOn: 18, subject: "If possible, site 3 determines from site 2's journal the entries it lacks" },
  { number: 20, dependsOn: 18, subject: "If possible, site 3 reads from site 2's journal the entries it lacks (delta resync)" },
  { number: 21, dependsOn: 20, subject: "Site 2 writes host 2's data and journals it" },
  { number: 22, dependsOn: 21, subject: 'Writes at site 2 are asynchronous with writes at site 3' },
  { number: 23, dependsOn: 22, subject: "Site 3 stores site 2's journal entries and restores them" },
  { number: 24, dependsOn: 23, subject: "Site 3 reads site 2's journal at specified time intervals", interval: intervalStandIn('PULL_JOURNAL while site 2 is the source after the failover (guard pullFromSite2, sync pair suspended or resyncing)') },
  { number: 25, dependsOn: 23, subject: "Site 2 generates update numbers for host 2's writes" },
  { number: 26, dependsOn: 23, subject: "Site 3's journal carries the update number (from site 2)" },
  { number: 27, dependsOn: 23, subject: 'After site 1 fails, site 2 generates the update numbers and site 3 journals them' },
  { number: 28, dependsOn: 17, subject: "When site 1 fails, site 2 judges with its volumes whether an update of site 3 is required" },
  { number: 29, dependsOn: 16, subject: 'When site 1 fails, site 2 stops taking site 1 data and writes host 2 data; site 1 stops host 1 writes and takes site 2 data' },
  { number: 30, dependsOn: 29, subject: 'Sites 1 and 2 journal; site 3 stops reading site 1 and reads site 2' },
  { number: 31, dependsOn: 30, subject: "Site 1's and site 3's journals carry site 2's update numbers" },
  { number: 32, dependsOn: 30, subject: 'Writes at site 2 are synchronous with journal writes at site 1 (reversed)' },
  { number: 33, dependsOn: 32, subject: 'Site 2 asks site 1 to write and acknowledges host 2 after site 1 answers' },
  { number: 34, dependsOn: 33, subject: 'Site 2 generates the update number and sends it to site 1 with the write' },
  { number: 35, dependsOn: 34, subject: "Site 1 answers site 2 and journals site 2's update number (text says claim 35: read as 34)" },
  { number: 36, dependsOn: 30, subject: 'Writes at site 2 are asynchronous with writes at site 3 (reversed setting)' },
  { number: 37, dependsOn: 36, subject: "Site 3 stores site 2's journal entries and restores them (reversed setting)" },
  { number: 38, dependsOn: 37, subject: "Site 3 reads site 2's journal at specified time intervals (reversed setting)", interval: intervalStandIn('PULL_JOURNAL while site 2 is the source with the sync pair reversed (guard pullFromSite2)') },
  { number: 39, dependsOn: 37, subject: "Site 2 generates update numbers for host 2's writes (reversed setting)" },
  { number: 40, dependsOn: 37, subject: "Site 3's journal carries site 2's update numbers" },
];

/** Number of claims in the claim set. */
export const claimCount = 40;
