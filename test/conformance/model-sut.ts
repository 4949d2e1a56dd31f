/**
 * A system under test made of the model's own semantics: it lets the harness be tested on its own (it must
 * pass everything against it) and, with a mutation, shows that the lockstep loop catches each kind of
 * divergence. Test code only.
 */
import type { StepOutcome, SystemUnderTest } from '../../conformance/sut.ts';
import type { ModelEvent } from '../../model/events.ts';
import type { Observation } from '../../model/observation.ts';
import { observe } from '../../model/observe.ts';
import type { ModelParams } from '../../model/params.ts';
import { apply, check, failoverRefusedByJudge } from '../../model/semantics.ts';
import { initialContext, type ModelContext } from '../../model/state.ts';

export class ModelSut implements SystemUnderTest {
  context: ModelContext;
  constructor(
    params: ModelParams,
    private readonly mutate: (observation: Observation, context: ModelContext) => Observation = (o) => o,
  ) {
    this.context = initialContext(params);
  }

  apply(event: ModelEvent): StepOutcome {
    const refusal = check(this.context, event);
    if (refusal) return { accepted: false, code: refusal.code, message: refusal.reason };
    const refusedByJudge = failoverRefusedByJudge(this.context, event);
    this.context = apply(this.context, event);
    if (refusedByJudge) return { accepted: false, code: 'RemoteAhead', message: 'remote ahead' };
    return { accepted: true };
  }

  observe(): Observation {
    return this.mutate(observe(this.context), this.context);
  }

  close(): void {}
}
