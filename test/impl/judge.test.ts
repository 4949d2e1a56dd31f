/**
 * The judge (claims 18, 19, 20, 28) as a pure function: every verdict at its boundary, and the covering
 * rule that makes a delta resync possible (P5).
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { judge, journalCovers } from '../../impl/core/judge.ts';

describe('judge', () => {
  it('gives each verdict at its boundary', () => {
    const source = { sourceLast: 10, journalFirst: 6, takeover: null };
    expect(judge({ ...source, received: 11 })).toBe('remoteAhead');
    expect(judge({ ...source, received: 10 })).toBe('noUpdateRequired');
    expect(judge({ ...source, received: 9 })).toBe('deltaResync');
    expect(judge({ ...source, received: 5 })).toBe('deltaResync');
    expect(judge({ ...source, received: 4 })).toBe('fullCopy');
    expect(judge({ ...source, received: 0 })).toBe('fullCopy');
  });

  it('finds site 3 ahead of the takeover point even when the source has moved on since', () => {
    expect(judge({ received: 8, sourceLast: 10, journalFirst: 1, takeover: 7 })).toBe('remoteAhead');
    expect(judge({ received: 7, sourceLast: 10, journalFirst: 1, takeover: 7 })).toBe('deltaResync');
  });

  it('says delta resync exactly when the journal covers and something is missing (property)', () => {
    fc.assert(
      fc.property(fc.nat(50), fc.nat(50), fc.nat(60), (last, held, received) => {
        const journalFirst = last + 1 - Math.min(held, last);
        const verdict = judge({ received, sourceLast: last, journalFirst, takeover: null });
        const covers = received <= last && journalFirst <= received + 1;
        expect(journalCovers(journalFirst, last, received)).toBe(covers);
        if (received > last) expect(verdict).toBe('remoteAhead');
        else if (received === last) expect(verdict).toBe('noUpdateRequired');
        else expect(verdict).toBe(covers ? 'deltaResync' : 'fullCopy');
      }),
    );
  });
});
