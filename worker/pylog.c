/* sys.stdout and sys.stderr are CPython's own text streams over fds 1 and
 * 2, as in any Python program: .buffer, fileno(), reconfigure(), isatty()
 * and faulthandler work, and C extensions and subprocesses write to the
 * same descriptors. Under appstackd those are pipes it reads and turns into
 * journal entries with this worker's fields (supervisor/stdio_capture.c); here we
 * only make the streams line-buffered and let `logging` records carry
 * their level, as a "<N>" priority prefix (sd-daemon(3)) that appstackd
 * strips. Run by hand, the worker's stdio is the terminal's, untouched. */
#include "worker.h"

#include "log.h"

static PyObject *errors_stream;

/* logging.StreamHandler.emit as in CPython 3.11, with the record's level
 * prepended when the stream is the worker's own stdout or stderr. A
 * handler writing elsewhere, or a handler class with its own emit(), is
 * left alone (its lines get the stream's default priority). */
static const char level_hook[] =
    "def install(logging, out, err):\n"
    "    def emit(self, record):\n"
    "        try:\n"
    "            msg = self.format(record)\n"
    "            stream = self.stream\n"
    "            if stream is err or stream is out:\n"
    "                n = record.levelno\n"
    "                msg = ('<2>' if n >= 50 else '<3>' if n >= 40 else '<4>' if n >= 30\n"
    "                       else '<6>' if n >= 20 else '<7>') + msg\n"
    "            stream.write(msg + self.terminator)\n"
    "            self.flush()\n"
    "        except RecursionError:\n"
    "            raise\n"
    "        except Exception:\n"
    "            self.handleError(record)\n"
    "    emit.__doc__ = logging.StreamHandler.emit.__doc__\n"
    "    emit.__qualname__ = 'StreamHandler.emit'\n"
    "    logging.StreamHandler.emit = emit\n";

static bool install_level_hook(PyObject *out, PyObject *err)
{
    PyObject *fn = wk_python_define(level_hook, "<appstack-worker: logging levels>", "install");
    PyObject *logging = fn ? PyImport_ImportModule("logging") : NULL;
    PyObject *r = logging ? PyObject_CallFunctionObjArgs(fn, logging, out, err, NULL) : NULL;

    Py_XDECREF(r);
    Py_XDECREF(logging);
    Py_XDECREF(fn);
    return r != NULL;
}

/* Under appstackd: stdout line-buffered like stderr (CPython makes it
 * block-buffered on a pipe); with PYTHONUNBUFFERED it stays write-through. */
bool wk_stdio_setup(void)
{
    PyObject *out = PySys_GetObject("stdout"), *err = PySys_GetObject("stderr"), *r, *fn, *kw, *args = NULL;

    if (!out || !err || out == Py_None || err == Py_None) {
        PyErr_SetString(PyExc_RuntimeError, "the worker has no sys.stdout or sys.stderr");
        return false;
    }
    errors_stream = Py_NewRef(err);
    if (W.standalone)
        return true;
    fn = PyObject_GetAttrString(out, "reconfigure");
    kw = fn ? Py_BuildValue("{s:O}", "line_buffering", Py_True) : NULL;
    r = kw ? PyObject_Call(fn, args = PyTuple_New(0), kw) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_XDECREF(fn);
    if (!r)
        return false;
    Py_DECREF(r);
    return install_level_hook(out, err);
}

/* wsgi.errors: the worker's stderr (what CPython's wsgiref gives too). */
PyObject *wk_errors_stream(void)
{
    return errors_stream;
}

/* What Python still buffers goes out before the worker exits or logs
 * something that should come after it. */
void wk_stdio_flush(void)
{
    static const char *const names[] = { "stderr", "stdout" };

    for (int i = 0; i < 2; i++) {
        PyObject *s = PySys_GetObject(names[i]), *r;
        if (!s || s == Py_None)
            continue;
        r = PyObject_CallMethod(s, "flush", NULL);
        if (r)
            Py_DECREF(r);
        else
            PyErr_Clear();
    }
}
