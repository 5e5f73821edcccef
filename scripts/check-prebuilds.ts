/**
 * Run by `prepack`, after `npm run prebuildify`: refuses to pack a tarball without the prebuilt
 * addon for linux-x64. prebuildify builds for the machine it runs on, so a pack made elsewhere
 * (macOS, arm64) would silently ship no linux-x64 binary, and every Linux user would then need a
 * compiler; better to stop here and pack on linux-x64.
 *
 * Runs under Node's native type stripping, so it uses erasable syntax and `node:` modules only.
 *
 * Usage: `node scripts/check-prebuilds.ts` (from the repository's root).
 */
import * as fs from 'node:fs';

const FOLDER = 'prebuilds/linux-x64';

const binaries = fs.existsSync(FOLDER) ? fs.readdirSync(FOLDER).filter((name) => name.endsWith('.node')) : [];
if (binaries.length === 0) {
  process.stderr.write(
    `check-prebuilds: no prebuilt addon in ${FOLDER} (this machine is ${process.platform}-${process.arch}); ` +
      'pack the package on linux-x64, where `npm run prebuildify` makes it\n',
  );
  process.exit(1);
}
process.stdout.write(`check-prebuilds: ${FOLDER}/${binaries.join(', ')}\n`);
