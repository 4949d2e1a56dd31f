#!/usr/bin/env node
// The `threesite` command (impl/site/cli.ts), run from TypeScript through tsx's loader.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../impl/site/cli.ts');
process.exitCode = await main(process.argv.slice(2));
