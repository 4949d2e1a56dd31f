/**
 * Starts a worker thread that runs a TypeScript module under tsx (Node 20 workers do not inherit the
 * parent's loader), sends it `workerData`, and resolves with the first message it posts.
 */
import { Worker } from 'node:worker_threads';

/** Runs `moduleUrl` in a worker with `workerData`; resolves with its first message. */
export function runTypeScriptWorker<T>(moduleUrl: URL, workerData: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    // A small bootstrap registers tsx's loader in the worker, then imports the module.
    const bootstrap = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then(({ register }) => { register(); return import(${JSON.stringify(moduleUrl.href)}); });`;
    const worker = new Worker(bootstrap, { eval: true, workerData });
    worker.once('message', (message: T) => {
      resolve(message);
      void worker.terminate();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`worker ${moduleUrl.pathname} exited with ${code}`));
    });
  });
}
