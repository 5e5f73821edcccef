/**
 * The native memory map: reservation beyond the file, growth in place, msync, madvise, unmap.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { type NoatunError, SystemCallError } from '../../src/errors.js';
import { Advice, MappedFile } from '../../src/view/mapped-file.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

test('a file grows inside its reservation without remapping, and the new bytes read as zero', (t) => {
  const file = path.join(tempDir(), 'f.bin');
  const mapped = MappedFile.open(file, { reserveBytes: 64 * 2 ** 20, initialBytes: 4096 });
  t.true(mapped.created);
  const buffer = mapped.buffer;
  new Uint32Array(buffer, 0, 1024)[0] = 0xdeadbeef;
  mapped.grow(5 * 2 ** 20);
  t.is(mapped.buffer, buffer);
  t.true(mapped.byteLength >= 5 * 2 ** 20);
  const words = new Uint32Array(buffer, 0, mapped.byteLength / 4);
  t.is(words[0], 0xdeadbeef);
  t.is(words[words.length - 1], 0);
  words[words.length - 1] = 7;
  mapped.sync();
  mapped.advise(Advice.RANDOM);
  t.is(fs.statSync(file).size, mapped.byteLength);
  mapped.close();
  mapped.close();
  t.is(words.length, 0, 'typed arrays over an unmapped file are empty, never dangling');
  const check = execFileSync(process.execPath, ['-e', `const b = require('fs').readFileSync(${JSON.stringify(file)}); console.log(b.readUInt32LE(0), b.readUInt32LE(b.length - 4))`], { encoding: 'utf8' });
  t.is(check.trim(), `${0xdeadbeef} 7`);
});

test('growing past the reservation throws VIEW_FULL', (t) => {
  const mapped = MappedFile.open(path.join(tempDir(), 'f.bin'), { reserveBytes: 1 << 20, initialBytes: 4096 });
  const error = t.throws(() => mapped.grow(2 << 20));
  t.is((error as NoatunError).code, 'VIEW_FULL');
  mapped.close();
});

test('a failing system call becomes SYSTEM_CALL_FAILED with the errno', (t) => {
  const error = t.throws(() => MappedFile.open(tempDir(), { reserveBytes: 1 << 20, initialBytes: 4096 }));
  t.true(error instanceof SystemCallError);
  t.is((error as SystemCallError).code, 'SYSTEM_CALL_FAILED');
  t.true((error as SystemCallError).errno > 0);
});

test('using a closed file throws CLOSED', (t) => {
  const mapped = MappedFile.open(path.join(tempDir(), 'f.bin'), { reserveBytes: 1 << 20, initialBytes: 4096 });
  mapped.close();
  t.is((t.throws(() => mapped.grow(8192)) as NoatunError).code, 'CLOSED');
  t.is((t.throws(() => mapped.sync()) as NoatunError).code, 'CLOSED');
});
