/* The WSGI response side: start_response, write(), and sending what the app
 * returns. Headers go out with the first body bytes in one writev; framing
 * is Content-Length when the length is known, chunked for HTTP/1.1
 * otherwise, close-delimited for HTTP/1.0. A response cut short (app error
 * after the headers, client gone) always ends with the connection closed,
 * never with a framing that looks complete. */
#include "worker.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "http_date.h"
#include "http_fields.h"
#include "http_reply.h"
#include "log.h"

#define MAX_IOV 64
#define DRAINABLE_BODY (256 * 1024)

static PyObject *start_response_fn, *write_fn, *s_close, *s_fileno, *s_tell;

/* ---- header buffer ---- */

/* In R: each request thread builds its own head. */
static bool hb_put(const char *s, size_t n)
{
    struct wk_request *r = &R;

    if (r->hlen + n > r->hcap) {
        size_t cap = r->hcap ? r->hcap : 1024;
        while (cap < r->hlen + n)
            cap *= 2;
        char *p = PyMem_Realloc(r->hbuf, cap);
        if (!p) {
            PyErr_NoMemory();
            return false;
        }
        r->hbuf = p;
        r->hcap = cap;
    }
    memcpy(r->hbuf + r->hlen, s, n);
    r->hlen += n;
    return true;
}

#define HB_LIT(s) hb_put(s, sizeof(s) - 1)

static bool valid_name(const Py_UCS1 *s, Py_ssize_t n)
{
    return as_http_token((const char *)s, (size_t)n);
}

static bool valid_value(const Py_UCS1 *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        if ((s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
            return false;
    return true;
}

/* Latin-1 text of a str, or NULL with ValueError for anything wider. */
static const Py_UCS1 *latin1(PyObject *s, Py_ssize_t *n, const char *what)
{
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "response %s must be str, not %.100s", what, Py_TYPE(s)->tp_name);
        return NULL;
    }
    if (PyUnicode_READY(s) < 0)
        return NULL;
    if (PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND) {
        PyErr_Format(PyExc_ValueError, "response %s %R is not latin-1", what, s);
        return NULL;
    }
    *n = PyUnicode_GET_LENGTH(s);
    return PyUnicode_1BYTE_DATA(s);
}

static bool lname_is(const Py_UCS1 *s, Py_ssize_t n, const char *name)
{
    return as_http_name_is((const char *)s, (size_t)n, name);
}

static bool put_status(void)
{
    Py_ssize_t n;
    const Py_UCS1 *s = latin1(R.status, &n, "status");

    if (!s)
        return false;
    if (n < 3 || !isdigit(s[0]) || !isdigit(s[1]) || !isdigit(s[2]) || (n > 3 && s[3] != ' ') ||
        !valid_value(s, n) || s[0] == '0') {
        PyErr_Format(PyExc_ValueError, "invalid response status %R", R.status);
        return false;
    }
    R.code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    return HB_LIT("HTTP/1.1 ") && hb_put((const char *)s, (size_t)n) && HB_LIT("\r\n");
}

struct seen {
    bool date, server;
};

/* Hop-by-hop headers are ours to set; Content-Length is remembered. */
static bool put_header(PyObject *item, struct seen *seen)
{
    Py_ssize_t nl, vl;
    const Py_UCS1 *name, *value;

    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
        PyErr_Format(PyExc_TypeError, "response headers must be (name, value) tuples, not %R", item);
        return false;
    }
    if (!(name = latin1(PyTuple_GET_ITEM(item, 0), &nl, "header name")) ||
        !(value = latin1(PyTuple_GET_ITEM(item, 1), &vl, "header value")))
        return false;
    if (!valid_name(name, nl) || !valid_value(value, vl)) {
        PyErr_Format(PyExc_ValueError, "invalid response header %R", item);
        return false;
    }
    if (lname_is(name, nl, "content-length")) {
        int64_t v = 0;
        if (R.resp_length >= 0 || vl == 0 || vl > 18)
            goto bad_length;
        for (Py_ssize_t i = 0; i < vl; i++) {
            if (!isdigit(value[i]))
                goto bad_length;
            v = v * 10 + (value[i] - '0');
        }
        R.resp_length = v;
    } else if (lname_is(name, nl, "connection")) {
        if (vl == 5 && as_ascii_caseeq((const char *)value, "close", 5))
            R.must_close = true;
        return true;
    } else if (as_http_hop_by_hop((const char *)name, (size_t)nl)) {
        return true;
    } else if (lname_is(name, nl, "date")) {
        seen->date = true;
    } else if (lname_is(name, nl, "server")) {
        seen->server = true;
    }
    return hb_put((const char *)name, (size_t)nl) && HB_LIT(": ") && hb_put((const char *)value, (size_t)vl) &&
           HB_LIT("\r\n");
