/* Buffer blocks and spools (see buf.h). */
#include "buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_IOV 16
/* Free blocks kept (16 MiB at most): enough for about 300 requests in
 * flight (a read buffer, a response and an upstream read buffer each), so a
 * busy proxy does not malloc and free 16 KiB blocks per request. */
#define BLOCK_CACHE 1024

static struct {
    struct block *free;
    size_t n_free, max_free;
    const char *tmpdir;
} pool = { .max_free = BLOCK_CACHE, .tmpdir = "/var/tmp" };

struct block *block_get(void)
{
    struct block *b = pool.free;

    if (b) {
        pool.free = b->next;
        pool.n_free--;
    } else {
        b = malloc(sizeof *b);
        if (!b) {
            perror("appstack-proxy: out of memory");
            abort();
        }
    }
    b->next = NULL;
    b->start = b->end = 0;
    return b;
}

void block_put(struct block *b)
{
    if (!b)
        return;
    if (pool.n_free >= pool.max_free) {
        free(b);
        return;
    }
    b->next = pool.free;
    pool.free = b;
    pool.n_free++;
}

void block_set_cache(size_t max)
{
    pool.max_free = max;
}

void block_cache_trim(size_t keep)
{
    while (pool.n_free > keep) {
        struct block *b = pool.free;
        pool.free = b->next;
        pool.n_free--;
        free(b);
    }
}

void spool_set_tmpdir(const char *dir)
{
    pool.tmpdir = dir;
}

void spool_init(struct spool *s, size_t mem_limit, bool keep)
{
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->mem_limit = mem_limit;
    s->keep = keep;
}

void spool_free(struct spool *s)
{
    struct block *b = s->head, *next;

    for (; b; b = next) {
        next = b->next;
        block_put(b);
    }
    if (s->fd >= 0)
        close(s->fd);
    spool_init(s, s->mem_limit, s->keep);
}

