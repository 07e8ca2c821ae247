/* The WSGI environ (PEP 3333). Built per request from a template dict of
 * the constant keys, with interned key strings and a cache of the
 * HTTP_* names, so a request costs the dict copy and its own values. */
#include "worker.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "forwarded.h"
#include "http_fields.h"
#include "http_uri.h"
#include "listen.h"
#include "log.h"

#define KEY_CACHE_SIZE 512      /* power of two */
#define KEY_NAME_MAX 48

struct key_entry {
    size_t len;
    char name[KEY_NAME_MAX];    /* lower case */
    PyObject *key;              /* "HTTP_..." interned */
};

static struct key_entry key_cache[KEY_CACHE_SIZE];
static size_t key_cache_used;
static PyObject *template;
static PyObject *k_method, *k_script, *k_path, *k_query, *k_proto, *k_ctype, *k_clen, *k_raddr, *k_rport,
    *k_sname, *k_sport, *k_input, *k_scheme, *k_raw, *k_host;
static PyObject *v_http10, *v_http11, *v_https, *v_empty, *v_80, *v_443;
static PyObject *methods[8];
static const char *const method_names[8] = { "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", NULL };

static PyObject *intern(const char *s)
{
    return PyUnicode_InternFromString(s);
}

static bool tpl_set(const char *key, PyObject *v)
{
    int rc;

    if (!v)
        return false;
    rc = PyDict_SetItemString(template, key, v);
    Py_DECREF(v);
    return rc == 0;
}

static bool make_keys(void)
{
    k_method = intern("REQUEST_METHOD");
    k_script = intern("SCRIPT_NAME");
    k_path = intern("PATH_INFO");
    k_query = intern("QUERY_STRING");
    k_proto = intern("SERVER_PROTOCOL");
    k_ctype = intern("CONTENT_TYPE");
    k_clen = intern("CONTENT_LENGTH");
    k_raddr = intern("REMOTE_ADDR");
    k_rport = intern("REMOTE_PORT");
    k_sname = intern("SERVER_NAME");
    k_sport = intern("SERVER_PORT");
    k_input = intern("wsgi.input");
    k_scheme = intern("wsgi.url_scheme");
    k_raw = intern("RAW_URI");
    k_host = intern("HTTP_HOST");
    v_http10 = intern("HTTP/1.0");
    v_http11 = intern("HTTP/1.1");
    v_https = intern("https");
    v_empty = intern("");
    v_80 = intern("80");
    v_443 = intern("443");
    for (int i = 0; method_names[i]; i++)
        if (!(methods[i] = intern(method_names[i])))
            return false;
    return k_method && k_script && k_path && k_query && k_proto && k_ctype && k_clen && k_raddr && k_rport &&
           k_sname && k_sport && k_input && k_scheme && k_raw && k_host && v_http10 && v_http11 && v_https &&
           v_empty && v_80 && v_443;
}

static bool listener_names(struct wk_listener *l)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN + 2] = "localhost", port[16] = "80";

    if (!l->is_unix && getsockname(l->fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
            snprintf(port, sizeof port, "%u", ntohs(in4->sin_port));
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            /* "[::1]", as in a URL and as CGI's SERVER_NAME has it. */
            host[0] = '[';
            inet_ntop(AF_INET6, &in6->sin6_addr, host + 1, sizeof host - 2);
            strcat(host, "]");
            snprintf(port, sizeof port, "%u", ntohs(in6->sin6_port));
        }
    }
    l->server_name = PyUnicode_FromString(host);
    l->server_port = PyUnicode_FromString(port);
    return l->server_name && l->server_port;
}

bool wk_environ_init(void)
{
    const char *sn = W.cfg.script_name ? W.cfg.script_name : "";
    size_t snlen = strlen(sn);

    if (!make_keys())
        return false;
    while (snlen > 0 && sn[snlen - 1] == '/')
        snlen--;    /* "/app/" mounts at "/app" */
    template = PyDict_New();
    if (!template)
        return false;
    if (!tpl_set("wsgi.version", Py_BuildValue("(ii)", 1, 0)) ||
        !tpl_set("wsgi.url_scheme", PyUnicode_FromString("http")) ||
        !tpl_set("wsgi.multithread", Py_NewRef(W.threads > 1 ? Py_True : Py_False)) ||
        !tpl_set("wsgi.multiprocess", Py_NewRef(Py_True)) ||
        !tpl_set("wsgi.run_once", Py_NewRef(Py_False)) ||
        !tpl_set("wsgi.input_terminated", Py_NewRef(Py_True)) ||
        !tpl_set("wsgi.errors", Py_NewRef(wk_errors_stream())) ||
        !tpl_set("wsgi.file_wrapper", Py_NewRef(wk_filewrap_type())) ||
        !tpl_set("SERVER_SOFTWARE", PyUnicode_FromString(PACKAGE_NAME "/" PACKAGE_VERSION)) ||
        !tpl_set("SCRIPT_NAME", PyUnicode_DecodeLatin1(sn, (Py_ssize_t)snlen, NULL)) ||
        !tpl_set("QUERY_STRING", Py_NewRef(v_empty)))
        return false;
    for (int i = 0; i < W.n_lst; i++)
        if (!listener_names(&W.lst[i]))
            return false;
    return true;
}

