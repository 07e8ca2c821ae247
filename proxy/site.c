/* Virtual hosts (site.h): the sites of a runtime and the choice of one by
 * name. */
#include "site.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

#define HOST_MAX 255            /* RFC 1035: no longer name can match */

static uint32_t hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;   /* FNV-1a */

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static struct site *names_find(const struct site_names *t, const char *s, size_t len)
{
    uint32_t h = hash(s, len);

    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const struct site_name *e = &t->slot[i];
        if (!e->name)
            return NULL;
        if (e->hash == h && e->len == len && !memcmp(e->name, s, len))
            return e->site;
    }
}

static void names_add(struct site_names *t, const char *s, struct site *site)
{
    size_t len = strlen(s);
    uint32_t h = hash(s, len);
    size_t i = h & t->mask;

    while (t->slot[i].name)
        i = (i + 1) & t->mask;
    t->slot[i] = (struct site_name){ s, len, h, site };
}

struct site *site_for_host(const struct runtime *rt, const char *host, size_t len)
{
    char name[HOST_MAX];
    const char *end = host + len, *colon;
    struct site *site;
    size_t n;

    if (!rt->names.mask)
        return rt->default_site;
    if (len && host[0] == '[')
        colon = memchr(host, ']', len) ? (const char *)memchr(host, ']', len) + 1 : end;
    else
        colon = memchr(host, ':', len);
    n = (size_t)((colon ? colon : end) - host);
    if (n && host[n - 1] == '.')
        n--;                    /* "example.com." is example.com */
    if (!n || n > sizeof name)
        return rt->default_site;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)host[i];
        name[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    if (name[0] != '.' && (site = names_find(&rt->names, name, n)))
        return site;
    /* The wildcards, from the closest parent domain up. */
    for (size_t i = 1; i < n; i++)
        if (name[i] == '.' && (site = names_find(&rt->names, name + i, n - i)))
            return site;
    return rt->default_site;
}

void sites_build(struct runtime *rt)
{
    const struct as_config *c = &rt->cfg;
    size_t loc = c->n_locations, n_names = 0, slots = 8;
    struct site *s;

    rt->n_sites = c->n_sites + (c->upstream.n > 0);
    rt->sites = as_xcalloc(rt->n_sites, sizeof *rt->sites);
    s = rt->sites;
    if (c->upstream.n) {
        /* The default site: [proxy] itself, and the locations at the front
         * of the runtime's. */
        s->name = SITE_DEFAULT_NAME;
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
    }
    if (!n_names)
        return;
    while (slots < 2 * n_names)
        slots *= 2;
    rt->names.slot = as_xcalloc(slots, sizeof *rt->names.slot);
    rt->names.mask = slots - 1;
    for (size_t i = 0; i < rt->n_sites; i++) {
        const struct as_site *cs = rt->sites[i].cfg;
        for (size_t j = 0; cs && j < cs->server_name.n; j++) {
            const char *name = cs->server_name.v[j];
            names_add(&rt->names, name[0] == '*' ? name + 1 : name, &rt->sites[i]);
        }
    }
}

void sites_free(struct runtime *rt)
{
    free(rt->sites);
    free(rt->names.slot);
}
