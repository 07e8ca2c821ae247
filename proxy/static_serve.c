/* Static files: opened beneath the alias root by the kernel (openat2), so no
 * spelling of a path and no symlink can reach outside it; then the usual
 * conditional, range and precompressed-sibling handling. */
#include "exchange.h"
#include "compress.h"
#include "accel.h"
#include "http_date.h"
#include "mime.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SMALL_FILE (8u << 10)      /* copied into the response: one writev */

struct file {
    int fd;
    struct stat st;
    const char *name;       /* for the type: the path as requested */
    size_t name_len;
    int coding;             /* AE_*: a precompressed sibling is served */
    bool vary;
};

#define FILE_FLAGS (O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)

/* Where openat2 is missing (kernels before 5.6, or a seccomp filter that
 * answers ENOSYS), each component is opened on its own with O_NOFOLLOW:
 * stricter than openat2, as no symlink at all is followed. REL is already
 * decoded and free of "." and ".." segments (static_path.c). */
static int open_walk(int root, const char *rel)
{
    char part[NAME_MAX + 1];
    int dir = root, fd;

    for (;;) {
        const char *slash = strchr(rel, '/');
        size_t n = slash ? (size_t)(slash - rel) : strlen(rel);
        if (n == 0 && slash) {
            rel = slash + 1;    /* "a//b" is "a/b" */
            continue;
        }
        if (n == 0 || n > NAME_MAX) {
            fd = n == 0 ? openat(dir, ".", FILE_FLAGS) : (errno = ENOENT, -1);
        } else {
            memcpy(part, rel, n);
            part[n] = '\0';
            fd = openat(dir, part, (slash ? O_PATH | O_DIRECTORY | O_CLOEXEC : FILE_FLAGS) | O_NOFOLLOW);
        }
        if (dir != root) {
            int saved = errno;
            close(dir);
            errno = saved;
        }
        if (fd < 0 || !slash)
            return fd;
        dir = fd;
        rel = slash + 1;
    }
}

