/**
 * Vitest global setup: the system packages some tests need (a browser for the review page; qemu, libnbd,
 * nbdkit and fio as clients of the NBD server). A test suite that silently skips what it cannot run proves
 * nothing, so a missing binary is installed with apt-get when the suite runs as root, and otherwise the run
 * fails with the package to install named. Add an entry to {@link systemPackages} for every binary a test needs.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** A binary a test needs and the Debian package that provides it. */
export interface SystemPackage {
  /** An absolute path, or a command name looked up on PATH. */
  binary: string;
  package: string;
  /** Which tests need it. */
  neededBy: string;
}

/** Every system binary the test suite needs. */
export const systemPackages: readonly SystemPackage[] = [
  { binary: '/usr/bin/chromium', package: 'chromium', neededBy: 'test/review/page.test.ts (the review page in a headless browser)' },
  { binary: '/usr/bin/qemu-io', package: 'qemu-utils', neededBy: "test/impl/nbd-server.test.ts (qemu's NBD client reads and writes the exports)" },
  { binary: '/usr/bin/qemu-img', package: 'qemu-utils', neededBy: 'test/impl/nbd-server.test.ts (qemu-img compare of two exports)' },
  { binary: '/usr/bin/nbdinfo', package: 'libnbd-bin', neededBy: 'test/impl/nbd-server.test.ts (libnbd lists the exports and their block sizes)' },
  { binary: '/usr/bin/nbdcopy', package: 'libnbd-bin', neededBy: 'test/impl/nbd-server.test.ts (libnbd copies an export to a file and back)' },
  { binary: '/usr/bin/nbdkit', package: 'nbdkit', neededBy: 'test/impl/nbd-server.test.ts (a pattern source for nbdcopy into a read-only export)' },
  { binary: '/usr/bin/fio', package: 'fio', neededBy: "test/impl/nbd-server.test.ts (fio's nbd engine: pipelined random writes, verified)" },
];

/** How long apt-get may wait for the dpkg lock (another install may be running), in seconds. */
export const aptLockTimeoutSeconds = 900;

/** Whether `binary` exists and is executable (an absolute path, or a name found on PATH). */
export function hasBinary(binary: string): boolean {
  const candidates = binary.includes('/') ? [binary] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, binary));
  return candidates.some((candidate) => {
    try {
      accessSync(candidate, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Thrown when a needed binary is missing and cannot be installed here. */
export class MissingSystemPackageError extends Error {
  constructor(readonly missing: readonly SystemPackage[]) {
    const names = [...new Set(missing.map((entry) => entry.package))].join(' ');
    super(
      `missing system package(s): ${names}\n` +
        missing.map((entry) => `  ${entry.binary} (package ${entry.package}) is needed by ${entry.neededBy}`).join('\n') +
        `\ninstall with: sudo apt-get install -y ${names}`,
    );
    this.name = 'MissingSystemPackageError';
  }
}

function aptGet(args: string[]): void {
  execFileSync('apt-get', ['-o', `DPkg::Lock::Timeout=${aptLockTimeoutSeconds}`, ...args], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
}

/** Installs what is missing (as root) or fails naming it. */
export default function setup(): void {
  const missing = systemPackages.filter((entry) => !hasBinary(entry.binary));
  if (missing.length === 0) return;
  const isRoot = process.getuid?.() === 0;
  if (!isRoot || !hasBinary('apt-get')) throw new MissingSystemPackageError(missing);
  const names = [...new Set(missing.map((entry) => entry.package))];
  console.log(`installing system package(s) the tests need: ${names.join(' ')}`);
  try {
    aptGet(['install', '-y', '--no-install-recommends', ...names]);
  } catch {
    // The package lists may be missing or stale on a fresh machine: refresh them once and retry.
    aptGet(['update']);
    aptGet(['install', '-y', '--no-install-recommends', ...names]);
  }
  const still = missing.filter((entry) => !hasBinary(entry.binary));
  if (still.length > 0) throw new MissingSystemPackageError(still);
}
