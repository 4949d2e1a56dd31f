/**
 * What the review page hands its simulator: the model parameters it starts with and the traces it can load
 * (counterexamples of the conformance run and of the exploration). The defaults are small enough to read and
 * large enough for the interesting paths: a journal of four entries and pulls of two make a failover with
 * delta resync possible after a few writes (`model/README.md`, "Covering and judging").
 */
import type { FencePolicy, ModelParams } from '../../model/params.ts';

/** The simulator's starting parameters. */
export const simulatorParams: Partial<ModelParams> = {
  volumeCount: 2,
  blocksPerVolume: 2,
  blockBytes: 512,
  journalEntriesMax: 4,
  pullBatchEntriesMax: 2,
  fencePolicy: 'keepWriting',
};

/** A trace the simulator can load and step through. */
export interface SimulatorTrace {
  key: string;
  title: string;
  kind: 'story' | 'divergence' | 'counterexample' | 'pasted' | 'path';
  fencePolicy: FencePolicy;
  params: Partial<ModelParams>;
  /** Formatted events (`formatEvent`). */
  events: string[];
  /** 0-based index of the step where it diverged or violated, if any. */
  step: number | null;
  /** What went wrong there, for the reviewer. */
  summary: string;
}

/** The data island of the page (`<script type="application/json" id="simulator-data">`). */
export interface SimulatorData {
  params: Partial<ModelParams>;
  traces: SimulatorTrace[];
  /** SVG id prefixes of the embedded diagrams whose states the simulator highlights (the whole chart first). */
  diagramPrefixes: string[];
}

/** The id of the data island. */
export const simulatorDataId = 'simulator-data';