void wk_peer_set(struct wk_conn *c, const struct sockaddr *sa, socklen_t len)
{
    char host[INET6_ADDRSTRLEN] = "";
    unsigned port = 0;

    (void)len;
    c->trusted = wk_peer_trusted(c->fd, sa);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
        port = ntohs(in4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    c->remote_addr = PyUnicode_FromString(host);
    c->remote_port = port ? PyUnicode_FromFormat("%u", port) : Py_NewRef(v_empty);
    if (!c->remote_addr || !c->remote_port)
        PyErr_Clear();  /* the environ will lack them; nothing else breaks */
}

/* ---- per request ---- */

/* "X-Forwarded-For" -> "HTTP_X_FORWARDED_FOR" into a new str. */
static PyObject *make_key(const char *name, size_t len)
{
    PyObject *k = PyUnicode_New((Py_ssize_t)len + 5, 127);

    if (!k)
        return NULL;
    char *d = (char *)PyUnicode_1BYTE_DATA(k);
    memcpy(d, "HTTP_", 5);
    for (size_t i = 0; i < len; i++)
        d[5 + i] = name[i] == '-' ? '_' : as_ascii_upper(name[i]);
    return k;
}

/* The environ key of a header, from a cache of interned keys (open
 * addressing, bounded so that invented names cannot grow it forever). */
static PyObject *header_key(const char *name, size_t len)
{
    char low[KEY_NAME_MAX];
    size_t h = 5381, j;

    if (len > KEY_NAME_MAX)
        return make_key(name, len);
    for (size_t i = 0; i < len; i++) {
        low[i] = as_ascii_lower(name[i]);
        h = h * 33 + (unsigned char)low[i];
    }
    j = h & (KEY_CACHE_SIZE - 1);
    for (int probe = 0; probe < 8; probe++, j = (j + 1) & (KEY_CACHE_SIZE - 1)) {
        struct key_entry *e = &key_cache[j];
        if (e->key && e->len == len && !memcmp(e->name, low, len))
            return Py_NewRef(e->key);
        if (e->key)
            continue;
        if (key_cache_used >= KEY_CACHE_SIZE / 2)
            break;
        e->key = make_key(name, len);
        if (!e->key)
            return NULL;
        PyUnicode_InternInPlace(&e->key);
        memcpy(e->name, low, len);
        e->len = len;
        key_cache_used++;
        return Py_NewRef(e->key);
    }
    return make_key(name, len);
}

static bool name_is(const struct as_http_header *h, const char *name, size_t len)
{
    return h->name_len == len && as_ascii_caseeq(h->name, name, len);
}

/* ENV[KEY] = V, the reference to V given up; -1 when V is NULL (its
 * creation failed) or the dict refused it. */
static int set_steal(PyObject *env, PyObject *key, PyObject *v)
{
    int rc;

    if (!v)
        return -1;
    rc = PyDict_SetItem(env, key, v);
    Py_DECREF(v);
    return rc;
}

static int set_latin1(PyObject *env, PyObject *key, const char *s, size_t len)
{
    return set_steal(env, key, PyUnicode_DecodeLatin1(s, (Py_ssize_t)len, NULL));
}

/* Several headers of one name become one value, comma-joined (cookies with
 * "; "), as CGI does. */
static int add_header(PyObject *env, const struct as_http_header *h)
{
    PyObject *key, *v, *old;
    int rc;

    if (memchr(h->name, '_', h->name_len))
        return 0;   /* "X_Forwarded_For" must not pass for "X-Forwarded-For" */
    key = header_key(h->name, h->name_len);
    if (!key)
        return -1;
    v = PyUnicode_DecodeLatin1(h->value, (Py_ssize_t)h->value_len, NULL);
    if (!v) {
        Py_DECREF(key);
        return -1;
    }
    old = PyDict_GetItemWithError(env, key);
    if (old) {
        PyObject *joined = PyUnicode_FromFormat(name_is(h, "cookie", 6) ? "%U; %U" : "%U,%U", old, v);
        Py_DECREF(v);
        v = joined;
    }
    rc = v ? PyDict_SetItem(env, key, v) : -1;
    Py_XDECREF(v);
    Py_DECREF(key);
    return rc;
}

/* PATH_INFO: percent-decoded bytes, as latin-1 (PEP 3333). The parser
 * made sure every escape is well-formed. */
static PyObject *decode_path(const char *p, size_t len)
{
    PyObject *s = PyUnicode_New((Py_ssize_t)len, 255), *r;
    ssize_t n;

    if (!s)
        return NULL;
    n = as_pct_decode(p, len, (char *)PyUnicode_1BYTE_DATA(s), NULL);
    if (n < 0) {
        Py_DECREF(s);
        PyErr_SetString(PyExc_ValueError, "malformed percent-encoding in the path");
        return NULL;
    }
    if ((size_t)n == len)
        return s;
    /* Shrink into an exact, canonical string object. */
    r = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, PyUnicode_1BYTE_DATA(s), n);
    Py_DECREF(s);
    return r;
}