static int open_temp(struct spool *s)
{
    s->fd = open(pool.tmpdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (s->fd < 0)
        return -1;
    s->file_start = s->file_pos = s->file_end = 0;
    return 0;
}

static int append_file(struct spool *s, const char *data, size_t len)
{
    ssize_t n;

    if (s->fd < 0 && open_temp(s) < 0)
        return -1;
    while (len) {
        n = pwrite(s->fd, data, len, s->file_end);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s->file_end += n;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static void add_block(struct spool *s)
{
    struct block *b = block_get();

    if (s->tail)
        s->tail->next = b;
    else
        s->head = b;
    s->tail = b;
    if (!s->cur) {
        s->cur = b;
        s->cur_off = 0;
    }
}

int spool_append(struct spool *s, const void *data, size_t len)
{
    const char *p = data;
    size_t room, k;

    s->total += len;
    /* Once in the file, everything goes there: order must hold. */
    if (s->fd >= 0 || s->mem + len > s->mem_limit)
        return append_file(s, p, len);
    while (len) {
        if (!s->tail || s->tail->end == BLOCK_SIZE)
            add_block(s);
        if (!s->cur) {          /* everything before was sent (keep mode) */
            s->cur = s->tail;
            s->cur_off = s->tail->end;
        }
        room = BLOCK_SIZE - s->tail->end;
        k = len < room ? len : room;
        memcpy(s->tail->data + s->tail->end, p, k);
        s->tail->end += k;
        s->mem += k;
        p += k;
        len -= k;
    }
    return 0;
}

int spool_append_file(struct spool *s, int fd, off_t off, size_t len)
{
    size_t room;
    ssize_t n;

    while (len) {
        if (!s->tail || s->tail->end == BLOCK_SIZE)
            add_block(s);
        if (!s->cur) {
            s->cur = s->tail;
            s->cur_off = s->tail->end;
        }
        room = BLOCK_SIZE - s->tail->end;
        n = pread(fd, s->tail->data + s->tail->end, len < room ? len : room, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;    /* shorter than fstat said: truncated meanwhile */
            return -1;
        }
        s->tail->end += (size_t)n;
        s->mem += (size_t)n;
        s->total += (uint64_t)n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

int spool_printf(struct spool *s, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n >= sizeof buf)
        n = sizeof buf - 1;
    return spool_append(s, buf, (size_t)n);
}

void spool_prepend(struct spool *s, struct spool *front)
{
    if (!front->head)
        return;
    front->tail->next = s->head;
    if (!s->tail)
        s->tail = front->tail;
    s->head = front->head;
    s->cur = s->head;
    s->cur_off = 0;
    s->mem += front->mem;
    s->total += front->total;
    front->head = front->tail = front->cur = NULL;
    front->mem = 0;
    front->total = 0;
}

void spool_attach_file(struct spool *s, int fd, off_t start, off_t end)
{
    s->fd = fd;
    s->file_start = s->file_pos = start;
    s->file_end = end;
    s->total += (uint64_t)(end - start);
}

uint64_t spool_pending(const struct spool *s)
{
    uint64_t n = 0;

    for (const struct block *b = s->cur; b; b = b->next)
        n += b->end - (b == s->cur ? s->cur_off : b->start);
    if (s->fd >= 0)
        n += (uint64_t)(s->file_end - s->file_pos);
    return n;
}

/* Drops sent blocks at the head (not with keep). */
static inline __attribute__((always_inline)) void release_sent(struct spool *s)
{
    while (!s->keep && s->head && s->head != s->cur) {
        struct block *b = s->head;
        s->head = b->next;
        s->mem -= b->end - b->start;
        block_put(b);
    }
    if (!s->head)
        s->tail = NULL;
}

/* Skips to the next block with unsent bytes. */
static inline __attribute__((always_inline)) void settle_cursor(struct spool *s)
{
    while (s->cur && s->cur_off >= s->cur->end) {
        s->cur = s->cur->next;
        if (s->cur)
            s->cur_off = s->cur->start;
    }
}

static int send_memory(struct spool *s, int sock)
{
    struct iovec iov[MAX_IOV];
    struct msghdr msg = { .msg_iov = iov };
    struct block *b;
    size_t left;
    ssize_t n;
    int k;

    for (;;) {
        settle_cursor(s);
        release_sent(s);
        if (!s->cur)
            return 1;
        k = 0;
        for (b = s->cur; b && k < MAX_IOV; b = b->next, k++) {
            size_t off = b == s->cur ? s->cur_off : b->start;
            iov[k].iov_base = b->data + off;
            iov[k].iov_len = b->end - off;
        }
        msg.msg_iovlen = (size_t)k;
        /* A file follows: let the head share its first packet. */
        n = sendmsg(sock, &msg, MSG_NOSIGNAL | (!b && s->fd >= 0 && s->file_pos < s->file_end ? MSG_MORE : 0));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -1;
        }
        s->sent += (uint64_t)n;
        for (left = (size_t)n; left;) {
            size_t avail = s->cur->end - s->cur_off, k2 = left < avail ? left : avail;
            s->cur_off += k2;
            left -= k2;
            settle_cursor(s);
        }
    }
}

static int send_file(struct spool *s, int sock)
{
    ssize_t n;

    while (s->fd >= 0 && s->file_pos < s->file_end) {
        size_t want = (size_t)(s->file_end - s->file_pos);
        n = sendfile(sock, s->fd, &s->file_pos, want > (1u << 30) ? (1u << 30) : want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -1;
        }
        if (n == 0) {           /* the file shrank under us */
            errno = EIO;
            return -1;
        }
        s->sent += (uint64_t)n;
    }
    return 1;
}

int spool_send(struct spool *s, int sock)
{
    int r = send_memory(s, sock);

    if (r != 1)
        return r;
    return send_file(s, sock);
}

int spool_write(struct spool *s, int sock, const void *data, size_t len)
{
    ssize_t n;

    /* keep: the bytes must stay for a rewind */
    if (s->cur || s->fd >= 0 || s->keep) {
        if (spool_append(s, data, len) < 0)
            return -1;
        return spool_send(s, sock);
    }
    do
        n = send(sock, data, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno != EAGAIN)
            return -1;
        n = 0;
    }
    s->total += (uint64_t)n;
    s->sent += (uint64_t)n;
    if ((size_t)n == len)
        return 1;
    return spool_append(s, (const char *)data + n, len - (size_t)n) < 0 ? -1 : 0;
}

size_t spool_peek(struct spool *s, const char **p, bool *more)
{
    settle_cursor(s);
    release_sent(s);
    if (!s->cur) {
        *more = s->fd >= 0 && s->file_pos < s->file_end;
        return 0;
    }
    *p = s->cur->data + s->cur_off;
    *more = s->cur->next || (s->fd >= 0 && s->file_pos < s->file_end);
    return s->cur->end - s->cur_off;
}

ssize_t spool_gather(struct spool *s, char *buf, size_t len)
{
    size_t n = 0;
    ssize_t r;

    settle_cursor(s);
    for (const struct block *b = s->cur; b && n < len; b = b->next) {
        size_t off = b == s->cur ? s->cur_off : b->start, k = b->end - off;
        if (k > len - n)
            k = len - n;
        memcpy(buf + n, b->data + off, k);
        n += k;
    }
    if (n < len && s->fd >= 0 && s->file_pos < s->file_end) {
        size_t want = len - n;
        if ((off_t)want > s->file_end - s->file_pos)
            want = (size_t)(s->file_end - s->file_pos);
        do
            r = pread(s->fd, buf + n, want, s->file_pos);
        while (r < 0 && errno == EINTR);
        if (r < 0)
            return -1;
        if (r == 0 && n == 0) {
            errno = EIO;        /* the file shrank under us */
            return -1;
        }
        n += (size_t)r;
    }
    return (ssize_t)n;
}

void spool_advance(struct spool *s, size_t n)
{
    s->sent += n;
    while (n && s->cur) {
        size_t avail = s->cur->end - s->cur_off, k = n < avail ? n : avail;
        s->cur_off += k;
        n -= k;
        settle_cursor(s);
    }
    s->file_pos += (off_t)n;
    /* as spool_send does: the room they held counts against mem_limit */
    release_sent(s);
}

bool spool_file_part(const struct spool *s, int *fd, off_t *pos, off_t *end)
{
    if (s->cur || s->fd < 0 || s->file_pos >= s->file_end)
        return false;
    *fd = s->fd;
    *pos = s->file_pos;
    *end = s->file_end;
    return true;
}

void spool_rewind(struct spool *s)
{
    s->cur = s->head;
    s->cur_off = s->head ? s->head->start : 0;
    s->file_pos = s->file_start;
    s->sent = 0;
}
