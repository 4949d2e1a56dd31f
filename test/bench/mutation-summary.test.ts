/**
 * The mutation summary's arithmetic (bench/mutation-summary.ts): the score, the covered-code score, and the
 * member a no-coverage mutant sits in, on a small source with a class, getters, private methods and a
 * top-level function.
 */
import { describe, expect, it } from 'vitest';
import { coveredCodeScore, enclosingMember, score, survivorKind } from '../../bench/mutation-summary.ts';

const source = [
  'export class Site {', //                              1
  '  readonly limit = 4;', //                           2
  '  get role(): string {', //                          3
  "    return 'primary';", //                           4
  '  }', //                                             5
  '  #onFlush(from: number): void {', //                6
  '    if (from > 0) this.limit;', //                    7
  '  }', //                                             8
  '  static open<T>(x: T): T {', //                      9
  '    for (const y of [1]) assert(y > 0);', //          10
  '    return x;', //                                    11
  '  }', //                                             12
  '}', //                                               13
  'export function judge(a: number): string {', //      14
  "  return a > 1 ? 'ahead' : 'behind';", //            15
  '}', //                                               16
].join('\n');

describe('mutation summary', () => {
  it('scores killed over killed, survived and no coverage, and over covered code alone', () => {
    const counts = { killed: 90, survived: 5, noCoverage: 5, timeout: 7, errors: 0, ignored: 3 };
    expect(score(counts)).toBe(90);
    expect(coveredCodeScore(counts)).toBeCloseTo(94.74, 2);
    expect(score({ ...counts, killed: 0, survived: 0, noCoverage: 0 })).toBe(100);
  });

  it('names the member or function a line sits in', () => {
    expect(enclosingMember(source, 2)).toBe('(class fields)');
    expect(enclosingMember(source, 4)).toBe('role');
    expect(enclosingMember(source, 7)).toBe('#onFlush');
    expect(enclosingMember(source, 10)).toBe('open');
    expect(enclosingMember(source, 15)).toBe('judge');
  });

  it('sets apart a mutant inside an invariant check from one in the logic', () => {
    const at = (line: number) => ({ id: '1', mutatorName: 'ConditionalExpression', status: 'Survived' as const, location: { start: { line, column: 1 }, end: { line, column: 9 } } });
    expect(survivorKind(source, at(10))).toBe('invariant');
    expect(survivorKind(source, at(15))).toBe('logic');
  });
});
