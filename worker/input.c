/* wsgi.input: the request body, streamed from the socket as the app reads
 * it (chunked bodies are decoded on the fly by the parser), never copied
 * whole into memory behind the app's back. */
#include "worker.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include "http_reply.h"
#include "log.h"

typedef struct {
    PyObject_HEAD
    uint64_t seq;       /* the request this object belongs to */
} Input;

int wk_on_body(void *ctx, const char *data, size_t len)
{
    if (!R.sink)
        return 0;       /* draining */
    if (len > R.sink_cap - R.sink_len)
        return -1;      /* cannot happen: we never feed more than the room left */
    memcpy(R.sink + R.sink_len, data, len);
    R.sink_len += len;
    return 0;
}

static bool send_continue(void)
{
    static const char msg[] = AS_HTTP_CONTINUE;
    struct iovec iov = { (void *)msg, sizeof msg - 1 };

    R.continue_pending = false;
    if (!wk_send_all(R.c->fd, &iov, 1)) {
        R.client_gone = true;
        return false;
    }
    return true;
}

/* Up to N decoded body bytes into DST (at least one unless at the end).
 * Returns the count, 0 at the end of the body, -1 when the client went
 * away or the body is malformed. */
ssize_t wk_body_read(char *dst, size_t n)
{
    struct as_http_request *r = R.r;

    if (R.body_error || R.client_gone)
        return -1;
    if (R.body_done || n == 0)
        return 0;
    if (R.continue_pending && !send_continue())
        return -1;
    R.sink = dst;
    R.sink_cap = n;
    R.sink_len = 0;
    for (;;) {
        if (R.rpos == R.rlen) {
            ssize_t got = wk_recv(R.c->fd, R.rbuf, WK_RBUF_SIZE);
            if (got <= 0) {
                R.client_gone = true;
                break;
            }
            R.rpos = 0;
            R.rlen = (size_t)got;
        }
        /* A chunked body decodes to no more bytes than it takes on the wire. */
        size_t avail = R.rlen - R.rpos, room = R.sink_cap - R.sink_len;
        R.rpos += as_http_feed(r, R.rbuf + R.rpos, avail < room ? avail : room);
        if (r->state == AS_HTTP_DONE) {
            R.body_done = true;
            break;
        }
        if (r->state == AS_HTTP_ERROR) {
            R.body_error = true;
            break;
        }
        if (R.sink_len > 0)
            break;
    }
    R.sink = NULL;
    if (R.body_error || (R.client_gone && R.sink_len == 0))
        return -1;
    return (ssize_t)R.sink_len;
}

/* Reads and discards the rest of the body so the connection can carry the
 * next request. False when that is not possible within LIMIT bytes. */
bool wk_body_drain(size_t limit)
{
    size_t total = 0;
    char scratch[4096];

    if (R.continue_pending)
        return false;   /* the client is still waiting for our go-ahead */
    while (!R.body_done) {
        ssize_t n = wk_body_read(scratch, sizeof scratch);
        if (n < 0)
            return false;
        total += (size_t)n;
        if (total > limit)
            return false;
    }
    return true;
}

static PyObject *body_error(void)
{
    if (R.body_error)
        PyErr_SetString(PyExc_OSError, "malformed request body");
    else
        PyErr_SetString(PyExc_OSError, "client disconnected while sending the request body");
    return NULL;
}

static bool input_live(Input *in)
{
    return R.active && in->seq == R.seq;
}

/* Moves up to N bytes of lookahead into DST. */
static size_t take_pending(char *dst, size_t n)
{
    size_t k = R.in_len - R.in_pos;

    if (k > n)
        k = n;
    memcpy(dst, R.inbuf + R.in_pos, k);
    R.in_pos += k;
    return k;
}

static PyObject *read_n(size_t want)
{
    int64_t cl = R.r->content_length;
    size_t len, cap;
    PyObject *b;

    /* Do not trust a huge SIZE to be a buffer we should allocate: a sized
     * body (or none at all) says how much can still come. */
    if (!R.r->chunked) {
        size_t left = R.in_len - R.in_pos + (cl >= 0 ? (size_t)(cl - (int64_t)R.r->body_received) : 0);
        if (want > left)
            want = left;
    }
    /* A chunked body's size is unknown: grow towards SIZE as bytes come. */
    cap = R.r->chunked && want > 65536 ? 65536 : want;
    b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
    if (!b)
        return NULL;
    len = take_pending(PyBytes_AS_STRING(b), cap);
    while (len < want) {
        if (len == cap) {
            cap = cap * 2 < want ? cap * 2 : want;
            if (_PyBytes_Resize(&b, (Py_ssize_t)cap) < 0)
                return NULL;
        }
        ssize_t n = wk_body_read(PyBytes_AS_STRING(b) + len, cap - len);
        if (n < 0) {
            Py_DECREF(b);
            return body_error();
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len != cap && _PyBytes_Resize(&b, (Py_ssize_t)len) < 0)
        return NULL;
    return b;
}

static bool size_arg(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t *size)
{
    *size = -1;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "expected at most one argument");
        return false;
    }
    if (nargs == 1 && args[0] != Py_None) {
        *size = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
        if (*size == -1 && PyErr_Occurred())
            return false;
    }
    return true;
}