static int open_beneath(int root, const char *rel)
{
    static bool no_openat2;
    struct open_how how = {
        .flags = FILE_FLAGS,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    int fd;

    if (!no_openat2 && getenv("APPSTACK_TEST_NO_OPENAT2"))
        no_openat2 = true;  /* lets the tests run the fallback on any kernel */
    if (!no_openat2) {
        fd = (int)syscall(SYS_openat2, root, *rel ? rel : ".", &how, sizeof how);
        if (fd >= 0 || errno != ENOSYS)
            return fd;
        no_openat2 = true;
        as_notice("openat2 is not available: static files are opened one path component at a time, "
                  "and symlinks beneath the alias roots are not followed");
    }
    return open_walk(root, rel);
}

static int open_in(const struct location_rt *loc, const char *rel)
{
    if (loc->sp.exact)
        return open(loc->alias, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (loc->root_fd < 0) {
        errno = ENOENT;
        return -1;
    }
    return open_beneath(loc->root_fd, rel);
}

/* Opens REL + SUFFIX beneath the root when it is a regular file: -1 otherwise. */
static int open_sibling(const struct location_rt *loc, const char *rel, const char *suffix, struct stat *st)
{
    char name[4200];
    int fd;

    if (snprintf(name, sizeof name, "%s%s", rel, suffix) >= (int)sizeof name)
        return -1;
    fd = open_beneath(loc->root_fd, name);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool sibling_exists(const struct location_rt *loc, const char *rel, const char *suffix)
{
    char name[4200];
    struct stat st;

    return snprintf(name, sizeof name, "%s%s", rel, suffix) < (int)sizeof name &&
           fstatat(loc->root_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

/* The file's Content-Type: an X-Accel-Redirect's own, else by its name. */
static const char *file_type(const struct exchange *x, const struct file *f)
{
    return x->accel && x->accel->type ? x->accel->type : mime_type(f->name, f->name_len);
}

/* Swaps in "REL.br" or "REL.gz" when it exists and the client takes that
 * coding (its q-values decide; brotli on a tie). Siblings are served
 * whether or not gzip/brotli compress on the fly. */
static void try_sibling(const struct exchange *x, const struct location_rt *loc, const char *rel, struct file *f)
{
    const struct as_http_header *ae = as_http_header(x->req, "Accept-Encoding");
    unsigned allowed = (1u << AE_GZIP) | (1u << AE_BR);
    const char *type;
    struct stat st;
    int coding, fd;

    if (loc->sp.exact || loc->root_fd < 0 || !mime_compressible(mime_type(f->name, f->name_len)))
        return;
    while ((coding = ae ? ae_choose(ae->value, ae->value_len, allowed) : AE_IDENTITY) != AE_IDENTITY) {
        fd = open_sibling(loc, rel, coding == AE_BR ? ".br" : ".gz", &st);
        if (fd >= 0) {
            close(f->fd);
            f->fd = fd;
            f->st = st;
            f->coding = coding;
            f->vary = true;
            return;
        }
        allowed &= ~(1u << coding);
    }
    /* Caches must know another client may get another variant. When the
     * file itself is compressed on the fly for some clients, send_file
     * says so anyway, and the two lookups (each a path walk that fails,
     * on every request of such a file) are not needed. */
    type = file_type(x, f);
    if (compress_eligible(x, 200, f->st.st_size, type, strlen(type)))
        return;
    f->vary = sibling_exists(loc, rel, ".gz") || sibling_exists(loc, rel, ".br");
}

/* Returns 0 with F filled, or the status to answer. */
static int open_file(const struct location_rt *loc, const char *rel, const char *path, struct file *f)
{
    char idx[4200];

    f->fd = open_in(loc, rel);
    if (f->fd < 0)
        return errno == EACCES ? 403 : 404;
    if (fstat(f->fd, &f->st) < 0)
        goto not_found;
    if (S_ISDIR(f->st.st_mode)) {
        /* An index file for ".../", never a listing. */
        if (loc->sp.exact || path[strlen(path) - 1] != '/')
            goto forbidden;
        if (snprintf(idx, sizeof idx, "%s%sindex.html", rel, *rel ? "/" : "") >= (int)sizeof idx)
            goto forbidden;
        close(f->fd);
        f->fd = open_beneath(loc->root_fd, idx);
        if (f->fd < 0)
            return errno == ENOENT ? 403 : 404;
        if (fstat(f->fd, &f->st) < 0)
            goto not_found;
        f->name = "index.html";
        f->name_len = 10;
    }
    if (!S_ISREG(f->st.st_mode))
        goto not_found;
    return 0;
forbidden:
    close(f->fd);
    f->fd = -1;
    return 403;
not_found:
    close(f->fd);
    f->fd = -1;
    return 404;
}

/* "MTIME-SIZE" in hex, quoted; OUT holds at least 37 bytes. */
static void format_etag(const struct stat *st, char *out)
{
    size_t n = 0;

    out[n++] = '"';
    n += fmt_hex((uint64_t)st->st_mtim.tv_sec, out + n);
    out[n++] = '-';
    n += fmt_hex((uint64_t)st->st_size, out + n);
    out[n++] = '"';
    out[n] = '\0';
}

/* If-None-Match: a list of tags or "*"; weak comparison. */
static bool etag_matches(const char *v, size_t vlen, const char *etag)
{
    size_t elen = strlen(etag);
    const char *end = v + vlen, *p = v;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == ','))
            p++;
        if (p < end && *p == '*')
            return true;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
            p += 2;
        if ((size_t)(end - p) >= elen && !memcmp(p, etag, elen))
            return true;
        while (p < end && *p != ',')
            p++;
    }
    return false;
}

static bool not_modified(const struct as_http_request *r, const struct stat *st, const char *etag)
{
    const struct as_http_header *h = as_http_header(r, "If-None-Match");
    time_t since;

    if (h)
        return etag_matches(h->value, h->value_len, etag);
    h = as_http_header(r, "If-Modified-Since");
    return h && as_http_date_parse(h->value, h->value_len, &since) && st->st_mtim.tv_sec <= since;
}

static bool parse_num(const char **p, const char *end, off_t *out)
{
    off_t v = 0;
    const char *s = *p;

    if (s == end || *s < '0' || *s > '9')
        return false;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        if (v > (INT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (*s - '0');
    }
    *p = s;
    *out = v;
    return true;
}

enum range { RANGE_NONE, RANGE_OK, RANGE_BAD };

/* One "bytes=" range against SIZE; several ranges or bad syntax: RANGE_NONE
 * (the whole file, which RFC 9110 allows). */
static enum range parse_range(const char *v, size_t len, off_t size, off_t *start, off_t *end)
{
    const char *p = v + 6, *e = v + len;
    off_t a, b;

    if (len < 7 || strncasecmp(v, "bytes=", 6) || memchr(v, ',', len))
        return RANGE_NONE;
    if (*p == '-') {
        p++;
        if (!parse_num(&p, e, &b) || p != e)
            return RANGE_NONE;
        if (b == 0 || size == 0)
            return RANGE_BAD;
        *start = b >= size ? 0 : size - b;
        *end = size;
        return RANGE_OK;
    }
    if (!parse_num(&p, e, &a) || p == e || *p++ != '-')
        return RANGE_NONE;
    b = size - 1;
    if (p != e && (!parse_num(&p, e, &b) || p != e || b < a))
        return RANGE_NONE;
    if (a >= size)
        return RANGE_BAD;
    *start = a;
    *end = (b >= size ? size - 1 : b) + 1;
    return RANGE_OK;
}

/* If-Range names the current validator? Otherwise the range is ignored. */
static bool if_range_ok(const struct as_http_request *r, const struct stat *st, const char *etag)
{
    const struct as_http_header *h = as_http_header(r, "If-Range");
    time_t t;

    if (!h)
        return true;
    if (h->value_len && h->value[0] == '"')
        return h->value_len == strlen(etag) && !memcmp(h->value, etag, h->value_len);
    return as_http_date_parse(h->value, h->value_len, &t) && t == st->st_mtim.tv_sec;
}

static void validators(struct headw *h, const struct exchange *x, const struct location_rt *loc, const struct file *f,
                       const char *etag)
{
    char lm[AS_HTTP_DATE_LEN + 1];
    const struct accel *a = x->accel;

    as_http_date_format(f->st.st_mtim.tv_sec, lm);
    hw_str(h, "Last-Modified: ");
    hw_put(h, lm, AS_HTTP_DATE_LEN);
    hw_str(h, "\r\nETag: ");
    hw_str(h, etag);
    hw_str(h, "\r\n");
    if (a)
        hw_put(h, a->lines, a->lines_len);  /* the application's Content-Disposition, cookies... */
    if (loc->expires >= 0 && !(a && a->cache_control)) {
        hw_str(h, "Cache-Control: max-age=");
        hw_u64(h, (uint64_t)loc->expires);
        hw_str(h, "\r\n");
    }
    if (f->vary)
        hw_str(h, "Vary: Accept-Encoding\r\n");
}

static void end_head(struct exchange *x, struct headw *h, enum body_kind body)
{
    resp_head_end(x, h, x->head_only ? BODY_NONE : body);
}

/* The whole file (at most COMPRESS_STATIC_MAX) encoded at once, so the
 * response still has a Content-Length; its ETag is the file's, weak (as
 * nginx makes it), and there are no ranges of it. */
static void send_encoded(struct exchange *x, const struct location_rt *loc, struct file *f, const char *etag,
                         const char *type, int coding)
{
    static char *in;
    static size_t cap;
    size_t len = (size_t)f->st.st_size, got = 0, out_len = 0;
    const char *out;
    struct headw h;
    char wetag[44];

    if (len > cap) {
        char *p = realloc(in, len);
        if (!p) {
            resp_simple(x, 500, NULL);
            return;
        }
        in = p;
        cap = len;
    }
    while (got < len) {
        ssize_t n = pread(f->fd, in + got, len - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            resp_simple(x, n == 0 ? 404 : 500, NULL);     /* truncated meanwhile, or unreadable */
            return;
        }
        got += (size_t)n;
    }
    out = compress_whole(x->rt, coding, in, len, &out_len);
    if (!out) {
        resp_simple(x, 500, NULL);
        return;
    }
    snprintf(wetag, sizeof wetag, "W/%s", etag);
    resp_head(x, &h, 200);
    hw_str(&h, "Content-Type: ");
    hw_str(&h, type);
    hw_str(&h, "\r\nContent-Length: ");
    hw_u64(&h, (uint64_t)out_len);
    hw_str(&h, "\r\nContent-Encoding: ");
    hw_str(&h, compress_coding_name(coding));
    hw_str(&h, "\r\n");
    validators(&h, x, loc, f, wetag);
    end_head(x, &h, BODY_LENGTH);
    if (spool_append(&x->out, out, out_len) < 0)
        x->keep_alive = false;
}

static void send_file(struct exchange *x, const struct location_rt *loc, struct file *f)
{
    char etag[40];
    struct headw h;
    const struct as_http_header *range = as_http_header(x->req, "Range");
    off_t start = 0, end = f->st.st_size;
    enum range rk = RANGE_NONE;
    int status = 200, coding;
    const char *type = file_type(x, f);

    format_etag(&f->st, etag);
    if (not_modified(x->req, &f->st, etag)) {
        resp_head(x, &h, 304);
        validators(&h, x, loc, f, etag);
        end_head(x, &h, BODY_NONE);
        return;
    }
    if (range && if_range_ok(x->req, &f->st, etag))
        rk = parse_range(range->value, range->value_len, f->st.st_size, &start, &end);
    if (rk == RANGE_BAD) {
        resp_head(x, &h, 416);
        hw_str(&h, "Content-Range: bytes */");
        hw_u64(&h, (uint64_t)f->st.st_size);
        hw_str(&h, "\r\nContent-Length: 0\r\n");
        end_head(x, &h, BODY_LENGTH);
        return;
    }
    if (!f->coding && compress_eligible(x, 200, f->st.st_size, type, strlen(type))) {
        f->vary = true;     /* another client may get it encoded */
        if (rk == RANGE_NONE && f->st.st_size <= COMPRESS_STATIC_MAX && !x->head_only &&
            (coding = compress_coding(x)) != AE_IDENTITY) {
            send_encoded(x, loc, f, etag, type, coding);
            return;
        }
    }
    if (rk == RANGE_OK)
        status = 206;
    resp_head(x, &h, status);
    hw_str(&h, "Content-Type: ");
    hw_str(&h, type);
    hw_str(&h, "\r\nContent-Length: ");
    hw_u64(&h, (uint64_t)(end - start));
    hw_str(&h, "\r\n");
    if (status == 206) {
        hw_str(&h, "Content-Range: bytes ");
        hw_u64(&h, (uint64_t)start);
        hw_char(&h, '-');
        hw_u64(&h, (uint64_t)(end - 1));
        hw_char(&h, '/');
        hw_u64(&h, (uint64_t)f->st.st_size);
        hw_str(&h, "\r\n");
    }
    if (f->coding) {
        hw_str(&h, "Content-Encoding: ");
        hw_str(&h, compress_coding_name(f->coding));
        hw_str(&h, "\r\n");
    }
    hw_str(&h, "Accept-Ranges: bytes\r\n");
    validators(&h, x, loc, f, etag);
    end_head(x, &h, BODY_LENGTH);
    if (x->head_only || end == start)
        return;
    if ((size_t)(end - start) <= SMALL_FILE) {
        if (spool_append_file(&x->out, f->fd, start, (size_t)(end - start)) < 0)
            x->keep_alive = false;      /* the length promised cannot be kept */
        return;
    }
    spool_attach_file(&x->out, f->fd, start, end);
    f->fd = -1;
}

void static_serve(struct exchange *x, const struct location_rt *loc, const char *rel, const char *path)
{
    struct file f = { .fd = -1, .name = path, .name_len = strlen(path) };
    int status;

    /* a WebSocket over HTTP/2 is a GET for the upstream, a CONNECT here */
    if (x->h2_ws || (strcmp(x->req->method, "GET") && strcmp(x->req->method, "HEAD"))) {
        resp_simple(x, 405, "Allow: GET, HEAD\r\n");
        return;
    }
    if (loc->sp.exact) {
        f.name = loc->alias;
        f.name_len = strlen(loc->alias);
    }
    status = open_file(loc, rel, path, &f);
    if (status) {
        resp_simple(x, status, NULL);
        return;
    }
    try_sibling(x, loc, rel, &f);
    send_file(x, loc, &f);
    if (f.fd >= 0)
        close(f.fd);
    x->resp_done = true;
}
