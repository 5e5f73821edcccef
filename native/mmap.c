// Node-API addon: shared read-write file mappings for the view arena and the undo journal (with
// their pages made present ahead on libuv's pool), and the operations that pay for a native call:
// checksums of the view, the id checks of a batch of received envelopes, and the hash of a new id
// (both SHA-256 through Node's own OpenSSL), and the compression of the log's packed runs (through
// Node's own zstd).
//
// One call reserves address space larger than the file; the file is then grown with ftruncate
// from JavaScript and the existing mapping covers the new bytes, so the arena never remaps. Pages
// are given their blocks on disk (`allocate`) before they are written: see Allocate.
//
// The ArrayBuffers handed to JavaScript span the file, not the reservation: V8 counts every
// external ArrayBuffer's length as external memory and forces a full garbage collection each time
// that grows past its limit, so one 8 GiB reservation per open meant one full collection per open.
// After a growth, `extend` wraps the same mapping in a new, longer ArrayBuffer (same address: no
// remap); older buffers stay valid until they are collected or the mapping is unmapped.
//
// Touching a mapped page past the end of the file raises SIGBUS, so JavaScript only ever indexes
// typed arrays sized to the file.
//
// Failing system calls throw an Error with `syscall` and `errno` properties; src/view/mapped-file.ts
// turns them into NoatunError subclasses.
#define NAPI_VERSION 8
#include <node_api.h>
#include <openssl/evp.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// One mapping and the ArrayBuffers over it. The address space is unmapped by whichever comes
// first: the explicit unmap (which detaches every buffer still alive, so stale typed arrays read
// as empty instead of touching freed memory) or the collection of the last buffer. The struct is
// freed when every buffer and every wrap has let go of it.
typedef struct {
  void *addr;
  size_t length;       // the reservation
  int unmapped;        // written under `lock` (a prefault on a worker thread reads it there)
  unsigned discards;   // discards so far, written under `lock`: a prefault asked for before one is dropped
  pthread_mutex_t lock;
  int references;      // buffers' finalizers + wraps not yet run
  int live_buffers;    // buffers not yet collected
  napi_ref *buffers;   // weak references to every buffer, to detach them at unmap
  size_t buffer_count;
  size_t buffer_capacity;
} mapping_t;

static void unmap_once(mapping_t *m) {
  // (Waits for a prefault in progress: it must not touch the range once it is unmapped, when the
  // address space may already hold another mapping.)
  pthread_mutex_lock(&m->lock);
  if (!m->unmapped) {
    munmap(m->addr, m->length);
    m->unmapped = 1;
  }
  pthread_mutex_unlock(&m->lock);
}

static void release(napi_env env, mapping_t *m) {
  if (--m->references > 0) return;
  for (size_t i = 0; i < m->buffer_count; i++) napi_delete_reference(env, m->buffers[i]);
  free(m->buffers);
  pthread_mutex_destroy(&m->lock);
  free(m);
}

static void finalize_buffer(napi_env env, void *data, void *hint) {
  (void)data;
  mapping_t *m = (mapping_t *)hint;
  if (--m->live_buffers == 0) unmap_once(m);
  release(env, m);
}

static void finalize_wrap(napi_env env, void *data, void *hint) {
  (void)hint;
  release(env, (mapping_t *)data);
}

static napi_value throw_syscall(napi_env env, const char *syscall, int err) {
  napi_value message, error, code_value, syscall_value;
  napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, NULL, message, &error);
  napi_create_int32(env, err, &code_value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value);
  napi_set_named_property(env, error, "errno", code_value);
  napi_set_named_property(env, error, "syscall", syscall_value);
  napi_throw(env, error);
  return NULL;
}

