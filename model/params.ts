/**
 * The bounds of the model. They make the reachable state space finite and small by default; larger bounds
 * are flags of `npm run explore`. Every limit is named with its unit last (TIGER_STYLE).
 */

/** Fence policy: what site 1 does when its sync secondary is unreachable (DESIGN.md section 7). */
export type FencePolicy = 'refuse' | 'keepWriting';

/** The parameters of one bounded model. */
export interface ModelParams {
  /** Volumes per site, one consistency group (claims 12, 13, 14). */
  volumeCount: number;
  /** Blocks per volume. */
  blocksPerVolume: number;
  /** Bytes per block: the unit of the changed-block record; images and digests are predicted byte by byte. */
  blockBytes: number;
  /**
   * Whether the explorer also tries byte-range host writes ({@link byteRangeShapes} of `events.ts`: across a
   * block boundary, ending mid-block, starting mid-block). Meant for a small geometry (a few blocks of a few
   * bytes); whole-block writes only when false.
   */
  byteWrites: boolean;
  /** Capacity of every journal, in entries. */
  journalEntriesMax: number;
  /** Entries site 3 takes in one pull. */
  pullBatchEntriesMax: number;
  /** Host writes in one path (an exploration bound, not a refusal). */
  writesMax: number;
  /** Site failures plus link cuts in one path (an exploration bound, not a refusal). */
  faultsMax: number;
  fencePolicy: FencePolicy;
}

/** Default bounds: explored fully in seconds on two cores. */
export const defaultParams: ModelParams = {
  volumeCount: 2,
  blocksPerVolume: 1,
  blockBytes: 512,
  journalEntriesMax: 1,
  pullBatchEntriesMax: 1,
  writesMax: 2,
  faultsMax: 2,
  byteWrites: false,
  fencePolicy: 'keepWriting',
};

/** Upper limits on every parameter, so that a typo cannot ask for an unbounded exploration. */
export const paramsMax: Readonly<Record<Exclude<keyof ModelParams, 'fencePolicy' | 'byteWrites'>, number>> = {
  volumeCount: 8,
  blocksPerVolume: 64,
  blockBytes: 65_536,
  journalEntriesMax: 64,
  pullBatchEntriesMax: 64,
  writesMax: 12,
  faultsMax: 8,
};

/** Thrown when model parameters are out of their bounds. */
export class ModelParamsError extends Error {
  constructor(
    readonly param: string,
    readonly value: unknown,
    readonly reason: string,
  ) {
    super(`model parameter ${param}=${String(value)}: ${reason}`);
    this.name = 'ModelParamsError';
  }
}

/** Validates parameters, returning them complete; throws {@link ModelParamsError}. */
export function validateParams(partial: Partial<ModelParams>): ModelParams {
  const params: ModelParams = { ...defaultParams, ...partial };
  for (const [key, max] of Object.entries(paramsMax) as [keyof typeof paramsMax, number][]) {
    const value = params[key];
    if (!Number.isInteger(value) || value < 1) throw new ModelParamsError(key, value, 'must be an integer >= 1');
    if (value > max) throw new ModelParamsError(key, value, `must be <= ${max}`);
  }
  if (params.blockBytes & (params.blockBytes - 1)) {
    throw new ModelParamsError('blockBytes', params.blockBytes, 'must be a power of two');
  }
  if (typeof params.byteWrites !== 'boolean') throw new ModelParamsError('byteWrites', params.byteWrites, 'must be a boolean');
  if (params.fencePolicy !== 'refuse' && params.fencePolicy !== 'keepWriting') {
    throw new ModelParamsError('fencePolicy', params.fencePolicy, "must be 'refuse' or 'keepWriting'");
  }
  return params;
}
