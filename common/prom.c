/* Prometheus text exposition (prom.h). Numbers are written by hand where
 * they are integers (most samples are counters), durations as exact decimal
 * seconds from microseconds, and other numbers with "%.15g" (what a double
 * holds without noise digits). */
#include "prom.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void prom_add(struct prom *p, const char *s, size_t n)
{
    if (p->oom)
        return;
    if (p->len + n + 1 > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        char *ns;

        while (cap < p->len + n + 1)
            cap *= 2;
        ns = realloc(p->s, cap);
        if (!ns) {
            p->oom = true;
            return;
        }
        p->s = ns;
        p->cap = cap;
    }
    memcpy(p->s + p->len, s, n);
    p->len += n;
    p->s[p->len] = '\0';
}

static void add_str(struct prom *p, const char *s)
{
    prom_add(p, s, strlen(s));
}

static void add_u64(struct prom *p, uint64_t v)
{
    char buf[24], *e = buf + sizeof buf, *q = e;

    do
        *--q = (char)('0' + v % 10);
    while ((v /= 10));
    prom_add(p, q, (size_t)(e - q));
}

/* Microseconds as seconds: "0.0025", "1", "30.5" (no exponent, no
 * trailing zeros), exact for any integer count of microseconds. */
static void add_usec(struct prom *p, uint64_t usec)
{
    char frac[8];
    int n = 6;
    uint64_t f = usec % 1000000;

    add_u64(p, usec / 1000000);
    if (!f)
        return;
    snprintf(frac, sizeof frac, ".%06u", (unsigned)f);
    while (frac[n] == '0')
        n--;
    prom_add(p, frac, (size_t)n + 1);
}

static void sample_name(struct prom *p, const char *name, const char *suffix, const char *labels)
{
    add_str(p, name);
    if (suffix)
        add_str(p, suffix);
    if (labels && *labels) {
        prom_add(p, "{", 1);
        add_str(p, labels);
        prom_add(p, "}", 1);
    }
    prom_add(p, " ", 1);
}

void prom_family(struct prom *p, const char *name, const char *type, const char *help)
{
    add_str(p, "# HELP ");
    add_str(p, name);
    prom_add(p, " ", 1);
    add_str(p, help);
    add_str(p, "\n# TYPE ");
    add_str(p, name);
    prom_add(p, " ", 1);
    add_str(p, type);
    prom_add(p, "\n", 1);
}

void prom_u64(struct prom *p, const char *name, const char *labels, uint64_t v)
{
    sample_name(p, name, NULL, labels);
    add_u64(p, v);
    prom_add(p, "\n", 1);
}

void prom_double(struct prom *p, const char *name, const char *labels, double v)
{
    char buf[40];

    sample_name(p, name, NULL, labels);
    snprintf(buf, sizeof buf, "%.15g\n", v);
    add_str(p, buf);
}

void prom_seconds(struct prom *p, const char *name, const char *labels, uint64_t usec)
{
    sample_name(p, name, NULL, labels);
    add_usec(p, usec);
    prom_add(p, "\n", 1);
}

void prom_histogram_usec(struct prom *p, const char *name, const char *labels, const uint64_t *counts,
                         const uint64_t *bounds, int n_bounds, uint64_t sum_usec)
{
    uint64_t cum = 0;
    bool lab = labels && *labels;

    for (int i = 0; i <= n_bounds; i++) {
        cum += counts[i];
        add_str(p, name);
        add_str(p, "_bucket{");
        if (lab) {
            add_str(p, labels);
            prom_add(p, ",", 1);
        }
        add_str(p, "le=\"");
        if (i < n_bounds)
            add_usec(p, bounds[i]);
        else
            add_str(p, "+Inf");
        add_str(p, "\"} ");
        add_u64(p, cum);
        prom_add(p, "\n", 1);
    }
    sample_name(p, name, "_sum", labels);
    add_usec(p, sum_usec);
    prom_add(p, "\n", 1);
    sample_name(p, name, "_count", labels);
    add_u64(p, cum);
    prom_add(p, "\n", 1);
}

void prom_escape(const char *v, char *out, size_t cap)
{
    size_t k = 0;

    if (!cap)
        return;
    for (; *v && k + 2 < cap; v++) {
        if (*v == '\\' || *v == '"') {
            out[k++] = '\\';
            out[k++] = *v;
        } else if (*v == '\n') {
            out[k++] = '\\';
            out[k++] = 'n';
        } else {
            out[k++] = *v;
        }
    }
    out[k] = '\0';
}

void prom_free(struct prom *p)
{
    free(p->s);
    memset(p, 0, sizeof *p);
}
