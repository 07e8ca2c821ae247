/* Virtual hosts (site.h): the sites of a runtime and the choice of one by
 * name. */
#include "site.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

#define HOST_MAX 255            /* RFC 1035: no longer name can match */

/* Host names are read a word (8 bytes) at a time: the port found, the case
 * folded, the name copied and hashed a word per step, not a byte. Every
 * name, in the table or looked up, is followed by at least PAD zero bytes,
 * so that the last word of a name, or of any of its parent domains, reads
 * zeros past the end: hashing and comparing take whole words, and give the
 * same result wherever the name starts, in either byte order. */
#define PAD 8
#define ONES 0x0101010101010101u
#define MIX 0x9e3779b97f4a7c15u     /* 2^64 / golden ratio */

static inline uint64_t load8(const char *p)
{
    uint64_t w;

    memcpy(&w, p, sizeof w);
    return w;
}

static inline void store8(char *p, uint64_t w)
{
    memcpy(p, &w, sizeof w);
}

/* ASCII upper case to lower case in each byte of W, every other byte
 * value as it is (no byte carries into the next). */
static inline uint64_t fold8(uint64_t w)
{
    uint64_t low7 = w & 0x7f * ONES;
    uint64_t ge_a = low7 + (0x80 - 'A') * ONES;     /* bit 7: >= 'A' */
    uint64_t gt_z = low7 + (0x7f - 'Z') * ONES;     /* bit 7: > 'Z' */

    return w | ((ge_a ^ gt_z) & ~w & 0x80 * ONES) >> 2;
}

/* The index of W's first byte (in memory order) that is ':', or 8. Exact:
 * no borrow runs from one byte into the next. */
static inline size_t colon8(uint64_t w)
{
    uint64_t t = w ^ ':' * ONES;
    uint64_t z = ~(((t & 0x7f * ONES) + 0x7f * ONES) | t | 0x7f * ONES);

    if (!z)
        return 8;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (size_t)__builtin_ctzll(z) / 8;
#else
    return (size_t)__builtin_clzll(z) / 8;
#endif
}

/* DST gets the host name of the Host value SRC (LEN bytes: up to the port,
 * if any) in lower case, and the bytes after it up to the next word;
 * returns its length. For a Host in brackets (an IPv6 literal, whose
 * colons are its own), SRC is that literal alone, and LEN its length. */
static inline size_t fold_name(char *dst, const char *src, size_t len, bool v6)
{
    size_t i = 0, at;

    for (; i + 8 <= len; i += 8) {
        uint64_t w = load8(src + i);
        store8(dst + i, fold8(w));
        if (!v6 && (at = colon8(w)) < 8)
            return i + at;
    }
    if (i == len)
        return len;
    if (len >= 8) {
        /* The last word overlaps the one before, which had no colon. */
        uint64_t w = load8(src + len - 8);
        store8(dst + len - 8, fold8(w));
        return v6 || (at = colon8(w)) == 8 ? len : len - 8 + at;
    }
    for (; i < len && (v6 || src[i] != ':'); i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    return i;
}

/* The hash of S's LEN bytes, which PAD zeros follow. */
static inline uint32_t hash(const char *s, size_t len)
{
    uint64_t h = len;

    for (size_t i = 0; i < len; i += 8) {
        h = (h ^ load8(s + i)) * MIX;
        h ^= h >> 32;
    }
    return (uint32_t)((h * MIX) >> 32);
}

/* S (LEN bytes, which PAD zeros follow) in T. */
static inline struct site *names_find(const struct site_names *t, const char *s, size_t len)
{
    uint32_t h = hash(s, len);

    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const struct site_name *e = &t->slot[i];
        size_t j = 0;
        if (!e->name)
            return NULL;
        if (e->hash != h || e->len != len)
            continue;
        while (j < len && load8(e->name + j) == load8(s + j))
            j += 8;
        if (j >= len)
            return e->site;
    }
}

/* NAME (lower case already, config.c) into T, its copy at *ARENA. */
static void names_add(struct site_names *t, char **arena, const char *name, struct site *site)
{
    size_t len = strlen(name), i;
    char *copy = *arena;
    uint32_t h;

    memcpy(copy, name, len);
    memset(copy + len, 0, PAD);
    *arena += len + PAD;
    h = hash(copy, len);
    for (i = h & t->mask; t->slot[i].name; i = (i + 1) & t->mask)
        ;
    t->slot[i] = (struct site_name){ copy, len, h, site };
}

struct site *site_for_host(const struct runtime *rt, const char *host, size_t len)
{
    char name[HOST_MAX + 1 + PAD];      /* one more: a trailing dot */
    bool v6 = len && host[0] == '[';    /* an IPv6 literal */
    size_t most = len < HOST_MAX + 1 ? len : HOST_MAX + 1, n;
    struct site *site;