bad_length:
    PyErr_Format(PyExc_ValueError, "invalid or repeated Content-Length header %R", item);
    return false;
}

/* Only a standalone worker stops at its limit (see scoreboard.h). */
static bool last_request(void)
{
    return W.standalone && W.max_requests && W.slot->requests + 1 >= W.max_requests;
}

/* Whether the connection can carry another request after this one. */
static bool keep_alive(void)
{
    const struct as_http_request *r = R.r;

    if (R.must_close || !r->keep_alive || W.stopping || W.term || last_request() || W.cfg.keepalive <= 0)
        return false;
    if (!R.body_done) {
        if (R.continue_pending || r->chunked)
            return false;
        if (r->content_length >= 0 && (uint64_t)r->content_length - r->body_received > DRAINABLE_BODY)
            return false;
    }
    return true;
}

static bool put_framing(int64_t known_len)
{
    char num[48];
    bool bodiless_status = R.code < 200 || R.code == 204 || R.code == 304;

    R.no_body = R.head_method || bodiless_status;
    if (R.resp_length < 0 && known_len >= 0 && !bodiless_status) {
        R.resp_length = known_len;
        snprintf(num, sizeof num, "Content-Length: %" PRId64 "\r\n", known_len);
        return hb_put(num, strlen(num));
    }
    if (R.resp_length >= 0 || R.no_body)
        return true;
    if (R.http11) {
        R.chunked = true;
        return HB_LIT("Transfer-Encoding: chunked\r\n");
    }
    R.must_close = true;    /* HTTP/1.0, unknown length: the close ends the body */
    return true;
}

/* Serialises status and headers into hbuf. KNOWN_LEN is the body length
 * when the whole body is known already, else -1. False with a Python
 * exception for anything invalid the app gave. */
static bool build_head(int64_t known_len)
{
    struct seen seen = { false, false };
    const char *conn;
    size_t conn_len;

    R.hlen = 0;
    R.resp_length = -1;
    R.chunked = false;
    if (!R.started) {
        PyErr_SetString(PyExc_RuntimeError, "the app returned a body without calling start_response()");
        return false;
    }
    if (!PyList_Check(R.headers)) {
        PyErr_SetString(PyExc_TypeError, "response headers must be a list");
        return false;
    }
    if (!put_status())
        return false;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(R.headers); i++)
        if (!put_header(PyList_GET_ITEM(R.headers, i), &seen))
            return false;
    if (!seen.server && !HB_LIT("Server: " PACKAGE_NAME "\r\n"))
        return false;
    if (!seen.date && !(HB_LIT("Date: ") && hb_put(as_http_date_now(time(NULL)), AS_HTTP_DATE_LEN) &&
                        HB_LIT("\r\n")))
        return false;
    if (!put_framing(known_len))
        return false;
    if (!keep_alive())
        R.must_close = true;
    conn = as_http_connection_field(!R.must_close, !R.http11, &conn_len);
    return hb_put(conn, conn_len) && HB_LIT("\r\n");
}

/* ---- sending ---- */

static bool send_iov(struct iovec *iov, int n)
{
    if (n == 0)
        return true;
    if (!wk_send_all(R.c->fd, iov, n)) {
        R.client_gone = true;
        R.must_close = true;
        return false;
    }
    return true;
}

