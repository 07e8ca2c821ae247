/* Turning what a worker writes to its stdout or stderr into log entries.
 *
 * Input is the pipe's packets (supervisor/stdio_capture.c makes the pipe a packet
 * pipe, so one write(2) of up to PIPE_BUF bytes is one packet and a longer
 * one a chain of full packets). The rules, in docs/supervisor.md:
 *  - one write that ends a line is one entry, however many lines it holds
 *    (a `logging` record, traceback included, is one write);
 *  - a write that does not end a line waits for the rest of the line;
 *  - a Python traceback printed piecewise (traceback.print_exc(), an
 *    uncaught exception in a thread, faulthandler) is gathered into one
 *    entry by its shape: a "Traceback (most recent call last):" or
 *    "... (most recent call first):" line (or "Exception in thread X:"
 *    before it), then indented lines, then the exception line and any
 *    chained traceback;
 *  - "<N>" (0-7) at the start of an entry is its priority (sd-daemon(3)),
 *    removed from the text; otherwise the stream's default priority;
 *  - an entry stops growing at STDIO_ENTRY_MAX bytes.
 * No I/O here: entries go to the EMIT callback. */
#ifndef APPSTACK_STDIO_ENTRY_H
#define APPSTACK_STDIO_ENTRY_H

#include <stdbool.h>
#include <stddef.h>

#define STDIO_ENTRY_MAX (64 * 1024)

typedef void (*stdio_emit_fn)(void *ctx, int priority, const char *text, size_t len);

enum stdio_shape {
    SHAPE_NONE,     /* nothing open: the entry is complete */
    SHAPE_TB,       /* in a traceback's frames */
    SHAPE_GROUP,    /* in an exception group's frames (all indented) */
    SHAPE_EXC,      /* after a traceback's exception line: a chained one may follow */
    SHAPE_GLUE,     /* after "During handling of the above exception...": a traceback follows */
    SHAPE_STACK,    /* in a "(most recent call first)" stack dump (faulthandler) */
};

struct stdio_entry {
    int default_priority;
    stdio_emit_fn emit;
    void *ctx;

    char *entry;            /* complete writes gathered into the entry being built */
    size_t entry_len;
    int priority;
    enum stdio_shape shape;

    char *write;            /* the write in progress (its line is not finished) */
    size_t write_len;
};

void stdio_entry_init(struct stdio_entry *e, int default_priority, stdio_emit_fn emit, void *ctx);

/* One packet of LEN bytes; FULL when it filled a whole pipe page, so that
 * the same write goes on in the next packet. Returns true while something
 * is held back (the caller calls stdio_entry_flush() after a short quiet
 * time). False when out of memory: the data was logged as it was. */
bool stdio_entry_feed(struct stdio_entry *e, const char *data, size_t len, bool full);

/* Emits whatever is held. */
void stdio_entry_flush(struct stdio_entry *e);

/* True while something is held back. */
bool stdio_entry_pending(const struct stdio_entry *e);

void stdio_entry_free(struct stdio_entry *e);

#endif