    if (!rt->names.mask)
        return rt->default_site;
    if (v6) {
        const char *rb = memchr(host, ']', len);
        most = rb ? (size_t)(rb + 1 - host) : len;
        if (most > HOST_MAX + 1)
            return rt->default_site;
    }
    n = fold_name(name, host, most, v6);
    if (n == most && most < len && !v6 && host[most] != ':')
        return rt->default_site;        /* longer than any name */
    if (n && name[n - 1] == '.')
        n--;                    /* "example.com." is example.com */
    if (!n || n > HOST_MAX)
        return rt->default_site;
    store8(name + n, 0);
    if (name[0] != '.' && (site = names_find(&rt->names, name, n)))
        return site;
    /* The wildcards, from the closest parent domain up. */
    for (size_t i = 1; i < n; i++)
        if (name[i] == '.' && (site = names_find(&rt->names, name + i, n - i)))
            return site;
    return rt->default_site;
}

/* A's N bytes are B's; a word at a time from 8 bytes on (the last word
 * overlaps the one before), as neither may be read past N. */
static inline bool same_bytes(const char *a, const char *b, size_t n)
{
    size_t i = 0;

    if (n < 8)
        return !memcmp(a, b, n);
    for (; i + 8 < n; i += 8)
        if (load8(a + i) != load8(b + i))
            return false;
    return load8(a + n - 8) == load8(b + n - 8);
}

/* Out of line, so that a hit costs no more than its comparison. */
static __attribute__((noinline)) struct site *memo_miss(const struct runtime *rt, struct site_memo *m,
                                                        const char *host, size_t len)
{
    struct site *site = site_for_host(rt, host, len);

    if (len <= sizeof m->host) {
        m->gen = rt->names.gen;
        m->site = site;
        m->len = (uint8_t)len;
        memcpy(m->host, host, len);
    }
    return site;
}

struct site *site_for_host_memo(const struct runtime *rt, struct site_memo *m, const char *host, size_t len)
{
    if (m->gen == rt->names.gen && m->len == len && same_bytes(m->host, host, len))
        return m->site;
    return memo_miss(rt, m, host, len);
}

void sites_build(struct runtime *rt)
{
    static uint64_t generations;
    const struct as_config *c = &rt->cfg;
    size_t loc = c->n_locations, n_names = 0, slots = 8, arena_size = 0;
    struct site *s;
    char *arena;

    rt->names.gen = ++generations;
    rt->n_sites = c->n_sites + (c->upstream.n > 0);
    rt->sites = as_xcalloc(rt->n_sites, sizeof *rt->sites);
    s = rt->sites;
    if (c->upstream.n) {
        /* The default site: [proxy] itself, and the locations at the front
         * of the runtime's. */
        s->name = SITE_DEFAULT_NAME;
        s->name_len = strlen(s->name);
        s->locs = rt->locs;
        s->sp = rt->sp;
        s->n_locs = c->n_locations;
        s->max_body = c->client_max_body_size;
        s->body_buffer_size = c->client_body_buffer_size;
        s->access_log = c->access_log;
        s->connect_timeout = c->proxy_connect_timeout;
        s->read_timeout = c->proxy_read_timeout;
        rt->default_site = s++;
    }
    for (size_t i = 0; i < c->n_sites; i++, s++) {
        const struct as_site *cs = &c->sites[i];
        s->name = cs->name;
        s->name_len = strlen(s->name);
        s->cfg = cs;
        s->locs = rt->locs + loc;
        s->sp = rt->sp + loc;
        s->n_locs = cs->n_locations;
        loc += cs->n_locations;
        s->max_body = cs->client_max_body_size;
        s->body_buffer_size = cs->client_body_buffer_size;
        s->access_log = cs->access_log;
        s->connect_timeout = cs->proxy_connect_timeout;
        s->read_timeout = cs->proxy_read_timeout;
        n_names += cs->server_name.n;
        for (size_t j = 0; j < cs->server_name.n; j++)
            arena_size += strlen(cs->server_name.v[j]) + PAD;
    }
    if (!n_names)
        return;
    while (slots < 2 * n_names)
        slots *= 2;
    rt->names.slot = as_xcalloc(slots, sizeof *rt->names.slot);
    rt->names.mask = slots - 1;
    rt->names.arena = arena = as_xcalloc(arena_size, 1);
    for (size_t i = 0; i < rt->n_sites; i++) {
        const struct as_site *cs = rt->sites[i].cfg;
        for (size_t j = 0; cs && j < cs->server_name.n; j++) {
            const char *name = cs->server_name.v[j];
            names_add(&rt->names, &arena, name[0] == '*' ? name + 1 : name, &rt->sites[i]);
        }
    }
}

void sites_free(struct runtime *rt)
{
    free(rt->sites);
    free(rt->names.slot);
    free(rt->names.arena);
}