/* Sends the head (when not sent yet) and N body pieces in one writev,
 * cutting at the app's Content-Length and chunk-framing when chunked. */
static bool emit(PyObject *const *items, Py_ssize_t n)
{
    struct iovec iov[MAX_IOV + 1];
    char hex[MAX_IOV][24];
    int k = 0;

    if (!R.headers_sent) {
        iov[k++] = (struct iovec){ R.hbuf, R.hlen };
        R.headers_sent = true;
    }
    for (Py_ssize_t i = 0; i < n && !R.no_body; i++) {
        size_t len = (size_t)PyBytes_GET_SIZE(items[i]);
        if (R.resp_length >= 0 && len > (uint64_t)R.resp_length - R.resp_sent)
            len = (size_t)((uint64_t)R.resp_length - R.resp_sent);
        if (len == 0)
            continue;
        if (k + 3 > MAX_IOV) {
            if (!send_iov(iov, k))
                return false;
            k = 0;
        }
        if (R.chunked) {
            int hl = snprintf(hex[i % MAX_IOV], sizeof hex[0], "%zx\r\n", len);
            iov[k++] = (struct iovec){ hex[i % MAX_IOV], (size_t)hl };
        }
        iov[k++] = (struct iovec){ PyBytes_AS_STRING(items[i]), len };
        if (R.chunked)
            iov[k++] = (struct iovec){ "\r\n", 2 };
        R.resp_sent += len;
    }
    return send_iov(iov, k);
}

static bool check_bytes(PyObject *b)
{
    if (PyBytes_Check(b))
        return true;
    PyErr_Format(PyExc_TypeError, "the app must produce bytes, not %.100s", Py_TYPE(b)->tp_name);
    return false;
}

/* One piece of body from write() or an iterator. */
static bool send_piece(PyObject *b)
{
    if (!R.headers_sent && !build_head(-1))
        return false;
    return emit(&b, 1);
}

static bool finish_body(void)
{
    if (!R.headers_sent) {
        if (!build_head(0))
            return false;
        return emit(NULL, 0);
    }
    if (R.chunked) {
        struct iovec end = { "0\r\n\r\n", 5 };
        return send_iov(&end, 1);
    }
    if (R.resp_length >= 0 && R.resp_sent < (uint64_t)R.resp_length && !R.no_body)
        R.must_close = true;    /* the app sent less than it announced */
    return true;
}

/* ---- start_response and write ---- */

static PyObject *reraise(PyObject *exc_info)
{
    if (!PyTuple_Check(exc_info) || PyTuple_GET_SIZE(exc_info) != 3) {
        PyErr_SetString(PyExc_TypeError, "exc_info must be a (type, value, traceback) tuple");
        return NULL;
    }
    PyObject *t = PyTuple_GET_ITEM(exc_info, 0), *v = PyTuple_GET_ITEM(exc_info, 1),
             *tb = PyTuple_GET_ITEM(exc_info, 2);
    PyErr_Restore(Py_NewRef(t), Py_NewRef(v), tb == Py_None ? NULL : Py_NewRef(tb));
    return NULL;
}

static PyObject *start_response(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *exc_info = nargs == 3 ? args[2] : Py_None;

    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "start_response(status, headers, exc_info=None)");
        return NULL;
    }
    if (!R.active) {
        PyErr_SetString(PyExc_RuntimeError, "start_response() called outside of its request");
        return NULL;
    }
    if (exc_info != Py_None) {
        if (R.headers_sent)
            return reraise(exc_info);
    } else if (R.started) {
        PyErr_SetString(PyExc_RuntimeError, "start_response() called twice without exc_info");
        return NULL;
    }
    if (!PyUnicode_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "start_response() needs a str status and a list of headers");
        return NULL;
    }
    Py_XSETREF(R.status, Py_NewRef(args[0]));
    Py_XSETREF(R.headers, Py_NewRef(args[1]));
    R.started = true;
    return Py_NewRef(write_fn);
}

