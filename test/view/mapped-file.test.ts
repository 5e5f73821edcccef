/**
 * The native memory map: reservation beyond the file, growth in place, msync, madvise, unmap.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { ErrorCode, NoatunError, SystemCallError } from '../../src/errors.js';
import { Advice, assertComplete, checksum, checksumFile, loadAddon, MappedFile, type NativeMmap } from '../../src/view/mapped-file.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

test('a package root with neither a local build nor a prebuilt addon fails with NATIVE_ADDON_UNAVAILABLE', (t) => {
  const root = tempDir();
  fs.writeFileSync(path.join(root, 'package.json'), '{"name":"not-noatun"}\n');
  const error = t.throws(() => loadAddon(root), { instanceOf: NoatunError });
  t.is(error?.code, ErrorCode.NATIVE_ADDON_UNAVAILABLE);
  t.regex(error?.message ?? '', /No native build was found .*linux-x64 with glibc.*npm rebuild noatun/s);
  t.truthy(error?.cause, "the loader's own error is attached");
});

test('a prebuilt addon that does not load fails with NATIVE_ADDON_UNAVAILABLE, not a bare dlopen error', (t) => {
  const root = tempDir();
  fs.writeFileSync(path.join(root, 'package.json'), '{"name":"not-noatun"}\n');
  const folder = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  fs.mkdirSync(folder, { recursive: true });
  fs.writeFileSync(path.join(folder, 'not-noatun.node'), 'not a shared object');
  const error = t.throws(() => loadAddon(root), { instanceOf: NoatunError });
  t.is(error?.code, ErrorCode.NATIVE_ADDON_UNAVAILABLE);
});

test('an addon built from an older source is refused with NATIVE_ADDON_UNAVAILABLE, naming what it lacks', (t) => {
  const complete = loadAddon(path.resolve(import.meta.dirname, '../..'));
  t.is(assertComplete(complete), complete);
  // The addon's functions are not enumerable: copies are made by name.
  const without = (name: string) => {
    const names = ['map', 'extend', 'unmap', 'sync', 'advise', 'discard', 'allocate', 'checksum', 'checksumFile', 'lock', 'verifyIds'];
    return Object.fromEntries(names.filter((n) => n !== name).map((n) => [n, complete[n as keyof NativeMmap]])) as unknown as NativeMmap;
  };
  t.notThrows(() => assertComplete(without('none')));
  const error = t.throws(() => assertComplete(without('allocate')), { instanceOf: NoatunError });
  t.is(error?.code, ErrorCode.NATIVE_ADDON_UNAVAILABLE);
  t.regex(error?.message ?? '', /has no allocate\).*npm run build:native/);
  // Without the batch check of ids it still loads: envelopes are checked in JavaScript then.
  t.notThrows(() => assertComplete(without('verifyIds')));
});

test('a file grows inside its reservation without remapping, and the new bytes read as zero', (t) => {
  const file = path.join(tempDir(), 'f.bin');
  const mapped = MappedFile.open(file, { reserveBytes: 64 * 2 ** 20, initialBytes: 4096 });
  t.true(mapped.created);
  const buffer = mapped.buffer;
  t.is(buffer.byteLength, 4096, 'the buffer spans the file, not the reservation');
  const before = new Uint32Array(buffer, 0, 1024);
  before[0] = 0xdeadbeef;
  mapped.grow(5 * 2 ** 20);
  t.true(mapped.byteLength >= 5 * 2 ** 20);
  t.is(mapped.buffer.byteLength, mapped.byteLength);
  const words = new Uint32Array(mapped.buffer, 0, mapped.byteLength / 4);
  t.is(words[0], 0xdeadbeef);
  t.is(words[words.length - 1], 0);
  words[words.length - 1] = 7;
  // Same addresses, no remap: a write through the old buffer shows through the new one.
  before[1] = 42;
  t.is(words[1], 42);
  mapped.sync();
  mapped.advise(Advice.RANDOM);
  t.is(fs.statSync(file).size, mapped.byteLength);
  mapped.close();
  mapped.close();
  t.is(words.length, 0, 'typed arrays over an unmapped file are empty, never dangling');
  t.is(before.length, 0, 'also those over buffers from before a growth');
  const check = execFileSync(process.execPath, ['-e', `const b = require('fs').readFileSync(${JSON.stringify(file)}); console.log(b.readUInt32LE(0), b.readUInt32LE(b.length - 4))`], { encoding: 'utf8' });
  t.is(check.trim(), `${0xdeadbeef} 7`);
});

test('V8 is charged for the file, not the reservation', (t) => {
  const external = process.memoryUsage().external;
  const files = Array.from({ length: 4 }, () => MappedFile.open(path.join(tempDir(), 'f.bin'), { reserveBytes: 2 ** 30, initialBytes: 4096 }));
  // Four 1 GiB reservations once added 4 GiB of "external memory" and a full collection per open.
  t.true(process.memoryUsage().external - external < 2 ** 20);
  for (const file of files) file.close();
});

test('buffers left behind by growth are collected without unmapping the live one', (t) => {
  // In a child with --expose-gc: collect the shorter buffers of earlier sizes (their finalizers
  // run), then touch the last page of the live one and sync; a wrong unmap would kill the child.
  const module = JSON.stringify(path.join(import.meta.dirname, '../../src/view/mapped-file.ts'));
  const script = `
    const { MappedFile } = await import(${module});
    const settle = () => new Promise((resolve) => setImmediate(resolve));
    for (let round = 0; round < 20; round++) {
      const mapped = MappedFile.open(${JSON.stringify(tempDir())} + '/f' + round, { reserveBytes: 64 * 2 ** 20, initialBytes: 4096 });
      for (let size = 8192; size <= 2 ** 20; size *= 2) mapped.grow(size);
      const words = new Uint32Array(mapped.buffer, 0, mapped.byteLength / 4);
      globalThis.gc(); await settle(); globalThis.gc(); await settle();
      words[words.length - 1] = round;
      mapped.sync();
      if (round % 2 === 1) mapped.close();
    }
    globalThis.gc(); await settle(); globalThis.gc(); await settle();
    console.log('survived');`;
  const out = execFileSync(process.execPath, ['--expose-gc', '--import=tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  t.is(out.trim(), 'survived');
});

/** Minor page faults of this thread so far (Linux), or undefined elsewhere. */
function threadFaults(): number | undefined {
  try {
    const stat = fs.readFileSync('/proc/thread-self/stat', 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
  } catch {
    return undefined;
  }
}

test('a prefault makes pages present in the background, without changing what this thread writes there', async (t) => {
  const mapped = MappedFile.open(path.join(tempDir(), 'f.bin'), { reserveBytes: 64 * 2 ** 20, initialBytes: 8 * 2 ** 20 });
  const pages = mapped.byteLength / 4096;
  mapped.allocate(0, mapped.byteLength);
  const bytes = new Uint8Array(mapped.buffer);
  // Writes race with the prefault of the same pages: none may be lost.
  mapped.prefault(0, mapped.byteLength);
  for (let page = 0; page < pages; page += 3) bytes[page * 4096 + (page % 4096)] = (page % 255) + 1;
  // The work is done on libuv's pool; give it time (it takes well under a millisecond per MiB).
  for (let i = 0; i < 50; i++) await new Promise((resolve) => setTimeout(resolve, 4));
  const before = threadFaults();
  for (let page = 1; page < pages; page += 3) bytes[page * 4096 + 7] = 9;
  const after = threadFaults();
  for (let page = 0; page < pages; page++) {
    const expected = page % 3 === 0 ? (page % 255) + 1 : 0;
    if (bytes[page * 4096 + (page % 4096)] !== expected && page % 3 !== 1) t.fail(`page ${page}: ${bytes[page * 4096 + (page % 4096)]} instead of ${expected}`);
    if (page % 3 === 1 && bytes[page * 4096 + 7] !== 9) t.fail(`page ${page} lost its write`);
  }
  if (before !== undefined && after !== undefined && process.platform === 'linux') {
    // Without the prefault each of these pages (a third of 2048) faults on its first write.
    t.true(after - before < pages / 3 / 4, `${after - before} page faults writing ${Math.ceil(pages / 3)} prefaulted pages`);
  }
  mapped.close();
  t.pass();
});

test('a discard is not undone by a prefault asked for before it and still queued', async (t) => {
  // The journal asks for prefaults of the pages it grows into, then, on close, gives back the
  // blocks outside its history. A prefault that ran after that discard gave the blocks back to the
  // file (the disk check of the undo tests failed on a busy machine).
  const dir = tempDir();
  for (let round = 0; round < 20; round++) {
    const mapped = MappedFile.open(path.join(dir, `f${round}.bin`), { reserveBytes: 64 * 2 ** 20, initialBytes: 8 * 2 ** 20 });
    mapped.allocate(0, mapped.byteLength);
    mapped.prefault(0, mapped.byteLength);
    const discarded = mapped.discard(0);
    for (let i = 0; i < 10; i++) await new Promise((resolve) => setTimeout(resolve, 4));
    const blocks = fs.statSync(path.join(dir, `f${round}.bin`)).blocks * 512;
    mapped.close();
    if (!discarded) return void t.pass('this file system keeps the blocks (no hole punching): nothing to check');
    if (blocks > 2 ** 20) return void t.fail(`round ${round}: ${blocks} bytes allocated after the discard of 8 MiB`);
  }
  t.pass();
});

test('a prefault still in flight when its file closes never touches the address range again', (t) => {
  // In a child: close right after asking for a prefault, then map other files (which may take the
  // same addresses) and write to them; a prefault that ran on an unmapped range would at worst
  // fault pages in, but one touching freed memory would kill the child.
  const module = JSON.stringify(path.join(import.meta.dirname, '../../src/view/mapped-file.ts'));
  const script = `
    const { MappedFile } = await import(${module});
    const dir = ${JSON.stringify(tempDir())};
    for (let round = 0; round < 300; round++) {
      const a = MappedFile.open(dir + '/a' + (round % 4), { reserveBytes: 16 * 2 ** 20, initialBytes: 4 * 2 ** 20 });
      a.allocate(0, a.byteLength);
      a.prefault(0, a.byteLength);
      a.close();
      const b = MappedFile.open(dir + '/b' + (round % 4), { reserveBytes: 16 * 2 ** 20, initialBytes: 4 * 2 ** 20 });
      b.allocate(0, b.byteLength);
      const words = new Uint32Array(b.buffer);
      for (let i = 0; i < words.length; i += 1024) words[i] = round + 1;
      for (let i = 0; i < words.length; i += 1024) if (words[i] !== round + 1) throw new Error('lost a write in round ' + round);
      b.close();
      if (round % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    console.log('survived');`;
  const out = execFileSync(process.execPath, ['--import=tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  t.is(out.trim(), 'survived');
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

test('the native checksum is 16 bytes, deterministic, and changes with any one byte, the length and the range', (t) => {
  const bytes = new Uint8Array(4099);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 37) & 0xff;
  const base = checksum(bytes);
  t.is(base.length, 16);
  t.deepEqual(checksum(bytes.slice()), base, 'the same bytes give the same checksum');
  const seen = new Set([base.toString('hex')]);
  for (let i = 0; i < bytes.length; i++) {
    bytes[i]! ^= 1 << (i % 8); // one flipped bit at every offset (whole stripes and the tail)
    seen.add(checksum(bytes).toString('hex'));
    bytes[i]! ^= 1 << (i % 8);
  }
  t.is(seen.size, bytes.length + 1, 'every single-bit change gives a different checksum');
  t.notDeepEqual(checksum(new Uint8Array(1)), checksum(new Uint8Array(2)), 'zero bytes still count');
  t.notDeepEqual(checksum(new Uint8Array(0)), checksum(new Uint8Array(8)));
  // Typed arrays are read as their bytes, from their own offset.
  const words = new Uint32Array(bytes.buffer, 4, 100);
  t.deepEqual(checksum(words), checksum(bytes.subarray(4, 404)));
  t.throws(() => checksum('nope' as unknown as Uint8Array), { message: /typed array/ });
});

test('checksumFile reads a file range in chunks and gives the checksum of the same bytes in memory', (t) => {
  const bytes = new Uint8Array(3 * 1024 * 1024 + 77); // more than one 1 MiB chunk, a ragged tail
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
  const file = path.join(tempDir(), 'range.bin');
  fs.writeFileSync(file, bytes);
  for (const [offset, length] of [
    [0, bytes.length],
    [0, 1024 * 1024],
    [5, 2 * 1024 * 1024 + 3],
    [bytes.length - 31, 31],
    [100, 0],
  ] as const) {
    t.deepEqual(checksumFile(file, offset, length), checksum(bytes.subarray(offset, offset + length)), `${offset}+${length}`);
  }
  const error = t.throws(() => checksumFile(file, bytes.length - 10, 20)) as NoatunError;
  t.is(error.code, 'SYSTEM_CALL_FAILED', 'a range past the end of the file');
  t.is((t.throws(() => checksumFile(path.join(tempDir(), 'none'), 0, 1)) as NoatunError).code, 'SYSTEM_CALL_FAILED');
});
