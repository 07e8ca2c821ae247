/* Virtual hosts ([site NAME] sections): each request belongs to one site,
 * chosen by its Host, and is served by that site's locations and
 * upstreams with that site's limits. The default site is [proxy]'s own
 * upstreams and the locations before any [site]; it takes the requests
 * whose Host no server_name matches, and without it they are answered 421.
 *
 * The choice is a lookup in a hash table of the exact names, then of the
 * Host's parent domains among the wildcards ("*.example.com" is stored as
 * ".example.com"), longest first: a few hashes per request whatever the
 * number of sites, read a word at a time, and none at all when the Host is
 * the one the connection's previous request named (struct site_memo).
 * (A TLS handshake's certificate is chosen by the certificates' own names,
 * tls_ctx.c, not here.) */
#ifndef APPSTACK_PROXY_SITE_H
#define APPSTACK_PROXY_SITE_H

#include "proxy.h"

#define SITE_DEFAULT_NAME "default"     /* APPSTACK_SITE of the default site */

struct site {
    const char *name;           /* [site NAME], or SITE_DEFAULT_NAME */
    size_t name_len;            /* for the access log's line */
    const struct as_site *cfg;  /* NULL for the default site */
    struct location_rt *locs;   /* a slice of the runtime's locations */
    struct sp_location *sp;     /* the same, for static_resolve */
    size_t n_locs;
    struct balancer *bal;       /* its upstreams (upstream.h; runtime.c makes it) */
    struct limit *limit;        /* its own limit_req/limit_conn, or NULL */
    /* [proxy]'s values unless the site gives its own */
    uint64_t max_body;          /* 0 = unlimited */
    size_t body_buffer_size;
    bool access_log;
    double connect_timeout;
    double read_timeout;
};

/* An entry of the runtime's name table (struct site_names: open
 * addressing, linear probing, at most half full; mask = slots - 1, 0 when
 * no site has a name). */
struct site_name {
    const char *name;           /* lower case, then zero bytes (site.c); ".example.com" for "*.example.com" */
    size_t len;
    uint32_t hash;
    struct site *site;
};


/* The site for a Host value (port, trailing dot and case do not matter);
 * NULL when none matches and there is no default site. */
struct site *site_for_host(const struct runtime *rt, const char *host, size_t len);

/* What a connection remembers of the last Host it looked up: the requests
 * of a keep-alive connection nearly always name the same one, and the
 * next is then one comparison of bytes, not a lookup. The generation of
 * the runtime's sites (a new one for each runtime built) says whether the
 * site is still that runtime's; a Host longer than host[] is not kept. */
struct site_memo {
    uint64_t gen;               /* struct site_names' gen; 0: nothing kept */
    struct site *site;
    uint8_t len;
    char host[55];              /* the Host value as sent */
};

/* site_for_host(), through M. */
struct site *site_for_host_memo(const struct runtime *rt, struct site_memo *m, const char *host, size_t len);

/* Builds RT's sites from its config, once its locations and upstreams are
 * built. */
void sites_build(struct runtime *rt);
void sites_free(struct runtime *rt);

#endif
