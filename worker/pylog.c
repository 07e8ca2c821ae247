/* sys.stdout, sys.stderr and wsgi.errors: text streams whose output goes to
 * the log (journal or stderr) tagged with the worker's fields. A write that
 * ends a line emits everything buffered as ONE entry, so a multi-line
 * message written at once (logging's handlers do that, tracebacks included)
 * stays one journal entry. */
#include "worker.h"

#include <string.h>

#include "log.h"

#define LS_MAX_PENDING (64 * 1024)

typedef struct {
    PyObject_HEAD
    int priority;
    char *buf;
    size_t len, cap;
    const char *name;
} LogStream;

static PyObject *stdout_stream, *stderr_stream;

static void ls_emit(LogStream *s)
{
    size_t n = s->len;

    while (n > 0 && (s->buf[n - 1] == '\n' || s->buf[n - 1] == '\r'))
        n--;
    if (n > 0) {
        s->buf[n] = '\0';
        as_log_fields(s->priority, s->buf, NULL, 0);
    }
    s->len = 0;
}

static bool ls_append(LogStream *s, const char *data, size_t len)
{
    if (s->len + len + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + len + 1)
            cap *= 2;
        char *p = PyMem_Realloc(s->buf, cap);
        if (!p) {
            PyErr_NoMemory();
            return false;
        }
        s->buf = p;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    return true;
}

static PyObject *ls_write(LogStream *s, PyObject *arg)
{
    Py_ssize_t len;
    const char *data;

    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "write() argument must be str, not %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    data = PyUnicode_AsUTF8AndSize(arg, &len);
    if (!data)
        return NULL;
    if (!ls_append(s, data, (size_t)len))
        return NULL;
    if ((len > 0 && data[len - 1] == '\n') || s->len >= LS_MAX_PENDING)
        ls_emit(s);
    return PyLong_FromSsize_t(PyUnicode_GET_LENGTH(arg));
}

static PyObject *ls_writelines(LogStream *s, PyObject *lines)
{
    PyObject *it = PyObject_GetIter(lines), *line;

    if (!it)
        return NULL;
    while ((line = PyIter_Next(it))) {
        PyObject *r = ls_write(s, line);
        Py_DECREF(line);
        if (!r) {
            Py_DECREF(it);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *ls_flush(LogStream *s, PyObject *unused)
{
    ls_emit(s);
    Py_RETURN_NONE;
}

static PyObject *ls_false(PyObject *s, PyObject *unused)
{
    Py_RETURN_FALSE;
}

static PyObject *ls_true(PyObject *s, PyObject *unused)
{
    Py_RETURN_TRUE;
}

static PyObject *ls_fileno(PyObject *s, PyObject *unused)
{
    PyObject *io = PyImport_ImportModule("io");
    if (io) {
        PyObject *exc = PyObject_GetAttrString(io, "UnsupportedOperation");
        if (exc) {
            PyErr_SetString(exc, "the log stream has no file descriptor");
            Py_DECREF(exc);
        }
        Py_DECREF(io);
    }
    return NULL;
}

static PyObject *ls_get_encoding(PyObject *s, void *unused)
{
    return PyUnicode_FromString("utf-8");
}

static PyObject *ls_get_errors(PyObject *s, void *unused)
{
    return PyUnicode_FromString("strict");
}

static PyObject *ls_get_name(LogStream *s, void *unused)
{
    return PyUnicode_FromString(s->name);
}

static PyObject *ls_get_closed(PyObject *s, void *unused)
{
    Py_RETURN_FALSE;
}

static void ls_dealloc(LogStream *s)
{
    ls_emit(s);
    PyMem_Free(s->buf);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyMethodDef ls_methods[] = {
    { "write", (PyCFunction)ls_write, METH_O, "Log the text; a completed line ends an entry." },
    { "writelines", (PyCFunction)ls_writelines, METH_O, "write() each item." },
    { "flush", (PyCFunction)ls_flush, METH_NOARGS, "Log a pending partial line." },
    { "isatty", ls_false, METH_NOARGS, NULL },
    { "readable", ls_false, METH_NOARGS, NULL },
    { "seekable", ls_false, METH_NOARGS, NULL },
    { "writable", ls_true, METH_NOARGS, NULL },
    { "fileno", ls_fileno, METH_NOARGS, NULL },
    { NULL, NULL, 0, NULL }
};

static PyGetSetDef ls_getset[] = {
    { "encoding", ls_get_encoding, NULL, NULL, NULL },
    { "errors", ls_get_errors, NULL, NULL, NULL },
    { "name", (getter)ls_get_name, NULL, NULL, NULL },
    { "closed", ls_get_closed, NULL, NULL, NULL },
    { NULL, NULL, NULL, NULL, NULL }
};

static PyTypeObject LogStreamType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appstack.LogStream",
    .tp_basicsize = sizeof(LogStream),
    .tp_dealloc = (destructor)ls_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A text stream that writes to the appstack log.",
    .tp_methods = ls_methods,
    .tp_getset = ls_getset,
};

PyObject *wk_logstream_new(int priority, const char *name)
{
    LogStream *s;

    if (PyType_Ready(&LogStreamType) < 0)
        return NULL;
    s = PyObject_New(LogStream, &LogStreamType);
    if (!s)
        return NULL;
    s->priority = priority;
    s->buf = NULL;
    s->len = s->cap = 0;
    s->name = name;
    return (PyObject *)s;
}

/* Replaces sys.stdout and sys.stderr: stdout at info, stderr at err. */
bool wk_logstream_install(void)
{
    stdout_stream = wk_logstream_new(LOG_INFO, "<stdout>");
    stderr_stream = wk_logstream_new(LOG_ERR, "<stderr>");
    if (!stdout_stream || !stderr_stream)
        return false;
    return PySys_SetObject("stdout", stdout_stream) == 0 && PySys_SetObject("stderr", stderr_stream) == 0;
}

PyObject *wk_errors_stream(void)
{
    return stderr_stream;
}

void wk_logstream_flush_all(void)
{
    if (stdout_stream)
        ls_emit((LogStream *)stdout_stream);
    if (stderr_stream)
        ls_emit((LogStream *)stderr_stream);
}