static PyObject *write_body(PyObject *self, PyObject *data)
{
    if (!R.active) {
        PyErr_SetString(PyExc_RuntimeError, "write() called outside of its request");
        return NULL;
    }
    if (!check_bytes(data) || !send_piece(data))
        goto fail;
    Py_RETURN_NONE;
fail:
    if (R.client_gone && !PyErr_Occurred())
        PyErr_SetString(PyExc_OSError, "client disconnected");
    return NULL;
}

static PyMethodDef start_response_def = { "start_response", (PyCFunction)(void (*)(void))start_response,
                                          METH_FASTCALL, "WSGI start_response(status, headers, exc_info=None)" };
static PyMethodDef write_def = { "write", (PyCFunction)write_body, METH_O, "WSGI write(data)" };

bool wk_response_init(void)
{
    start_response_fn = PyCFunction_New(&start_response_def, NULL);
    write_fn = PyCFunction_New(&write_def, NULL);
    s_close = PyUnicode_InternFromString("close");
    s_fileno = PyUnicode_InternFromString("fileno");
    s_tell = PyUnicode_InternFromString("tell");
    return start_response_fn && write_fn && s_close && s_fileno && s_tell;
}

PyObject *wk_start_response(void)
{
    return start_response_fn;
}

/* ---- the app's result ---- */

static bool send_sequence(PyObject *seq)
{
    PyObject *const *items = PySequence_Fast_ITEMS(seq);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int64_t total = 0;

    for (Py_ssize_t i = 0; i < n; i++) {
        if (!check_bytes(items[i]))
            return false;
        total += PyBytes_GET_SIZE(items[i]);
    }
    if (R.headers_sent)     /* write() went first: the framing is chosen */
        return emit(items, n) && finish_body();
    return build_head(total) && emit(items, n) && finish_body();
}