static napi_value throw_usage(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

// Wraps `length` bytes of the mapping in a new external ArrayBuffer tied to it. On failure the
// mapping is left as it was (Node runs the finalizer of a buffer it failed to create, which the
// references taken here balance) and NULL is returned with an exception pending.
static napi_value new_buffer(napi_env env, mapping_t *m, size_t length) {
  if (m->buffer_count == m->buffer_capacity) {
    size_t capacity = m->buffer_capacity == 0 ? 4 : m->buffer_capacity * 2;
    napi_ref *grown = realloc(m->buffers, capacity * sizeof *grown);
    if (grown == NULL) return throw_syscall(env, "realloc", ENOMEM);
    m->buffers = grown;
    m->buffer_capacity = capacity;
  }
  m->references++;
  m->live_buffers++;
  napi_value buffer;
  if (napi_create_external_arraybuffer(env, m->addr, length, finalize_buffer, m, &buffer) != napi_ok) {
    return throw_syscall(env, "napi_create_external_arraybuffer", ENOMEM);
  }
  m->references++;
  if (napi_wrap(env, buffer, m, finalize_wrap, NULL, NULL) != napi_ok) {
    m->references--;
    return throw_syscall(env, "napi_wrap", ENOMEM);
  }
  if (napi_create_reference(env, buffer, 0, &m->buffers[m->buffer_count]) != napi_ok) {
    return throw_syscall(env, "napi_create_reference", ENOMEM);
  }
  m->buffer_count++;
  return buffer;
}

// map(fd: number, reserve: number, length: number, writable: boolean): ArrayBuffer of `length`
// bytes over a mapping of `reserve` bytes.
static napi_value Map(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t fd;
  int64_t reserve, length;
  bool writable;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 4 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &reserve) != napi_ok ||
      napi_get_value_int64(env, argv[2], &length) != napi_ok ||
      napi_get_value_bool(env, argv[3], &writable) != napi_ok || reserve <= 0 || length <= 0 || length > reserve) {
    return throw_usage(env, "map(fd, reserve, length, writable) expects a descriptor, 0 < length <= reserve and a boolean");
  }
  int protection = PROT_READ | (writable ? PROT_WRITE : 0);
  void *addr = mmap(NULL, (size_t)reserve, protection, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) return throw_syscall(env, "mmap", errno);

  mapping_t *m = calloc(1, sizeof *m);
  if (m == NULL) {
    munmap(addr, (size_t)reserve);
    return throw_syscall(env, "calloc", ENOMEM);
  }
  m->addr = addr;
  m->length = (size_t)reserve;
  pthread_mutex_init(&m->lock, NULL);
  // Held until the first buffer exists, so a failure below cannot free the mapping under us.
  m->references = 1;
  napi_value buffer = new_buffer(env, m, (size_t)length);
  if (buffer == NULL) {
    if (m->live_buffers == 0) unmap_once(m);
    release(env, m);
    return NULL;
  }
  release(env, m);
  return buffer;
}

static mapping_t *mapping_of(napi_env env, napi_value buffer) {
  void *m = NULL;
  if (napi_unwrap(env, buffer, &m) != napi_ok || m == NULL) {
    throw_usage(env, "not an ArrayBuffer returned by map()");
    return NULL;
  }
  return (mapping_t *)m;
}

// extend(buffer, length): a new ArrayBuffer of `length` bytes over the mapping behind `buffer`
// (after the file grew); `buffer` itself stays valid.
static napi_value Extend(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int64_t length;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 2 || napi_get_value_int64(env, argv[1], &length) != napi_ok || length <= 0) {
    return throw_usage(env, "extend(buffer, length) expects a positive length");
  }
  mapping_t *m = mapping_of(env, argv[0]);
  if (m == NULL) return NULL;
  if (m->unmapped) return throw_syscall(env, "extend", EBADF);
  if ((uint64_t)length > m->length) return throw_usage(env, "extend length is larger than the reservation");
  return new_buffer(env, m, (size_t)length);
}

// unmap(buffer): unmaps now and detaches every ArrayBuffer over the mapping that is still alive,
// so every typed array over them reads as empty instead of touching freed address space.
// Idempotent.
static napi_value Unmap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 1) return throw_usage(env, "unmap(buffer) expects one argument");
  mapping_t *m = mapping_of(env, argv[0]);
  if (m == NULL || m->unmapped) return NULL;
  for (size_t i = 0; i < m->buffer_count; i++) {
    napi_value alive;
    if (napi_get_reference_value(env, m->buffers[i], &alive) == napi_ok && alive != NULL) {
      napi_detach_arraybuffer(env, alive);
    }
  }
  unmap_once(m);
  return NULL;
}

// Reads the arguments (buffer, a, b) of a call on a byte range of a mapping: the mapping and two
// non-negative integers. NULL (with a JavaScript exception pending) when they are not that, or the
// mapping is gone (`syscall` names the call in the error).
static mapping_t *range_call(napi_env env, napi_callback_info info, const char *usage, const char *syscall, int64_t *a, int64_t *b) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 3 || napi_get_value_int64(env, argv[1], a) != napi_ok || napi_get_value_int64(env, argv[2], b) != napi_ok ||
      *a < 0 || *b < 0) {
    throw_usage(env, usage);
    return NULL;
  }
  mapping_t *m = mapping_of(env, argv[0]);
  if (m == NULL) return NULL;
  if (m->unmapped) {
    throw_syscall(env, syscall, EBADF);
    return NULL;
  }
  return m;
}

