/* Worker output to log entries: see stdio_entry.h for the rules. */
#include "stdio_entry.h"

#include <stdlib.h>
#include <string.h>

struct line {
    const char *p;
    size_t n;
};

static bool line_is(struct line l, const char *lit)
{
    size_t n = strlen(lit);

    return l.n == n && !memcmp(l.p, lit, n);
}

static bool line_starts(struct line l, const char *lit)
{
    size_t n = strlen(lit);

    return l.n >= n && !memcmp(l.p, lit, n);
}

static bool line_ends(struct line l, const char *lit)
{
    size_t n = strlen(lit);

    return l.n >= n && !memcmp(l.p + l.n - n, lit, n);
}

static bool indented(struct line l)
{
    return l.n > 0 && (l.p[0] == ' ' || l.p[0] == '\t');
}

/* The first line of TEXT, without its newline (and a '\r' before it). */
static struct line first_line(const char *text, size_t len)
{
    const char *nl = memchr(text, '\n', len);
    struct line l = { text, nl ? (size_t)(nl - text) : len };

    if (l.n > 0 && l.p[l.n - 1] == '\r')
        l.n--;
    return l;
}

static bool tb_head(struct line l)
{
    return line_is(l, "Traceback (most recent call last):");
}

static bool group_head(struct line l)
{
    return line_ends(l, "Exception Group Traceback (most recent call last):");
}

static bool stack_head(struct line l)
{
    return line_ends(l, "(most recent call first):") || line_starts(l, "Fatal Python error: ");
}

static bool glue(struct line l)
{
    return line_is(l, "During handling of the above exception, another exception occurred:") ||
           line_is(l, "The above exception was the direct cause of the following exception:");
}

/* What threading.excepthook and sys.unraisablehook print before a traceback. */
static bool announces_traceback(struct line l)
{
    return (line_starts(l, "Exception in thread ") && line_ends(l, ":")) || line_starts(l, "Exception ignored in: ");
}

/* "<N>" with N 0-7 at the start: its length (3), else 0. */
static size_t prefix_len(const char *text, size_t len, int *priority)
{
    if (len >= 3 && text[0] == '<' && text[1] >= '0' && text[1] <= '7' && text[2] == '>') {
        *priority = text[1] - '0';
        return 3;
    }
    return 0;
}

/* Whether a write starting with line F continues the open entry. */
static bool continues(enum stdio_shape shape, struct line f)
{
    switch (shape) {
    case SHAPE_TB:
        return true;    /* an indented frame line, or the exception line */
    case SHAPE_GROUP:
        return indented(f);
    case SHAPE_EXC:
        return f.n == 0 || glue(f);
    case SHAPE_GLUE:
        return f.n == 0 || tb_head(f) || group_head(f);
    case SHAPE_STACK:
        return f.n == 0 || indented(f) || stack_head(f) || line_starts(f, "Extension modules:");
    case SHAPE_NONE:
        break;
    }
    return false;
}

static enum stdio_shape next_shape(enum stdio_shape s, struct line l)
{
    if (tb_head(l))
        return SHAPE_TB;
    if (group_head(l))
        return SHAPE_GROUP;
    if (stack_head(l))
        return SHAPE_STACK;
    if (announces_traceback(l) && (s == SHAPE_NONE || s == SHAPE_EXC))
        return SHAPE_GLUE;
    switch (s) {
    case SHAPE_TB:
        return l.n > 0 && !indented(l) ? SHAPE_EXC : s;
    case SHAPE_EXC:
        return glue(l) ? SHAPE_GLUE : s;
    default:
        return s;
    }
}

void stdio_entry_init(struct stdio_entry *e, int default_priority, stdio_emit_fn emit, void *ctx)
{
    memset(e, 0, sizeof *e);
    e->default_priority = default_priority;
    e->emit = emit;
    e->ctx = ctx;
}

static void emit_text(struct stdio_entry *e, int priority, const char *text, size_t len)
{
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    if (len > 0)
        e->emit(e->ctx, priority, text, len);
}

static void emit_entry(struct stdio_entry *e)
{
    emit_text(e, e->priority, e->entry, e->entry_len);
    e->entry_len = 0;
    e->shape = SHAPE_NONE;
}

static bool append(char **buf, size_t *len, const char *data, size_t n)
{
    /* Both buffers are allocated once at the maximum size: the callers keep
     * them below it. */
    if (!*buf && !(*buf = malloc(STDIO_ENTRY_MAX)))
        return false;
    memcpy(*buf + *len, data, n);
    *len += n;
    return true;
}

/* One complete write (it ends a line, or it is as long as an entry may be). */
static void take_write(struct stdio_entry *e, const char *text, size_t len)
{
    struct line f = first_line(text, len);
    int priority = e->default_priority;
    size_t skip = prefix_len(text, len, &priority);

    if (e->entry_len > 0 && (skip || !continues(e->shape, f) || e->entry_len + len > STDIO_ENTRY_MAX))
        emit_entry(e);
    if (e->entry_len == 0) {
        e->priority = priority;
        text += skip;
        len -= skip;
    }
    if (len >= STDIO_ENTRY_MAX || !append(&e->entry, &e->entry_len, text, len)) {
        emit_text(e, e->priority, text, len);
        e->shape = SHAPE_NONE;
        return;
    }
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        e->shape = next_shape(e->shape, first_line(p, (size_t)(end - p)));
        p = nl ? nl + 1 : end;
    }
    if (e->shape == SHAPE_NONE)
        emit_entry(e);
}

bool stdio_entry_feed(struct stdio_entry *e, const char *data, size_t len, bool full)
{
    bool ok = true;

    while (len > 0) {
        size_t room = STDIO_ENTRY_MAX - e->write_len, n = len < room ? len : room;

        if (!append(&e->write, &e->write_len, data, n)) {
            /* No memory: what we have goes out as it is. */
            emit_text(e, e->default_priority, data, len);
            ok = false;
            break;
        }
        data += n;
        len -= n;
        if (e->write_len == STDIO_ENTRY_MAX || (len == 0 && !full && e->write[e->write_len - 1] == '\n')) {
            take_write(e, e->write, e->write_len);
            e->write_len = 0;
        }
    }
    return ok && stdio_entry_pending(e);
}

void stdio_entry_flush(struct stdio_entry *e)
{
    if (e->write_len > 0) {
        take_write(e, e->write, e->write_len);
        e->write_len = 0;
    }
    if (e->entry_len > 0)
        emit_entry(e);
}

bool stdio_entry_pending(const struct stdio_entry *e)
{
    return e->entry_len > 0 || e->write_len > 0;
}

void stdio_entry_free(struct stdio_entry *e)
{
    free(e->entry);
    free(e->write);
    e->entry = e->write = NULL;
    e->entry_len = e->write_len = 0;
}
