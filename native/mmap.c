// Node-API addon: shared read-write file mappings for the view arena and the undo journal.
//
// One call reserves address space larger than the file; the file is then grown with ftruncate
// from JavaScript and the existing mapping covers the new bytes, so the arena never remaps and
// typed arrays over the mapping stay valid. Touching a mapped page past the end of the file
// raises SIGBUS, so JavaScript only ever indexes typed arrays sized to the file, never the
// whole reservation.
//
// Failing system calls throw an Error with `syscall` and `errno` properties; src/view/mmap.ts
// turns them into NoatunError subclasses.
#define NAPI_VERSION 8
#include <node_api.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

// The mapping behind one external ArrayBuffer. It is released by whichever comes last: the
// explicit unmap or the ArrayBuffer's finalizer (garbage collection).
typedef struct {
  void *addr;
  size_t length;
  int unmapped;
  int references;
} mapping_t;

static void release(mapping_t *m) {
  if (--m->references == 0) free(m);
}

static void unmap_once(mapping_t *m) {
  if (!m->unmapped) {
    munmap(m->addr, m->length);
    m->unmapped = 1;
  }
}

static void finalize_buffer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  mapping_t *m = (mapping_t *)hint;
  unmap_once(m);
  release(m);
}

static void finalize_wrap(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  release((mapping_t *)data);
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

// map(fd: number, length: number, writable: boolean): ArrayBuffer
static napi_value Map(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  int64_t length;
  bool writable;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &length) != napi_ok ||
      napi_get_value_bool(env, argv[2], &writable) != napi_ok || length <= 0) {
    return throw_usage(env, "map(fd, length, writable) expects a descriptor, a positive length and a boolean");
  }
  int protection = PROT_READ | (writable ? PROT_WRITE : 0);
  void *addr = mmap(NULL, (size_t)length, protection, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) return throw_syscall(env, "mmap", errno);

  mapping_t *m = malloc(sizeof *m);
  if (m == NULL) {
    munmap(addr, (size_t)length);
    return throw_syscall(env, "malloc", ENOMEM);
  }
  m->addr = addr;
  m->length = (size_t)length;
  m->unmapped = 0;
  m->references = 1;

  napi_value buffer;
  if (napi_create_external_arraybuffer(env, addr, (size_t)length, finalize_buffer, m, &buffer) != napi_ok) {
    // Node has already run the finalizer (unmapped and freed) when creation fails.
    return throw_syscall(env, "napi_create_external_arraybuffer", ENOMEM);
  }
  m->references = 2;
  if (napi_wrap(env, buffer, m, finalize_wrap, NULL, NULL) != napi_ok) m->references = 1;
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

// unmap(buffer): unmaps now and detaches the ArrayBuffer, so every typed array over it reads as
// empty instead of touching freed address space. Idempotent.
static napi_value Unmap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 1) return throw_usage(env, "unmap(buffer) expects one argument");
  mapping_t *m = mapping_of(env, argv[0]);
  if (m == NULL || m->unmapped) return NULL;
  napi_detach_arraybuffer(env, argv[0]);
  unmap_once(m);
  return NULL;
}

// sync(buffer, offset, length): msync(MS_SYNC) of a byte range (rounded out to whole pages).
static napi_value Sync(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int64_t offset, length;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 3 || napi_get_value_int64(env, argv[1], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[2], &length) != napi_ok || offset < 0 || length < 0) {
    return throw_usage(env, "sync(buffer, offset, length) expects non-negative numbers");
  }
  mapping_t *m = mapping_of(env, argv[0]);
  if (m == NULL) return NULL;
  if (m->unmapped) return throw_syscall(env, "msync", EBADF);
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

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      {"map", NULL, Map, NULL, NULL, NULL, napi_default, NULL},
      {"unmap", NULL, Unmap, NULL, NULL, NULL, napi_default, NULL},
      {"sync", NULL, Sync, NULL, NULL, NULL, napi_default, NULL},
      {"advise", NULL, Advise, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}
