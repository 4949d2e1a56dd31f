// A StrykerJS ignorer (https://stryker-mutator.io/docs/stryker-js/configuration/#ignorers-string): the mutants
// the mutation score does not count, each for a stated reason. Ignored mutants still appear in
// reports/mutation/mutation.json with status "Ignored" and the reason, so the raw figures stay visible.
//
// 1. Invariant checks, `assert(condition, invariant, message)` (impl/core/invariant.ts). A mutant that weakens the
//    condition changes nothing on a correct run: the check fires only on a bug, and no test of a correct
//    implementation can kill it. The checks still run in every test: a mutant elsewhere that breaks an
//    invariant is killed by the InvariantError it raises.
// 2. The prose of an error's message: a string or template literal with a space in its text, passed to an
//    `...Error(...)` constructor or to `super(...)` in an error class ('the site is failed',
//    `role ${role}, sync pair ${pair}`). What a person reads, not what the system does. The typed error
//    class, its fields (the offset, the update number, the limit) and its one-word codes ('fencePolicy',
//    'resyncRequest.changed') are not ignored and stay mutated.
import { PluginKind, declareClassPlugin } from '@stryker-mutator/api/plugin';

/** True if the node at `path` is the statement `assert(...);`. */
function isAssertStatement(path) {
  const node = path.node;
  return (
    node.type === 'ExpressionStatement' &&
    node.expression.type === 'CallExpression' &&
    node.expression.callee.type === 'Identifier' &&
    node.expression.callee.name === 'assert'
  );
}

/** True if the node at `path` is prose (a literal with a space) given to `new SomethingError(...)` or an error class's `super(...)`. */
function isErrorMessageText(path) {
  const node = path.node;
  if (node.type === 'StringLiteral') {
    if (!/\s/.test(node.value)) return false;
  } else if (node.type === 'TemplateLiteral') {
    if (!node.quasis.some((quasi) => /\s/.test(quasi.value.cooked ?? quasi.value.raw))) return false;
  } else return false;
  // Climb through the expressions that only build the text (concatenation, conditional, template parts).
  let child = path;
  let parent = path.parentPath;
  while (parent && (parent.node.type === 'BinaryExpression' || parent.node.type === 'ConditionalExpression' || parent.node.type === 'TemplateLiteral')) {
    child = parent;
    parent = parent.parentPath;
  }
  if (!parent || !parent.node.arguments?.includes(child.node)) return false;
  const callee = parent.node.callee;
  // `new SomethingError(...)`, or `super(...)` in the constructor of an error class.
  if (parent.node.type === 'NewExpression') return callee.type === 'Identifier' && /Error$/.test(callee.name);
  if (parent.node.type !== 'CallExpression' || callee.type !== 'Super') return false;
  const owner = path.findParent((ancestor) => ancestor.isClassDeclaration() || ancestor.isClassExpression());
  const superClass = owner?.node.superClass;
  return superClass?.type === 'Identifier' && /Error$/.test(superClass.name);
}

class InvariantAndMessageIgnorer {
  shouldIgnore(path) {
    if (isAssertStatement(path)) return 'Invariant check: weakening it is invisible on a correct run (see stryker-plugins/invariant-and-message-ignorer.mjs)';
    if (isErrorMessageText(path)) return 'Error message text: read by people, not by the system (the error class and its fields stay mutated)';
    return undefined;
  }
}

export const strykerPlugins = [declareClassPlugin(PluginKind.Ignore, 'invariant-and-message', InvariantAndMessageIgnorer)];