static PyObject *input_read(Input *in, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t size;

    if (!size_arg(args, nargs, &size))
        return NULL;
    if (!input_live(in))
        return PyBytes_FromStringAndSize("", 0);
    return read_n(size < 0 ? SIZE_MAX : (size_t)size);
}

static PyObject *readline(Input *in, Py_ssize_t limit)
{
    PyObject *b;
    size_t len = 0, cap = 256;

    if (!input_live(in))
        return PyBytes_FromStringAndSize("", 0);
    b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
    if (!b)
        return NULL;
    for (;;) {
        if (limit >= 0 && len >= (size_t)limit)
            break;
        if (R.in_pos == R.in_len) {
            ssize_t n = wk_body_read(R.inbuf, sizeof R.inbuf);
            if (n < 0) {
                Py_DECREF(b);
                return body_error();
            }
            if (n == 0)
                break;
            R.in_pos = 0;
            R.in_len = (size_t)n;
        }
        size_t k = R.in_len - R.in_pos;
        if (limit >= 0 && k > (size_t)limit - len)
            k = (size_t)limit - len;
        const char *nl = memchr(R.inbuf + R.in_pos, '\n', k);
        if (nl)
            k = (size_t)(nl - (R.inbuf + R.in_pos)) + 1;
        if (len + k > cap) {
            while (cap < len + k)
                cap *= 2;
            if (_PyBytes_Resize(&b, (Py_ssize_t)cap) < 0)
                return NULL;
        }
        len += take_pending(PyBytes_AS_STRING(b) + len, k);
        if (nl)
            break;
    }
    if (_PyBytes_Resize(&b, (Py_ssize_t)len) < 0)
        return NULL;
    return b;
}

static PyObject *input_readline(Input *in, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t size;

    if (!size_arg(args, nargs, &size))
        return NULL;
    return readline(in, size);
}

static PyObject *input_readlines(Input *in, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t hint, total = 0;
    PyObject *list;

    if (!size_arg(args, nargs, &hint))
        return NULL;
    list = PyList_New(0);
    if (!list)
        return NULL;
    for (;;) {
        PyObject *line = readline(in, -1);
        if (!line) {
            Py_DECREF(list);
            return NULL;
        }
        if (PyBytes_GET_SIZE(line) == 0) {
            Py_DECREF(line);
            break;
        }
        total += PyBytes_GET_SIZE(line);
        if (PyList_Append(list, line) < 0) {
            Py_DECREF(line);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(line);
        if (hint > 0 && total >= hint)
            break;
    }
    return list;
}

static PyObject *input_iternext(Input *in)
{
    PyObject *line = readline(in, -1);

    if (line && PyBytes_GET_SIZE(line) == 0) {
        Py_DECREF(line);
        return NULL;    /* StopIteration */
    }
    return line;
}

static PyObject *input_noop(PyObject *self, PyObject *unused)
{
    Py_RETURN_NONE;
}

static PyObject *input_true(PyObject *self, PyObject *unused)
{
    Py_RETURN_TRUE;
}

static PyMethodDef input_methods[] = {
    { "read", (PyCFunction)(void (*)(void))input_read, METH_FASTCALL, "read([size]) -> bytes" },
    { "readline", (PyCFunction)(void (*)(void))input_readline, METH_FASTCALL, "readline([size]) -> bytes" },
    { "readlines", (PyCFunction)(void (*)(void))input_readlines, METH_FASTCALL, "readlines([hint]) -> list" },
    { "close", input_noop, METH_NOARGS, NULL },
    { "readable", input_true, METH_NOARGS, NULL },
    { NULL, NULL, 0, NULL }
};

static PyTypeObject InputType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appstack.Input",
    .tp_basicsize = sizeof(Input),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "wsgi.input: the request body, read from the socket as needed.",
    .tp_methods = input_methods,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)input_iternext,
};

bool wk_input_init(void)
{
    return PyType_Ready(&InputType) == 0;
}

PyObject *wk_input_new(void)
{
    Input *in = PyObject_New(Input, &InputType);

    if (in)
        in->seq = R.seq;
    return (PyObject *)in;
}