// sync(buffer, offset, length): msync(MS_SYNC) of a byte range (rounded out to whole pages).
static napi_value Sync(napi_env env, napi_callback_info info) {
  int64_t offset, length;
  mapping_t *m = range_call(env, info, "sync(buffer, offset, length) expects non-negative numbers", "msync", &offset, &length);
  if (m == NULL) return NULL;
  if ((uint64_t)offset + (uint64_t)length > m->length) return throw_usage(env, "sync range is outside the mapping");
  if (length == 0) return NULL;
  int64_t start = offset & ~(int64_t)4095;
  if (msync((char *)m->addr + start, (size_t)(length + (offset - start)), MS_SYNC) != 0) {
    return throw_syscall(env, "msync", errno);
  }
  return NULL;
}

// advise(buffer, advice): madvise over the whole mapping (advice as the Linux constant).
static napi_value Advise(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t advice;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 2 || napi_get_value_int32(env, argv[1], &advice) != napi_ok) {
    return throw_usage(env, "advise(buffer, advice) expects a number");
  }
  mapping_t *m = mapping_of(env, argv[0]);
  if (m == NULL) return NULL;
  if (m->unmapped) return throw_syscall(env, "madvise", EBADF);
  if (madvise(m->addr, m->length, advice) != 0) return throw_syscall(env, "madvise", errno);
  return NULL;
}

// Reads the arguments `(fd, offset, length)` of a call on a byte range of a file; false when one
// is missing, not a number, or negative.
static bool file_range_args(napi_env env, napi_callback_info info, int32_t *fd, int64_t *offset, int64_t *length) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  return argc == 3 && napi_get_value_int32(env, argv[0], fd) == napi_ok &&
         napi_get_value_int64(env, argv[1], offset) == napi_ok && napi_get_value_int64(env, argv[2], length) == napi_ok &&
         *fd >= 0 && *offset >= 0 && *length >= 0;
}

