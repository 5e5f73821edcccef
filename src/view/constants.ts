/**
 * Sizes and limits of the view layer, in one place so that each default is documented once.
 */

/** Bytes of one arena word: pointers, lengths and trackers are 32-bit words. */
export const WORD_BYTES = 4;

/** Bytes of the view file header (magic, version, flags, schema hash, ordinals, top, engine words). */
export const VIEW_HEADER_BYTES = 128;

/** Bytes of the journal file header. */
export const JOURNAL_HEADER_BYTES = 64;

/**
 * Address space reserved for the view file. The file grows inside it without remapping; it is
 * only address space, not memory. Word-sized pointers cap the arena at 16 GiB.
 * @default 8 GiB
 */
export const DEFAULT_MAX_VIEW_BYTES = 8 * 2 ** 30;

/** The largest view an arena can address with 32-bit word pointers. */
export const MAX_ADDRESSABLE_VIEW_BYTES = 16 * 2 ** 30 - 4096;

/**
 * Address space reserved for the undo journal file.
 * @default 8 GiB
 */
export const DEFAULT_MAX_JOURNAL_BYTES = 8 * 2 ** 30;

/**
 * Size a new view or journal file starts with; it doubles as it fills.
 * @default 64 KiB
 */
export const INITIAL_FILE_BYTES = 64 * 1024;

/** Page size used to round file growth. */
export const PAGE_BYTES = 4096;

/**
 * Words the view and the undo journal give blocks on disk at a time, ahead of what they write
 * (see `MappedFile.allocate`): one system call per 64 KiB written (a few microseconds each), and
 * at most 64 KiB of each file on disk beyond what it holds. (256 KiB cost the warehouse
 * benchmark 0.5 MiB of disk for nothing measurable.)
 */
export const ALLOCATION_WORDS = (64 * 1024) / 4;

/** The tracker value that means "owned by no event". Ordinals start at 1. */
export const NO_OWNER = 0;

/** Smallest table a map allocates on its first insert (buckets; a power of two). */
export const MAP_INITIAL_CAPACITY = 8;

/** Smallest block a list allocates on its first push (elements). */
export const LIST_INITIAL_CAPACITY = 4;
