import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { claims } from '../../model/claims.ts';
import { claimTextModule, claimSeedFile } from '../../review/claim-text-cli.ts';
import { claimTexts } from '../../review/claim-text-data.ts';
import { ClaimTextError, claimTextCount, claimTextPieces, parseClaimText, storageAreas } from '../../review/claim-text.ts';

describe('the claims in their own words', () => {
  it('the committed module is what the parser reads from the seed (regenerate with npx tsx review/claim-text-cli.ts)', () => {
    // The seed sits beside the repository (../shared/seed); a clone without it still has the committed module.
    if (!existsSync(claimSeedFile)) {
      console.warn(`${claimSeedFile} is absent: the committed claim text is not compared with the seed`);
      expect(claimTexts).toHaveLength(claimTextCount);
      return;
    }
    const parsed = parseClaimText(readFileSync(claimSeedFile, 'utf8'));
    expect(claimTexts).toEqual(parsed);
    expect(claimTextModule(parsed)).toBe(readFileSync(new URL('../../review/claim-text-data.ts', import.meta.url), 'utf8'));
  });

  it('holds 40 clean claims: no margin numbers or list dashes, each citing the claim model/claims.ts says it depends on', () => {
    expect(claimTexts).toHaveLength(40);
    for (const [i, text] of claimTexts.entries()) {
      const number = i + 1;
      expect(text, `claim ${number}`).toMatch(/^A data processing system (comprising|according to claim \d+)/);
      // A margin number left in the text reads "... 15 the update information ...".
      expect(text, `claim ${number}`).not.toMatch(/\s(5|10|15|20)\s+[a-z]/);
      expect(text, `claim ${number}`).not.toMatch(/\s-\s|\n|\s{2}/);
      const cited = /according to claim (\d+)/.exec(text);
      const model = claims[i]!;
      // Claim 35 cites itself in the filing; the model reads it as depending on claim 34 (model/README.md).
      if (number === 35) expect(cited?.[1]).toBe('35');
      else expect(cited ? Number(cited[1]) : null, `claim ${number}`).toBe(model.dependsOn);
    }
    // The filing's words are kept as they are, slips included.
    expect(claimTexts[28]).toContain('stop wiring data sent from the first storage system');
  });

  it('names every storage area as a site and its volumes or journal', () => {
    const pieces = claimTextPieces(claimTexts[0]!);
    const named = pieces.flatMap((piece) => ('area' in piece ? [`${piece.text}=${piece.area.site}/${piece.area.kind}`] : []));
    expect(new Set(named)).toEqual(
      new Set(['first storage area=1/volumes', 'second storage area=1/journal', 'third storage area=2/volumes', 'fourth storage area=2/journal', 'fifth storage area=3/journal', 'sixth storage area=3/volumes']),
    );
    expect(pieces.map((piece) => piece.text).join('')).toBe(claimTexts[0]);
    // Claim 12: "a plurality of the first storage areas" is site 1's volumes.
    expect(claimTextPieces(claimTexts[11]!).find((piece) => 'area' in piece && piece.text === 'first storage areas')).toBeTruthy();
    expect(claimTextPieces(claimTexts[15]!).filter((piece) => 'part' in piece && piece.part === 'host 2')).not.toHaveLength(0);
    expect(storageAreas.map((area) => area.number)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('refuses a text that is not the claim set, saying why', () => {
    expect(() => parseClaimText('1. A data processing system comprising: x\n3. A data processing system according to claim 1')).toThrow(ClaimTextError);
    expect(() => parseClaimText('1. A data processing system comprising: x')).toThrow(/found 1 claims, expected 40/);
    const long = Array.from({ length: 40 }, (_, i) => `${i + 1}. A data processing system ${'word '.repeat(i === 3 ? 1_000 : 1)}`).join('\n');
    expect(() => parseClaimText(long)).toThrow(/claim 4: \d+ characters/);
  });
});