static bool send_iterable(PyObject *result)
{
    PyObject *it = PyObject_GetIter(result), *item;

    if (!it)
        return false;
    while ((item = PyIter_Next(it))) {
        bool ok = check_bytes(item) && (PyBytes_GET_SIZE(item) == 0 || send_piece(item));
        Py_DECREF(item);
        if (!ok) {
            Py_DECREF(it);
            return false;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return false;
    return finish_body();
}

/* The descriptor and offset of a wrapped real file, or -1. */
static int wrapped_file(PyObject *filelike, off_t *offset, off_t *size)
{
    PyObject *r = PyObject_CallMethodNoArgs(filelike, s_fileno);
    struct stat st;
    int fd;

    if (!r) {
        PyErr_Clear();
        return -1;
    }
    fd = PyLong_AsLong(r) > INT_MAX ? -1 : (int)PyLong_AsLong(r);
    Py_DECREF(r);
    if (PyErr_Occurred() || fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        PyErr_Clear();
        return -1;
    }
    /* tell() knows about Python-level buffering that lseek() cannot see. */
    r = PyObject_CallMethodNoArgs(filelike, s_tell);
    *offset = r ? (off_t)PyLong_AsLongLong(r) : lseek(fd, 0, SEEK_CUR);
    Py_XDECREF(r);
    if (PyErr_Occurred() || *offset < 0) {
        PyErr_Clear();
        return -1;
    }
    *size = st.st_size > *offset ? st.st_size - *offset : 0;
    return fd;
}

static bool sendfile_all(int fd, off_t off, off_t len)
{
    while (len > 0) {
        size_t want = len > (off_t)(1 << 30) ? (size_t)1 << 30 : (size_t)len;
        ssize_t n = sendfile(R.c->fd, fd, &off, want);
        if (n > 0) {
            len -= n;
            R.resp_sent += (uint64_t)n;
        } else if (n == 0) {
            R.must_close = true;    /* the file shrank under us */
            return true;
        } else if (errno == EAGAIN) {
            if (wk_wait(R.c->fd, POLLOUT, W.io_timeout) <= 0)
                goto gone;
        } else if (errno != EINTR) {
            goto gone;
        }
    }
    return true;
gone:
    R.client_gone = true;
    R.must_close = true;
    return false;
}

/* Returns 1 sent, 0 not a real file (iterate instead), -1 failed. */
static int send_file(PyObject *wrapper)
{
    off_t offset, size;
    int fd = wrapped_file(wk_filewrap_filelike(wrapper), &offset, &size);

    if (fd < 0)
        return 0;
    if (!build_head(size))
        return -1;
    if (R.resp_length >= 0 && size > R.resp_length)
        size = (off_t)R.resp_length;
    if (!emit(NULL, 0))
        return -1;
    if (R.no_body)
        return 1;
    if (!sendfile_all(fd, offset, size))
        return -1;
    if (R.resp_sent < (uint64_t)R.resp_length)
        R.must_close = true;
    return 1;
}

static bool send_result(PyObject *result)
{
    if (PyList_CheckExact(result) || PyTuple_CheckExact(result)) {
        PyObject *seq = PySequence_Fast(result, "");
        bool ok = seq && send_sequence(seq);
        Py_XDECREF(seq);
        return ok;
    }
    if (wk_filewrap_check(result) && R.started) {
        int rc = send_file(result);
        if (rc != 0)
            return rc > 0;
    }
    return send_iterable(result);
}

static void request_fields(char *m, size_t mlen, char *p, size_t plen, const char *fields[2])
{
    snprintf(m, mlen, "HTTP_METHOD=%s", R.r->method);
    snprintf(p, plen, "HTTP_PATH=%.*s", (int)R.r->target_len, R.r->target);
    fields[0] = m;
    fields[1] = p;
}

static void log_app_error(const char *what)
{
    char m[48], p[600], *msg = NULL, *tb = wk_format_exception();
    const char *fields[2];

    if (!tb)
        return;
    request_fields(m, sizeof m, p, sizeof p, fields);
    for (size_t n = strlen(tb); n > 0 && tb[n - 1] == '\n'; n--)
        tb[n - 1] = '\0';
    if (asprintf(&msg, "%s %s %.*s:\n%s", what, R.r->method, (int)R.r->target_len, R.r->target, tb) >= 0)
        as_log_fields(LOG_ERR, msg, fields, 2);
    free(msg);
    free(tb);
}

static void app_failed(const char *what)
{
    if (R.client_gone) {
        PyErr_Clear();  /* the app only noticed the client leaving: not its error */
    } else {
        log_app_error(what);
    }
    R.must_close = true;
    if (!R.headers_sent && !R.client_gone) {
        R.headers_sent = true;
        R.code = R.body_error ? 400 : 500;
        wk_send_error(R.c->fd, R.code, R.http11, R.head_method);
    }
}

static void close_result(PyObject *result)
{
    PyObject *close, *r;

    if (PyList_CheckExact(result) || PyTuple_CheckExact(result))
        return;
    close = PyObject_GetAttr(result, s_close);
    if (!close) {
        PyErr_Clear();
        return;
    }
    r = PyObject_CallNoArgs(close);
    Py_DECREF(close);
    if (r)
        Py_DECREF(r);
    else
        log_app_error("close() of the response raised during");
}

/* Calls the app for the current request and sends its response. */
void wk_response_run(PyObject *environ)
{
    PyObject *args[2] = { environ, start_response_fn };
    PyObject *result = PyObject_Vectorcall(W.app, args, 2, NULL);

    if (!result) {
        app_failed("error in the app during");
        return;
    }
    if (!send_result(result))
        app_failed("error in the app's response to");
    close_result(result);
    Py_DECREF(result);
}

/* A complete error response of our own; the connection closes after it. */
void wk_send_error(int fd, int status, bool http11, bool head_only)
{
    char buf[AS_HTTP_REPLY_MAX];
    struct iovec iov = { buf, as_http_reply(buf, sizeof buf, status, as_http_date_now(time(NULL)), false, !http11,
                                            head_only, NULL) };

    if (iov.iov_len)
        wk_send_all(fd, &iov, 1);
}