static PyObject *method_obj(const char *m)
{
    for (int i = 0; method_names[i]; i++)
        if (!strcmp(m, method_names[i]))
            return Py_NewRef(methods[i]);
    return PyUnicode_FromString(m);
}

/* From X-Forwarded-For of a trusted proxy, REMOTE_ADDR is the last address
 * that is not one of [proxy] real_ip_from (the front servers the proxy
 * trusts), or the first one when all are. Its port is not known. */
static int apply_forwarded(PyObject *env, const struct as_http_header *xff, const struct as_http_header *xfp)
{
    if (xff) {
        struct as_http_list_rev l;
        const char *m, *s = NULL;
        size_t n, len = 0;

        as_http_list_rev_init(&l, xff->value, xff->value_len);
        while (as_http_list_prev(&l, &m, &n)) {
            s = m;
            len = n;
            if (!wk_front_trusted(m, n))
                break;
        }
        if (s && (set_latin1(env, k_raddr, s, len) < 0 || PyDict_SetItem(env, k_rport, v_empty) < 0))
            return -1;
    }
    if (xfp && xfp->value_len == 5 && !strncasecmp(xfp->value, "https", 5))
        return PyDict_SetItem(env, k_scheme, v_https);
    return 0;
}

/* Forwarded from a trusted proxy (appstack-proxy writes one element with
 * the client's address and port): REMOTE_ADDR and REMOTE_PORT from its
 * for=, over what X-Forwarded-For gave. */
static int apply_forwarded_for(PyObject *env, const struct as_http_header *fwd)
{
    char addr[WK_FWD_ADDR_MAX];
    unsigned port;
    PyObject *p;

    if (!fwd || !wk_forwarded_for(fwd->value, fwd->value_len, addr, &port))
        return 0;
    if (set_latin1(env, k_raddr, addr, strlen(addr)) < 0)
        return -1;
    if (!port)
        return PyDict_SetItem(env, k_rport, v_empty);
    p = PyUnicode_FromFormat("%u", port);
    if (!p)
        return -1;
    int rc = PyDict_SetItem(env, k_rport, p);
    Py_DECREF(p);
    return rc;
}

/* SERVER_NAME and SERVER_PORT from the Host header (PEP 3333, RFC 3875
 * 4.1.14): "[v6]:port", "name:port" or a name alone, whose port follows
 * from wsgi.url_scheme. Without Host, the listening socket's. */
static int set_server(PyObject *env, struct wk_conn *c, const struct as_http_header *host)
{
    const char *h = host ? host->value : NULL, *colon = NULL, *end = h ? h + host->value_len : NULL;
    PyObject *scheme;
    int rc;

    if (!h || host->value_len == 0)
        return PyDict_SetItem(env, k_sname, c->lst->server_name) < 0 ||
                       PyDict_SetItem(env, k_sport, c->lst->server_port) < 0 ? -1 : 0;
    if (h[0] == '[') {
        const char *rb = memchr(h, ']', host->value_len);
        colon = rb && rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', host->value_len);
    }
    if (set_latin1(env, k_sname, h, (size_t)((colon ? colon : end) - h)) < 0)
        return -1;
    if (colon && colon + 1 < end)
        return set_latin1(env, k_sport, colon + 1, (size_t)(end - colon - 1));
    scheme = PyDict_GetItemWithError(env, k_scheme);
    rc = PyDict_SetItem(env, k_sport, scheme == v_https ? v_443 : v_80);
    return rc;
}

