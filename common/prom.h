/* Prometheus text exposition (format 0.0.4) into a growable buffer: the
 * one writer both appstackd and appstack-proxy use for /metrics, so that
 * escaping, number formatting and histogram lines are right in one place. */
#ifndef APPSTACK_PROM_H
#define APPSTACK_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct prom {
    char *s;
    size_t len, cap;
    bool oom;               /* an allocation failed: the text is incomplete */
};

/* "# HELP" and "# TYPE" of a family (TYPE: counter, gauge, histogram). */
void prom_family(struct prom *p, const char *name, const char *type, const char *help);

/* One sample. LABELS is the inside of the braces, already escaped
 * ("kind=\"static\",status=\"2xx\""), or NULL/"" for none. */
void prom_u64(struct prom *p, const char *name, const char *labels, uint64_t v);
void prom_double(struct prom *p, const char *name, const char *labels, double v);
/* A duration of USEC microseconds, in seconds. */
void prom_seconds(struct prom *p, const char *name, const char *labels, uint64_t usec);

/* A histogram's _bucket, _sum and _count lines. COUNTS has N_BOUNDS + 1
 * entries, per bucket (not cumulative), the last one beyond the last
 * bound; BOUNDS are in microseconds and printed in seconds, as is SUM_USEC. */
void prom_histogram_usec(struct prom *p, const char *name, const char *labels, const uint64_t *counts,
                         const uint64_t *bounds, int n_bounds, uint64_t sum_usec);

/* V escaped for use inside a label value's quotes (backslash, quote and
 * newline), NUL-terminated in OUT; cut short when CAP is too small. */
void prom_escape(const char *v, char *out, size_t cap);

/* Raw text. */
void prom_add(struct prom *p, const char *s, size_t n);

void prom_free(struct prom *p);

#endif
