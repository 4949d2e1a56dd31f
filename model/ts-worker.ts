/**
 * Starts worker threads that run a TypeScript module under tsx (Node 20 workers do not inherit the
 * parent's loader): a one-shot worker that answers one message, or a long-lived one the caller talks to.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Starts `moduleUrl` in a worker thread with tsx's loader registered first; `options` are the Worker's
 * (`workerData`, `transferList`, ...). The caller owns the worker and ends it.
 */
export function startTypeScriptWorker(moduleUrl: URL, options: Omit<WorkerOptions, 'eval'> = {}): Worker {
  // A small bootstrap registers tsx's loader in the worker, then imports the module.
  const bootstrap = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then(({ register }) => { register(); return import(${JSON.stringify(moduleUrl.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}

/** Runs `moduleUrl` in a worker with `workerData`; resolves with its first message. */
export function runTypeScriptWorker<T>(moduleUrl: URL, workerData: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const worker = startTypeScriptWorker(moduleUrl, { workerData });
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