/* SCRIPT_NAME from the config, or from a trusted proxy's SCRIPT_NAME
 * header; PATH_INFO is what follows it. */
static int set_script_path(PyObject *env, const char *path, size_t plen, const struct as_http_header *sn_hdr)
{
    PyObject *sn = sn_hdr ? PyUnicode_DecodeLatin1(sn_hdr->value, (Py_ssize_t)sn_hdr->value_len, NULL)
                          : Py_XNewRef(PyDict_GetItemWithError(env, k_script));
    PyObject *pi = decode_path(path, plen);
    int rc = -1;

    if (!sn || !pi)
        goto out;
    Py_ssize_t sl = PyUnicode_GET_LENGTH(sn);
    while (sl > 0 && PyUnicode_READ_CHAR(sn, sl - 1) == '/')
        sl--;
    if (sl > 0 && PyUnicode_Tailmatch(pi, sn, 0, sl, -1) == 1 &&
        (PyUnicode_GET_LENGTH(pi) == sl || PyUnicode_READ_CHAR(pi, sl) == '/')) {
        PyObject *rest = PyUnicode_Substring(pi, sl, PyUnicode_GET_LENGTH(pi));
        PyObject *snx = PyUnicode_Substring(sn, 0, sl);
        rc = (!rest || !snx || PyDict_SetItem(env, k_script, snx) < 0) ? -1 : PyDict_SetItem(env, k_path, rest);
        Py_XDECREF(rest);
        Py_XDECREF(snx);
    } else {
        rc = PyDict_SetItem(env, k_path, pi);
        if (rc == 0 && sn_hdr)
            rc = PyDict_SetItem(env, k_script, v_empty);
    }
out:
    Py_XDECREF(sn);
    Py_XDECREF(pi);
    return rc;
}

/* The parser split the target (absolute-form and fragment included). */
static int set_request_line(PyObject *env, struct wk_conn *c, const struct as_http_header *sn_hdr)
{
    const struct as_http_request *r = &c->req;

    if (set_steal(env, k_method, method_obj(r->method)) < 0 ||
        PyDict_SetItem(env, k_proto, r->http_minor == 0 ? v_http10 : v_http11) < 0 ||
        set_latin1(env, k_raw, r->target, r->target_len) < 0 ||
        set_script_path(env, r->path, r->path_len, sn_hdr) < 0)
        return -1;
    if (r->query_len > 0 && set_latin1(env, k_query, r->query, r->query_len) < 0)
        return -1;
    return 0;
}

static int set_connection(PyObject *env, struct wk_conn *c)
{
    if (c->remote_addr && (PyDict_SetItem(env, k_raddr, c->remote_addr) < 0 ||
                           PyDict_SetItem(env, k_rport, c->remote_port) < 0))
        return -1;
    return set_steal(env, k_input, wk_input_new());
}

PyObject *wk_environ_build(struct wk_conn *c)
{
    const struct as_http_request *r = &c->req;
    const struct as_http_header *xff = NULL, *xfp = NULL, *sn = NULL, *fwd = NULL;
    PyObject *env = PyDict_Copy(template);

    if (!env)
        return NULL;
    if (set_connection(env, c) < 0)
        goto fail;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct as_http_header *h = &r->headers[i];
        int rc;
        if (name_is(h, "content-type", 12))
            rc = set_latin1(env, k_ctype, h->value, h->value_len);
        else if (name_is(h, "content-length", 14))
            rc = set_latin1(env, k_clen, h->value, h->value_len);
        else if (c->trusted && name_is(h, "appstack-worker", 15))
            rc = 0;     /* the proxy's question to the worker (worker_ident.h), not the app's */
        else
            rc = add_header(env, h);
        if (rc < 0)
            goto fail;
        if (c->trusted) {
            if (name_is(h, "x-forwarded-for", 15))
                xff = h;
            else if (name_is(h, "x-forwarded-proto", 17))
                xfp = h;
            else if (name_is(h, "script_name", 11))
                sn = h;
            else if (name_is(h, "forwarded", 9))
                fwd = h;
        }
    }
    if (set_request_line(env, c, sn) < 0 || apply_forwarded(env, xff, xfp) < 0 ||
        apply_forwarded_for(env, fwd) < 0 ||
        set_server(env, c, r->host) < 0)
        goto fail;
    return env;
fail:
    Py_DECREF(env);
    return NULL;
}
