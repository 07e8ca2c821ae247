/* The line guard in front of llhttp: see http_guard.h. */
#include <stdint.h>
#include <string.h>

#include "http_guard.h"
#include "http_parse.h"

void as_http_guard_reset(struct as_http_guard *g, bool with_request_line)
{
    memset(g, 0, sizeof(*g));
    g->in_request_line = with_request_line;
}

/* Visible characters, obs-text and HTAB; the fast path of the scan. */
static inline bool plain_byte(unsigned char c)
{
    return (c >= 0x20 && c != 0x7f) || c == '\t';
}

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* Skips 8 bytes at a time while none is below 0x20 or equal to 0x7f
 * (HTAB and the rest are left to the byte loop). Header bytes go through
 * here on every request, so this is worth the bit tricks. */
static const unsigned char *skip_plain_words(const unsigned char *p, const unsigned char *stop)
{
    uint64_t w, del;

    while (stop - p >= 8) {
        memcpy(&w, p, 8);
        del = w ^ (ONES * 0x7f);
        if (((w - ONES * 0x20) & ~w & HIGHS) | ((del - ONES) & ~del & HIGHS))
            break;
        p += 8;
    }
    return p;
}

static size_t fail(int *status, const char **error, int code, const char *why, size_t at)
{
    *status = code;
    *error = why;
    return at;
}

/* The LF of a line has been seen. Returns 0 or an error status. */
static int end_line(struct as_http_guard *g, const char **error)
{
    if (g->in_request_line) {
        if (g->line_len == 0) {
            if (++g->blank_lines > AS_HTTP_GUARD_MAX_BLANK) {
                *error = "too many empty lines before the request line";
                return 400;
            }
            return 0;
        }
        g->in_request_line = false;
    } else if (g->line_len == 0) {
        g->done = true;
    }
    g->line_len = 0;
    return 0;
}

/* Counts one byte of the header section (CR, LF). Returns 0 or 431. */
static int count_section(struct as_http_guard *g, const struct as_http_limits *l,
                         const char **error)
{
    if (g->in_request_line)
        return 0;
    if (g->section >= l->max_header_bytes) {
        *error = "header section too large";
        return 431;
    }
    g->section++;
    return 0;
}

/* First byte of a line (not CR/LF). Returns 0 or an error status. */
static int start_line(struct as_http_guard *g, const struct as_http_limits *l,
                      unsigned char c, const char **error)
{
    if (c == ' ' || c == '\t') {
        *error = g->in_request_line ? "whitespace before the request line"
                                    : "obsolete line folding";
        return 400;
    }
    if (!g->in_request_line && ++g->lines > l->max_fields) {
        *error = "too many header fields";
        return 431;
    }
    return 0;
}

/* How many more plain bytes the current line may take before a limit. */
static size_t line_room(const struct as_http_guard *g, const struct as_http_limits *l,
                        int *status, const char **error)
{
    /* a field line counts with its CRLF, as gunicorn's
     * limit_request_field_size does; the request line without */
    size_t max = g->in_request_line ? l->max_request_line : l->max_field_size > 2 ? l->max_field_size - 2 : 1;
    size_t room;

    if (g->line_len >= max) {
        *status = g->in_request_line ? 414 : 431;
        *error = g->in_request_line ? "request line too long" : "header field too long";
        return 0;
    }
    room = max - g->line_len;
    if (!g->in_request_line) {
        if (g->section >= l->max_header_bytes) {
            *status = 431;
            *error = "header section too large";
            return 0;
        }
        if (room > l->max_header_bytes - g->section)
            room = l->max_header_bytes - g->section;
    }
    return room;
}

/* Takes a run of plain bytes at P (at least one). Returns its length, or 0
 * with *STATUS set. */
static size_t plain_run(struct as_http_guard *g, const struct as_http_limits *l,
                        const unsigned char *p, const unsigned char *end,
                        int *status, const char **error)
{
    const unsigned char *q = p, *stop;
    size_t room, n;

    if (g->line_len == 0 && (*status = start_line(g, l, *p, error)))
        return 0;
    room = line_room(g, l, status, error);
    if (!room)
        return 0;
    stop = (size_t)(end - p) > room ? p + room : end;
    q = skip_plain_words(q, stop);
    while (q < stop && plain_byte(*q) && !(*q == '\t' && g->in_request_line))
        q++;
    n = (size_t)(q - p);
    g->line_len += n;
    if (!g->in_request_line)
        g->section += n;
    return n;
}

size_t as_http_guard_scan(struct as_http_guard *g, const struct as_http_limits *l,
                          const char *data, size_t len, int *status, const char **error)
{
    const unsigned char *start = (const unsigned char *)data, *p = start;
    const unsigned char *end = start + len;
    size_t n;

    *status = 0;
    while (p < end && !g->done) {
        unsigned char c = *p;
        size_t at = (size_t)(p - start);

        if (g->cr) {
            bool request_line = g->in_request_line && g->line_len > 0;

            if (c != '\n')
                return fail(status, error, 400, "bare CR in header section", at);
            if ((*status = count_section(g, l, error)) || (*status = end_line(g, error)))
                return at;
            g->cr = false;
            p++;
            if (request_line)
                break;      /* the parser reads the request line itself */
        } else if (c == '\r') {
            if ((*status = count_section(g, l, error)))
                return at;
            g->cr = true;
            p++;
        } else if (c == '\n') {
            return fail(status, error, 400, "bare LF in header section", at);
        } else if (!plain_byte(c) || (c == '\t' && g->in_request_line)) {
            return fail(status, error, 400, "control character in header section", at);
        } else {
            n = plain_run(g, l, p, end, status, error);
            if (!n)
                return at;
            p += n;
        }
    }
    return (size_t)(p - start);
}
