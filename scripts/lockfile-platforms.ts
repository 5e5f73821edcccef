/**
 * Adds lockfile entries for the platform-specific optional packages that the npm registry this
 * project is built against does not serve (biome's and msgpackr-extract's binaries for other
 * platforms). `npm install` skips them, but `npm ci` refuses a lockfile that lacks them. The
 * entries carry `os`/`cpu`, so npm never fetches them on this platform.
 *
 * Run after a dependency update: node --import=tsx scripts/lockfile-platforms.ts
 */
import * as fs from 'node:fs';

type Entry = { version: string; optional?: boolean; dev?: boolean; os?: string[]; cpu?: string[]; libc?: string[] };
const lock = JSON.parse(fs.readFileSync('package-lock.json', 'utf8')) as { packages: Record<string, Entry> };
const packages = lock.packages;

const PLATFORMS: Record<string, [string, string, string?]> = {
  'android-arm64': ['android', 'arm64'],
  'android-x64': ['android', 'x64'],
  'darwin-arm64': ['darwin', 'arm64'],
  'darwin-x64': ['darwin', 'x64'],
  'linux-arm': ['linux', 'arm'],
  'linux-arm64': ['linux', 'arm64'],
  'linux-x64': ['linux', 'x64'],
  'linux-arm64-musl': ['linux', 'arm64', 'musl'],
  'linux-x64-musl': ['linux', 'x64', 'musl'],
  'win32-arm64': ['win32', 'arm64'],
  'win32-x64': ['win32', 'x64'],
};

let added = 0;
for (const [path, entry] of Object.entries(packages)) {
  const optional = (entry as { optionalDependencies?: Record<string, string> }).optionalDependencies ?? {};
  for (const [name, version] of Object.entries(optional)) {
    const key = `node_modules/${name}`;
    if (packages[key] !== undefined || packages[`${path}/${key}`] !== undefined) continue;
    const platform = Object.keys(PLATFORMS).find((p) => name.endsWith(`-${p}`));
    if (platform === undefined) continue;
    const [os, cpu, libc] = PLATFORMS[platform]!;
    // Keys in the order npm writes them, so a later `npm install` leaves the file unchanged.
    const added_: Entry = { version: version.replace(/^[\^~]/, ''), cpu: [cpu] };
    if (entry.dev === true) added_.dev = true;
    if (libc !== undefined) added_.libc = [libc];
    added_.optional = true;
    added_.os = [os];
    packages[key] = added_;
    added++;
  }
}
lock.packages = Object.fromEntries(Object.entries(packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : 1)));
fs.writeFileSync('package-lock.json', `${JSON.stringify(lock, null, 2)}\n`);
console.log(`added ${added} platform entries`);
