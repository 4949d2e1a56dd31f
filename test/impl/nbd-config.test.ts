/**
 * The NBD port's limits in cluster.json (impl/site/deployment-config.ts), at their boundaries: the
 * deadlines within [nbdTimeoutMsMin, nbdTimeoutMsMax], the payload budget no smaller than one largest
 * request beside every admitted connection's guarantee; the defaults are the server's constants; a bad value
 * is a ConfigError naming its field. And the memory bound a site prints (impl/site/site-memory.ts).
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../impl/core/errors.ts';
import { NbdPayloadBudget, nbdBufferedBytesMaxDefault, nbdConnectionBytesGuaranteed } from '../../impl/net/nbd-budget.ts';
import { nbdConnectionsMax } from '../../impl/net/nbd-protocol.ts';
import { nbdFrameTimeoutMsDefault, nbdHandshakeTimeoutMsDefault, nbdIdleTimeoutMsDefault, nbdMemoryBytesMax, nbdServerLimitsDefault, nbdTimeoutMsMax, nbdTimeoutMsMin } from '../../impl/net/nbd-server.ts';
import { localDeploymentConfig, nbdBufferedBytesCeiling, validateDeploymentConfig } from '../../impl/site/deployment-config.ts';
import { formatMemoryBound, siteMemoryBound } from '../../impl/site/site-memory.ts';

const base = localDeploymentConfig({ cluster: 'nbd-config', dir: '/tmp/nbd-config', basePort: 21000 });
const validate = (fields: Record<string, unknown>) => validateDeploymentConfig({ ...base, ...fields }, '/tmp/nbd-config');
const refusal = (fields: Record<string, unknown>): string | undefined => {
  try {
    validate(fields);
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).field;
  }
};

describe('NBD limits in cluster.json', () => {
  it('default to the server constants', () => {
    const config = validate({});
    expect(config).toMatchObject({
      nbdHandshakeTimeoutMs: nbdHandshakeTimeoutMsDefault,
      nbdIdleTimeoutMs: nbdIdleTimeoutMsDefault,
      nbdFrameTimeoutMs: nbdFrameTimeoutMsDefault,
      nbdBufferedBytesMax: nbdBufferedBytesMaxDefault,
    });
  });

  it('take each deadline within its bounds and refuse one past either', () => {
    for (const field of ['nbdHandshakeTimeoutMs', 'nbdIdleTimeoutMs', 'nbdFrameTimeoutMs']) {
      expect(validate({ [field]: nbdTimeoutMsMin })[field as 'nbdIdleTimeoutMs']).toBe(nbdTimeoutMsMin);
      expect(validate({ [field]: nbdTimeoutMsMax })[field as 'nbdIdleTimeoutMs']).toBe(nbdTimeoutMsMax);
      expect(refusal({ [field]: nbdTimeoutMsMin - 1 })).toBe(field);
      expect(refusal({ [field]: nbdTimeoutMsMax + 1 })).toBe(field);
      expect(refusal({ [field]: '5000' })).toBe(field);
    }
  });

  it('take a payload budget that fits one largest request beside every guarantee, and not a byte less', () => {
    const min = NbdPayloadBudget.bytesMin(nbdConnectionBytesGuaranteed, nbdConnectionsMax);
    expect(validate({ nbdBufferedBytesMax: min }).nbdBufferedBytesMax).toBe(min);
    expect(refusal({ nbdBufferedBytesMax: min - 1 })).toBe('nbdBufferedBytesMax');
    expect(validate({ nbdBufferedBytesMax: nbdBufferedBytesCeiling }).nbdBufferedBytesMax).toBe(nbdBufferedBytesCeiling);
    expect(refusal({ nbdBufferedBytesMax: nbdBufferedBytesCeiling + 1 })).toBe('nbdBufferedBytesMax');
  });
});

describe('a site memory bound', () => {
  it('adds twice the NBD buffers, the peer queues and the working room to the RSS at start, and prints the sum', () => {
    const bound = siteMemoryBound(100 * 2 ** 20, nbdServerLimitsDefault);
    expect(bound.nbdBytes).toBe(2 * nbdMemoryBytesMax(nbdServerLimitsDefault));
    expect(bound.totalBytes).toBe(bound.rssAtStartBytes + bound.nbdBytes + bound.peerQueueBytes + bound.workingBytes);
    expect(formatMemoryBound(bound)).toContain(`memory bound: peak RSS at most ${bound.totalBytes} bytes`);
  });
});
