/* nghttp2's memory for a session, laid out so that an idle session holds
 * few resident pages (docs/proxy.md, "Memory").
 *
 * nghttp2 1.52 makes, with every session, a 16 KiB outgoing frame buffer
 * (a frame header, a pad length byte and the largest payload: 16,394
 * bytes) and a 4 KiB stream table, and keeps both for the session's life;
 * from malloc's heap they are resident pages once any connection used
 * that memory before. Here a block of H2_MEM_BIG bytes or more made with
 * the session has whole pages of its own (a private mapping, its size
 * rounded up to pages), so that a page costs nothing until it is written,
 * and when the session is idle h2_mem_idle gives pages back with
 * MADV_DONTNEED, after which the kernel maps a zero page on the next
 * touch:
 *
 * - the frame buffer's pages, whatever they hold: when want_write() is 0
 *   nghttp2 has no active outbound item (aob.item), and every place that
 *   clears it calls active_outbound_item_reset(), whose nghttp2_bufs_reset
 *   points the buffer back at its start; the next frame is packed there
 *   from its first byte, so nothing written before is read again. The
 *   buffer is told apart by its size while the session is created (the
 *   only block of that size then; checked in nghttp2 1.52's
 *   nghttp2_session_new and nghttp2_bufs_init3). A library that sized it
 *   otherwise would leave it resident, never wrong.
 * - any other large block's pages that hold only zeros (the stream table
 *   once no stream is in it: nghttp2_map_remove clears its buckets): a
 *   page given back reads as zeros, so its content is the same.
 *
 * A page given back costs a fault when it is touched again, so h2.c calls
 * h2_mem_idle once a session has stayed idle a while, not after every
 * response. Large blocks made later (a long header field's copy, a
 * response's header list, a grown table) live for a request or so: they
 * come from malloc, with no mapping made and undone per request. */
#include "h2_mem.h"
#include "log.h"

#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define H2_MEM_BIG 4096
#define H2_FRAME_BUF_LEN (9 + 1 + 16384)   /* nghttp2's NGHTTP2_FRAMEBUF_CHUNKLEN */

struct h2_block {
    void *p;
    size_t len;                 /* whole pages */
    bool heap;                  /* from malloc, the address space being full; else mmap */
};

static size_t page_size(void)
{
    static size_t ps;

    if (!ps) {
        long n = sysconf(_SC_PAGESIZE);
        ps = n > 0 ? (size_t)n : 4096;
    }
    return ps;
}

static struct h2_block *find_big(struct h2_mem *m, const void *p)
{
    /* Only page-aligned pointers can be large blocks: the others need no
     * search. */
    if ((uintptr_t)p & (page_size() - 1))
        return NULL;
    for (size_t i = 0; i < m->n_big; i++)
        if (m->big[i].p == p)
            return &m->big[i];
    return NULL;
}

static void *big_alloc(struct h2_mem *m, size_t n)
{
    size_t ps = page_size(), len = (n + ps - 1) / ps * ps;
    void *p;

    if (len < n)
        return NULL;
    if (m->n_big == m->cap_big) {
        size_t cap = m->cap_big ? m->cap_big * 2 : 4;
        struct h2_block *b = realloc(m->big, cap * sizeof *b);
        if (!b)
            return NULL;
        m->big = b;
        m->cap_big = cap;
    }
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
        m->big[m->n_big++] = (struct h2_block){ p, len, false };
    } else {
        /* vm.max_map_count reached (adjacent mappings merge, so that
         * takes tens of thousands of sessions): pages from the heap, which
         * can be given back the same way. */
        if (posix_memalign(&p, ps, len))
            return NULL;
        memset(p, 0, len);              /* as fresh pages are: calloc needs no more */
        m->big[m->n_big++] = (struct h2_block){ p, len, true };
    }
    if (m->creating && n == H2_FRAME_BUF_LEN && m->frame_sized++ == 0)
        m->frame_buf = p;
    return p;
}

static void mem_free(void *p, void *ud)
{
    struct h2_mem *m = ud;
    struct h2_block *b = p ? find_big(m, p) : NULL;

    if (!b) {
        free(p);
        return;
    }
    if (p == m->frame_buf)
        m->frame_buf = NULL;
    if (b->heap)
        free(p);
    else if (munmap(p, b->len) < 0)
        as_err("HTTP/2 session memory: munmap: %s", strerror(errno));
    *b = m->big[--m->n_big];
}

static bool page_own(const struct h2_mem *m, size_t n)
{
    return m->creating && n >= H2_MEM_BIG;
}

static void *mem_malloc(size_t n, void *ud)
{
    return page_own(ud, n) ? big_alloc(ud, n) : malloc(n);
}

/* A large block comes zeroed: fresh pages are. */
static void *mem_calloc(size_t n, size_t size, void *ud)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    if (!page_own(ud, n * size))
        return calloc(n, size);
    return big_alloc(ud, n * size);
}

static void *mem_realloc(void *p, size_t n, void *ud)
{
    struct h2_mem *m = ud;
    struct h2_block *b = p ? find_big(m, p) : NULL;
    size_t old;
    void *q;

    if (!b && !page_own(m, n))
        return realloc(p, n);
    if (!p)
        return big_alloc(m, n);
    old = b ? b->len : malloc_usable_size(p);
    q = mem_malloc(n, m);
    if (!q)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    mem_free(p, m);
    return q;
}

nghttp2_mem h2_mem_of(struct h2_mem *m)
{
    return (nghttp2_mem){ .mem_user_data = m, .malloc = mem_malloc, .free = mem_free, .calloc = mem_calloc,
                          .realloc = mem_realloc };
}

void h2_mem_creating(struct h2_mem *m, bool on)
{
    m->creating = on;
    if (!on && m->frame_sized != 1)
        m->frame_buf = NULL;        /* not the one block of its size: unknown */
}

static void give_back(void *p, size_t len)
{
    if (madvise(p, len, MADV_DONTNEED) < 0)
        as_debug("HTTP/2 idle session: madvise: %s", strerror(errno));
}

static bool zero_page(const void *p, size_t len)
{
    const uint64_t *w = p;

    for (size_t i = 0; i < len / sizeof *w; i++)
        if (w[i])
            return false;
    return true;
}

void h2_mem_idle(struct h2_mem *m)
{
    size_t ps = page_size();

    for (size_t i = 0; i < m->n_big; i++) {
        char *p = m->big[i].p;
        if (p == m->frame_buf) {
            give_back(p, m->big[i].len);
            continue;
        }
        for (size_t off = 0; off < m->big[i].len; off += ps)
            if (zero_page(p + off, ps))
                give_back(p + off, ps);
    }
}

void h2_mem_release(struct h2_mem *m)
{
    free(m->big);
    *m = (struct h2_mem){ 0 };
}