// verifyIds(all, table, count): checks the ids of `count` envelopes that lie in `all`, in one
// call. Row i of `table` (three u32 words) is where envelope i starts in `all`, where its payload
// starts and how long the payload is; its id (16 bytes) starts one byte in, its salt (8 bytes) at
// 17. An id is right when its last 8 bytes are the first 8 of SHA-256 over its first 8 bytes
// (timestamp and sequence), the salt and the payload (src/core/message-id.ts). Returns the index
// of the first envelope whose id is wrong, or -1. One call for a batch instead of one hash call
// per envelope: the receiver of an initial copy spent most of each call's 240 ns outside SHA-256.
static napi_value VerifyIds(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage = "verifyIds(all: Uint8Array, table: Uint32Array, count: number)";
  if (argc != 3) return throw_usage(env, usage);
  napi_typedarray_type type;
  size_t length, table_length;
  void *data, *table_data;
  int32_t count;
  if (napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    return throw_usage(env, usage);
  }
  if (napi_get_typedarray_info(env, argv[1], &type, &table_length, &table_data, NULL, NULL) != napi_ok ||
      type != napi_uint32_array || napi_get_value_int32(env, argv[2], &count) != napi_ok || count < 0 ||
      (size_t)count * 3 > table_length) {
    return throw_usage(env, usage);
  }
  const unsigned char *bytes = (const unsigned char *)data;
  const uint32_t *table = (const uint32_t *)table_data;
  for (int32_t i = 0; i < count; i++) {
    size_t start = table[3 * i], payload = table[3 * i + 1], size = table[3 * i + 2];
    if (start + 25 > length || payload + size > length || payload < start + 25) {
      return throw_usage(env, "verifyIds: a row is outside the bytes");
    }
  }
  // OpenSSL is Node's own (its symbols are the process's); one context for the whole batch.
  EVP_MD_CTX *fresh = EVP_MD_CTX_new();
  EVP_MD_CTX *context = EVP_MD_CTX_new();
  if (fresh == NULL || context == NULL || EVP_DigestInit_ex(fresh, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(fresh);
    EVP_MD_CTX_free(context);
    return throw_syscall(env, "EVP_DigestInit_ex", ENOMEM);
  }
  int32_t wrong = -1;
  for (int32_t i = 0; i < count && wrong < 0; i++) {
    size_t start = table[3 * i], payload = table[3 * i + 1], size = table[3 * i + 2];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_length = 0;
    if (EVP_MD_CTX_copy_ex(context, fresh) != 1 || EVP_DigestUpdate(context, bytes + start + 1, 8) != 1 ||
        EVP_DigestUpdate(context, bytes + start + 17, 8) != 1 || EVP_DigestUpdate(context, bytes + payload, size) != 1 ||
        EVP_DigestFinal_ex(context, digest, &digest_length) != 1 || digest_length < 8) {
      EVP_MD_CTX_free(fresh);
      EVP_MD_CTX_free(context);
      return throw_syscall(env, "EVP_Digest", EINVAL);
    }
    if (memcmp(digest, bytes + start + 9, 8) != 0) wrong = i;
  }
  EVP_MD_CTX_free(fresh);
  EVP_MD_CTX_free(context);
  napi_value result;
  napi_create_int32(env, wrong, &result);
  return result;
}

// The OpenSSL 3 functions idHash needs are weak references: a Node whose crypto library lacks them
// (one built on another library) loads the addon all the same, gets no idHash, and hashes ids with
// node:crypto instead.
#pragma weak EVP_MD_fetch
#pragma weak EVP_DigestInit_ex2

// idHash(input, length): SHA-256 over the first `length` bytes of `input`, whose first 8 bytes it
// then overwrites with the digest's first 8 (the hash part of a new id: src/core/message-id.ts).
// The result goes back through the input, so a call allocates nothing: 130 ns for a 100-byte
// input where node:crypto's `hash` takes 270, most of it around SHA-256 itself.
static napi_value IdHash(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_typedarray_type type;
  size_t length;
  void *data;
  uint32_t size;
  if (argc != 2 || napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array || napi_get_value_uint32(env, argv[1], &size) != napi_ok || size < 8 || size > length) {
    return throw_usage(env, "idHash(input: Uint8Array, length: number), 8 <= length <= input.length");
  }
  // One context and one fetched digest per thread, kept for the thread's life: fetching SHA-256
  // again for each call is what makes OpenSSL 3's one-shot SHA256() slower than node:crypto.
  static __thread EVP_MD_CTX *context = NULL;
  static __thread EVP_MD *sha256 = NULL;
  if (sha256 == NULL) sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
  if (context == NULL) context = EVP_MD_CTX_new();
  if (sha256 == NULL || context == NULL) return throw_syscall(env, "EVP_MD_fetch", ENOMEM);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_length = 0;
  if (EVP_DigestInit_ex2(context, sha256, NULL) != 1 || EVP_DigestUpdate(context, data, size) != 1 ||
      EVP_DigestFinal_ex(context, digest, &digest_length) != 1) {
    return throw_syscall(env, "EVP_Digest", EINVAL);
  }
  memcpy(data, digest, 8);
  return NULL;
}

// zstd, as Node exports it (from 22.15 and 23.8): declared here, as Node ships no zstd header, and
// referenced weakly like the OpenSSL functions above: where Node has no zstd (or does not export
// it) the addon loads all the same, without zstdCompress, and runs are packed with node:zlib.
typedef struct ZSTD_CCtx_s ZSTD_CCtx;
extern ZSTD_CCtx *ZSTD_createCCtx(void);
extern size_t ZSTD_freeCCtx(ZSTD_CCtx *cctx);
extern size_t ZSTD_CCtx_setParameter(ZSTD_CCtx *cctx, int param, int value);
extern size_t ZSTD_compress2(ZSTD_CCtx *cctx, void *dst, size_t dst_capacity, const void *src, size_t src_size);
extern unsigned ZSTD_isError(size_t code);
#pragma weak ZSTD_createCCtx
#pragma weak ZSTD_freeCCtx
#pragma weak ZSTD_CCtx_setParameter
#pragma weak ZSTD_compress2
#pragma weak ZSTD_isError
// Parameters of the stable API (zstd.h): ZSTD_c_compressionLevel, ZSTD_c_checksumFlag.
#define ZSTD_C_COMPRESSION_LEVEL 100
#define ZSTD_C_CHECKSUM_FLAG 201

// zstdCompress(input, output, at): compresses `input` (level 1, with zstd's checksum of the
// content) into `output` from byte `at`; returns the compressed length, or -1 when it did not fit
// in the rest of `output` (or zstd failed). One compression context per thread, kept for the
// thread's life: node:zlib's zstdCompressSync makes one per call, and making it (its tables, its
// allocations) cost as much as compressing a 32 KiB run (src/core/run-pack.ts).
static napi_value ZstdCompress(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_typedarray_type input_type, output_type;
  size_t input_length, output_length;
  void *input, *output;
  uint32_t at;
  if (argc != 3 || napi_get_typedarray_info(env, argv[0], &input_type, &input_length, &input, NULL, NULL) != napi_ok ||
      input_type != napi_uint8_array || napi_get_typedarray_info(env, argv[1], &output_type, &output_length, &output, NULL, NULL) != napi_ok ||
      output_type != napi_uint8_array || napi_get_value_uint32(env, argv[2], &at) != napi_ok || at > output_length) {
    return throw_usage(env, "zstdCompress(input: Uint8Array, output: Uint8Array, at: number), at <= output.length");
  }
  static __thread ZSTD_CCtx *context = NULL;
  if (context == NULL) {
    ZSTD_CCtx *fresh = ZSTD_createCCtx();
    if (fresh == NULL) return throw_syscall(env, "ZSTD_createCCtx", ENOMEM);
    if (ZSTD_isError(ZSTD_CCtx_setParameter(fresh, ZSTD_C_COMPRESSION_LEVEL, 1)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(fresh, ZSTD_C_CHECKSUM_FLAG, 1))) {
      ZSTD_freeCCtx(fresh);
      return throw_syscall(env, "ZSTD_CCtx_setParameter", EINVAL);
    }
    context = fresh;
  }
  // (ZSTD_compress2 starts a new frame with the context's parameters: nothing of the last call stays.)
  size_t written = ZSTD_compress2(context, (unsigned char *)output + at, output_length - at, input, input_length);
  napi_value result;
  napi_create_double(env, ZSTD_isError(written) ? -1.0 : (double)written, &result);
  return result;
}

// allocate(fd, offset, length): gives the file blocks on disk for [offset, offset + length)
// (posix_fallocate; the file grows when the range passes its end). A write through the mapping
// into a page without a block makes the kernel find one then, and when the file system is full
// it can only answer with SIGBUS, which kills the process: so every page the view and the undo
// journal write is given its block first, where a full disk is an error (ENOSPC) to report.
// Where the file system cannot reserve blocks, the C library writes a zero into each one.
static napi_value Allocate(napi_env env, napi_callback_info info) {
  int32_t fd;
  int64_t offset, length;
  if (!file_range_args(env, info, &fd, &offset, &length)) {
    return throw_usage(env, "allocate(fd, offset, length) expects non-negative numbers");
  }
  if (length == 0) return NULL;
#if defined(__APPLE__)
  // macOS has no posix_fallocate: the file only grows to the range's end there (its blocks are
  // found when written, as before).
  struct stat st;
  if (fstat(fd, &st) != 0) return throw_syscall(env, "fstat", errno);
  if (st.st_size < offset + length && ftruncate(fd, (off_t)(offset + length)) != 0) {
    return throw_syscall(env, "ftruncate", errno);
  }
#else
  int err = posix_fallocate(fd, (off_t)offset, (off_t)length);
  if (err != 0) return throw_syscall(env, "fallocate", err);
#endif
  return NULL;
}

// The arguments (buffer, from, to) of a call on a byte range of a mapping, `name` being the call:
// the mapping, with 0 <= from <= to <= its reservation; NULL (a JavaScript exception pending)
// otherwise.
static mapping_t *mapping_range(napi_env env, napi_callback_info info, const char *name, int64_t *from, int64_t *to) {
  char message[96];
  snprintf(message, sizeof message, "%s(buffer, from, to) expects 0 <= from <= to", name);
  mapping_t *m = range_call(env, info, message, "madvise", from, to);
  if (m == NULL) return NULL;
  if (*to < *from) {
    throw_usage(env, message);
    return NULL;
  }
  if ((uint64_t)*to > m->length) {
    snprintf(message, sizeof message, "%s range is outside the mapping", name);
    throw_usage(env, message);
    return NULL;
  }
  return m;
}

// The size of a memory page (4096 where the system does not say).
static int64_t page_bytes(void) {
  long page = sysconf(_SC_PAGESIZE);
  return page > 0 ? (int64_t)page : 4096;
}

// discard(buffer, from, to): gives the file's blocks in [from, to) back to the file system
// (madvise MADV_REMOVE: a hole is punched; the bytes read as zeros afterwards), rounded in to
// whole pages. For space the caller no longer uses: the undo journal's pages outside its history
// on close, blocks of the view no rewind can return to. Returns false where the platform or the
// file system cannot do it (the bytes then stay as they were).
static napi_value Discard(napi_env env, napi_callback_info info) {
  int64_t from, to;
  mapping_t *m = mapping_range(env, info, "discard", &from, &to);
  if (m == NULL) return NULL;
  napi_value result;
  bool done = false;
#ifdef MADV_REMOVE
  int64_t page = page_bytes();
  int64_t start = (from + page - 1) / page * page;
  int64_t end = to / page * page;
  // A prefault still queued would fault the range in again and give the file its blocks back:
  // taking the lock waits for one in progress, and the count makes every earlier one a no-op.
  pthread_mutex_lock(&m->lock);
  m->discards++;
  if (start >= end) done = true;
  else done = madvise((char *)m->addr + start, (size_t)(end - start), MADV_REMOVE) == 0;
  pthread_mutex_unlock(&m->lock);
#endif
  napi_get_boolean(env, done, &result);
  return result;
}

// prefault(buffer, from, to): makes the pages of [from, to) of the mapping (rounded out to whole
// pages) present and writable, on a thread of libuv's pool, so that the first writes there take no
// page fault on the JavaScript thread. A fresh page of the view cost that thread about 3 µs in its
// fault (the file system finds the page and marks it for writing), about 5% of a write's time when
// each event writes a few hundred new bytes. The view and the journal ask for the pages they have
// just given blocks to (see `MappedFile.prefault`), which they write next. MADV_POPULATE_WRITE
// (Linux 5.14) faults the pages in without writing to them, so a write of the JavaScript thread to
// the same page meanwhile is safe. A discard of the mapping after the call makes the work a no-op,
// so that it cannot give back blocks the discard took. Returns false where the platform cannot
// (nothing is done); the outcome of the work itself is not reported (a page it could not make
// present faults as before).
typedef struct {
  mapping_t *mapping;
  size_t start;
  size_t length;
  unsigned discards;   // the mapping's count when asked for: a discard since makes this a no-op
  napi_async_work work;
} prefault_t;

// Set once the kernel refused MADV_POPULATE_WRITE (older than 5.14): later calls return false.
static volatile int prefault_unsupported = 0;

static void prefault_execute(napi_env env, void *data) {
  (void)env;
  prefault_t *p = (prefault_t *)data;
#ifdef MADV_POPULATE_WRITE
  pthread_mutex_lock(&p->mapping->lock);
  if (!p->mapping->unmapped && p->mapping->discards == p->discards &&
      madvise((char *)p->mapping->addr + p->start, p->length, MADV_POPULATE_WRITE) != 0 && errno == EINVAL) {
    prefault_unsupported = 1;
  }
  pthread_mutex_unlock(&p->mapping->lock);
#else
  (void)p;
#endif
}

static void prefault_complete(napi_env env, napi_status status, void *data) {
  (void)status;
  prefault_t *p = (prefault_t *)data;
  napi_delete_async_work(env, p->work);
  release(env, p->mapping);
  free(p);
}

static napi_value Prefault(napi_env env, napi_callback_info info) {
  int64_t from, to;
  mapping_t *m = mapping_range(env, info, "prefault", &from, &to);
  if (m == NULL) return NULL;
  napi_value result;
#ifdef MADV_POPULATE_WRITE
  if (prefault_unsupported) {
    napi_get_boolean(env, false, &result);
    return result;
  }
  int64_t page = page_bytes();
  int64_t start = from / page * page;
  int64_t end = (to + page - 1) / page * page;
  if ((uint64_t)end > m->length) end = (int64_t)m->length;
  if (start < end) {
    prefault_t *p = calloc(1, sizeof *p);
    if (p == NULL) return throw_syscall(env, "calloc", ENOMEM);
    p->mapping = m;
    p->start = (size_t)start;
    p->length = (size_t)(end - start);
    p->discards = m->discards;  // (only this thread writes it)
    napi_value name;
    napi_create_string_utf8(env, "noatun.prefault", NAPI_AUTO_LENGTH, &name);
    if (napi_create_async_work(env, NULL, name, prefault_execute, prefault_complete, p, &p->work) != napi_ok) {
      free(p);
      return throw_syscall(env, "napi_create_async_work", ENOMEM);
    }
    // Held until the work is done: the struct (and its lock) outlives every buffer if need be.
    m->references++;
    if (napi_queue_async_work(env, p->work) != napi_ok) {
      m->references--;
      napi_delete_async_work(env, p->work);
      free(p);
      return throw_syscall(env, "napi_queue_async_work", EAGAIN);
    }
  }
  napi_get_boolean(env, true, &result);
#else
  napi_get_boolean(env, false, &result);
#endif
  return result;
}

// ---------------------------------------------------------------------------------------------
// checksum(view): a 128-bit checksum of a typed array's bytes, for the seals of the view and the
// journal. It guards against accidental damage (a torn write, a stray tool, a bad disk), not
// against an adversary, so it need not be cryptographic; it must be fast, because an open verifies
// the whole view (hundreds of MiB for millions of events; SHA-256 managed ~1.5 GB/s here).
//
// Four 64-bit lanes each take every fourth word: lane = rotl(lane + word * K2, 31) * K1. Each step
// is a bijection of the lane for a fixed word and of the word for a fixed lane, so a change
// confined to one 8-byte word always changes that lane and therefore the result (damage at one
// offset is always caught, never only probably). The lanes, the length and the tail are then
// combined twice, differently, into two avalanched 64-bit halves. Little-endian words: the view
// files are only ever read on the byte order that wrote them.

#define K1 0x9E3779B185EBCA87ULL
#define K2 0xC2B2AE3D27D4EB4FULL
#define K3 0x165667B19E3779F9ULL

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t step(uint64_t lane, uint64_t word) { return rotl64(lane + word * K2, 31) * K1; }
static inline uint64_t avalanche(uint64_t h) {
  h ^= h >> 33;
  h *= K2;
  h ^= h >> 29;
  h *= K3;
  h ^= h >> 32;
  return h;
}
static inline uint64_t load64(const unsigned char *p) {
  uint64_t w;
  memcpy(&w, p, 8);
  return w;
}

// The checksum as a stream: `update` takes whole 32-byte stripes, `finish` the rest, so feeding a
// file in chunks that are multiples of 32 bytes gives exactly the checksum of the bytes at once.
typedef struct {
  uint64_t a, b, c, d;
  uint64_t length;
} checksum_t;

static void checksum_init(checksum_t *s) {
  s->a = K1 + K2;
  s->b = K2;
  s->c = 0;
  s->d = 0 - K1;
  s->length = 0;
}

static size_t checksum_update(checksum_t *s, const unsigned char *p, size_t n) {
  size_t i = 0;
  uint64_t a = s->a, b = s->b, c = s->c, d = s->d;
  for (; i + 32 <= n; i += 32) {
    a = step(a, load64(p + i));
    b = step(b, load64(p + i + 8));
    c = step(c, load64(p + i + 16));
    d = step(d, load64(p + i + 24));
  }
  s->a = a, s->b = b, s->c = c, s->d = d;
  s->length += i;
  return i;
}

static void checksum_finish(checksum_t *s, const unsigned char *p, size_t n, uint64_t out[2]) {
  size_t i = checksum_update(s, p, n);
  uint64_t tail = 0;
  for (; i + 8 <= n; i += 8) tail = step(tail, load64(p + i));
  uint64_t last = 0;
  for (size_t shift = 0; i < n; i++, shift += 8) last |= (uint64_t)p[i] << shift;
  tail = step(tail, last);
  uint64_t total = s->length + (n - (n & ~(size_t)31));
  out[0] = avalanche(rotl64(s->a, 1) + rotl64(s->b, 7) + rotl64(s->c, 12) + rotl64(s->d, 18) + tail * K3 + total);
  out[1] = avalanche((s->a ^ rotl64(s->b, 29) ^ rotl64(s->c, 41) ^ rotl64(s->d, 53)) + rotl64(tail, 17) * K1 + total * K2);
}

static napi_value checksum_result(napi_env env, const uint64_t sum[2]) {
  unsigned char bytes[16];
  memcpy(bytes, sum, 16);
  napi_value result;
  void *copy;
  if (napi_create_buffer_copy(env, 16, bytes, &copy, &result) != napi_ok) return NULL;
  return result;
}

// checksumFile(fd, offset, length): the checksum of a byte range of a file, read with pread.
// Verifying a freshly mapped view through the mapping would first fill in a page-table entry for
// every page (most of the cost: 80 ms of 90 for 200 MB here); reading the page cache with pread
// does not, and the pages the first queries need are mapped when they touch them.
#define CHUNK (1 << 20)
static napi_value ChecksumFile(napi_env env, napi_callback_info info) {
  int32_t fd;
  int64_t offset, length;
  if (!file_range_args(env, info, &fd, &offset, &length)) {
    return throw_usage(env, "checksumFile(fd, offset, length) expects non-negative numbers");
  }
  unsigned char *chunk = malloc(CHUNK);
  if (chunk == NULL) return throw_syscall(env, "malloc", ENOMEM);
  checksum_t state;
  checksum_init(&state);
  uint64_t sum[2];
  for (;;) {
    size_t want = length > CHUNK ? CHUNK : (size_t)length;
    size_t got = 0;
    while (got < want) {
      ssize_t n = pread(fd, chunk + got, want - got, (off_t)(offset + (int64_t)got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int err = n < 0 ? errno : EIO; // a file shorter than the range it should hold
        free(chunk);
        return throw_syscall(env, "pread", err);
      }
      got += (size_t)n;
    }
    offset += (int64_t)want;
    length -= (int64_t)want;
    if (length == 0) {
      checksum_finish(&state, chunk, want, sum);
      break;
    }
    checksum_update(&state, chunk, want); // CHUNK is a multiple of 32: nothing is left over
  }
  free(chunk);
  return checksum_result(env, sum);
}

static napi_value Checksum(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool is_typed_array = false;
  if (argc != 1 || napi_is_typedarray(env, argv[0], &is_typed_array) != napi_ok || !is_typed_array) {
    return throw_usage(env, "checksum(view) expects a typed array");
  }
  napi_typedarray_type type;
  size_t length, offset;
  void *data;
  napi_value arraybuffer;
  if (napi_get_typedarray_info(env, argv[0], &type, &length, &data, &arraybuffer, &offset) != napi_ok) return NULL;
  size_t element = 1;
  switch (type) {
    case napi_int16_array: case napi_uint16_array: element = 2; break;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: element = 4; break;
    case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: element = 8; break;
    default: element = 1;
  }
  checksum_t state;
  checksum_init(&state);
  uint64_t sum[2];
  checksum_finish(&state, (const unsigned char *)data, length * element, sum);
  return checksum_result(env, sum);
}

// lock(fd): takes an exclusive advisory lock (flock) on the open file, without waiting. Returns
// true when it is taken, false when another open file holds it; throws for any other failure.
// The lock goes with the descriptor: closing it, or the process dying, releases it, so a lock is
// never left behind by a crash (src/core/directory-lock.ts).
static napi_value Lock(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  if (argc != 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    return throw_usage(env, "lock(fd) expects a file descriptor");
  }
  int rc;
  do {
    rc = flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno != EWOULDBLOCK) return throw_syscall(env, "flock", errno);
  napi_value result;
  napi_get_boolean(env, rc == 0, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      {"map", NULL, Map, NULL, NULL, NULL, napi_default, NULL},
      {"extend", NULL, Extend, NULL, NULL, NULL, napi_default, NULL},
      {"unmap", NULL, Unmap, NULL, NULL, NULL, napi_default, NULL},
      {"sync", NULL, Sync, NULL, NULL, NULL, napi_default, NULL},
      {"advise", NULL, Advise, NULL, NULL, NULL, napi_default, NULL},
      {"discard", NULL, Discard, NULL, NULL, NULL, napi_default, NULL},
      {"allocate", NULL, Allocate, NULL, NULL, NULL, napi_default, NULL},
      {"prefault", NULL, Prefault, NULL, NULL, NULL, napi_default, NULL},
      {"verifyIds", NULL, VerifyIds, NULL, NULL, NULL, napi_default, NULL},
      {"checksum", NULL, Checksum, NULL, NULL, NULL, napi_default, NULL},
      {"checksumFile", NULL, ChecksumFile, NULL, NULL, NULL, napi_default, NULL},
      {"lock", NULL, Lock, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  if (EVP_MD_fetch != NULL && EVP_DigestInit_ex2 != NULL) {
    napi_property_descriptor id_hash = {"idHash", NULL, IdHash, NULL, NULL, NULL, napi_default, NULL};
    napi_define_properties(env, exports, 1, &id_hash);
  }
  if (ZSTD_createCCtx != NULL && ZSTD_freeCCtx != NULL && ZSTD_CCtx_setParameter != NULL && ZSTD_compress2 != NULL &&
      ZSTD_isError != NULL) {
    napi_property_descriptor zstd = {"zstdCompress", NULL, ZstdCompress, NULL, NULL, NULL, napi_default, NULL};
    napi_define_properties(env, exports, 1, &zstd);
  }
  return exports;
}
