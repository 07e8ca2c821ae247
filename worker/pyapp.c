/* Starting the embedded interpreter and importing the app ([app] section).
 * The interpreter is always the system one (SYSTEM_PYTHON), optionally seen
 * through a virtualenv: PYTHONHOME and whatever python3 comes first on PATH
 * never decide which Python we run. The other PYTHON* variables count as
 * CPython's own rules say (PYTHONPATH after [app] pythonpath). */
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static PyObject *format_exception_fn;

/* The interpreter a venv points at is found by CPython's own startup code
 * through DIR/pyvenv.cfg next to the executable we claim to be, which is
 * also how site.py honours include-system-site-packages. */
static char *python_executable(void)
{
    const char *venv = W.cfg.virtualenv;
    static const char *const names[] = { "python3", "python" };
    char *path = NULL;

    if (!venv || !*venv)
        return strdup(SYSTEM_PYTHON);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        free(path);
        if (asprintf(&path, "%s/bin/%s", venv, names[i]) < 0)
            return NULL;
        if (access(path, F_OK) == 0)
            return path;
    }
    return path;    /* absent: startup still finds pyvenv.cfg one level up */
}

static bool set_env(void)
{
    for (size_t i = 0; i < W.cfg.env.n; i++) {
        const char *kv = W.cfg.env.v[i];
        const char *eq = strchr(kv, '=');
        char name[256];

        if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof name) {
            as_err("%s:%d: env must be NAME=value", W.cfg.path, W.cfg.env.line[i]);
            return false;
        }
        memcpy(name, kv, (size_t)(eq - kv));
        name[eq - kv] = '\0';
        if (setenv(name, eq + 1, 1) < 0) {
            as_err("setenv %s: %s", name, strerror(errno));
            return false;
        }
    }
    return true;
}

static bool check_status(PyStatus st, PyConfig *pc)
{
    if (!PyStatus_Exception(st))
        return true;
    as_err("cannot start Python: %s%s%s", st.func ? st.func : "", st.func ? ": " : "",
           st.err_msg ? st.err_msg : "unknown error");
    PyConfig_Clear(pc);
    return false;
}

static bool init_interpreter(void)
{
    PyConfig pc;
    char *exe = python_executable(), *home = NULL;
    char *argv[] = { "appstack-worker" };
    bool ok = false;

    if (!exe) {
        as_err("out of memory");
        return false;
    }
    /* PYTHONHOME (a pyenv shell's, say) would point the system libpython
     * at another stdlib: it is hidden from startup and put back for the
     * app and its subprocesses afterwards. */
    if (getenv("PYTHONHOME")) {
        home = strdup(getenv("PYTHONHOME"));
        unsetenv("PYTHONHOME");
    }
    PyConfig_InitPythonConfig(&pc);
    pc.user_site_directory = 0;     /* ~/.local never changes a service's imports */
    pc.install_signal_handlers = 0; /* the worker owns its signals */
    pc.parse_argv = 0;
    if (!check_status(PyConfig_SetBytesString(&pc, &pc.program_name, exe), &pc) ||
        !check_status(PyConfig_SetBytesString(&pc, &pc.executable, exe), &pc) ||
        !check_status(PyConfig_SetBytesArgv(&pc, 1, argv), &pc) ||
        !check_status(Py_InitializeFromConfig(&pc), &pc))
        goto out;
    PyConfig_Clear(&pc);
    ok = true;
    if (home) {
        PyObject *os = PyImport_ImportModule("os"), *environ = os ? PyObject_GetAttrString(os, "environ") : NULL;
        PyObject *v = PyUnicode_DecodeFSDefault(home);
        if (!environ || !v || PyMapping_SetItemString(environ, "PYTHONHOME", v) < 0) {
            PyErr_Print();
            ok = false;
        }
        Py_XDECREF(v);
        Py_XDECREF(environ);
        Py_XDECREF(os);
    }
out:
    free(exe);
    free(home);
    return ok;
}

/* sys.path[0:0] = [chdir or cwd] + pythonpath */
static bool extend_path(void)
{
    PyObject *path = PySys_GetObject("path"), *head = PyList_New(0), *s;
    char cwd[4096];
    bool ok = false;

    if (!path || !head)
        goto out;
    if (!getcwd(cwd, sizeof cwd)) {
        as_err("getcwd: %s", strerror(errno));
        goto out;
    }
    s = PyUnicode_DecodeFSDefault(cwd);
    if (!s || PyList_Append(head, s) < 0) {
        Py_XDECREF(s);
        goto out;
    }
    Py_DECREF(s);
    for (size_t i = 0; i < W.cfg.pythonpath.n; i++) {
        s = PyUnicode_DecodeFSDefault(W.cfg.pythonpath.v[i]);
        if (!s || PyList_Append(head, s) < 0) {
            Py_XDECREF(s);
            goto out;
        }
        Py_DECREF(s);
    }
    ok = PyList_SetSlice(path, 0, 0, head) == 0;
out:
    Py_XDECREF(head);
    return ok;
}

bool wk_python_start(void)
{
    PyObject *tb;

    if (W.cfg.chdir && *W.cfg.chdir && chdir(W.cfg.chdir) < 0) {
        as_err("chdir %s: %s", W.cfg.chdir, strerror(errno));
        return false;
    }
    if (!set_env() || !init_interpreter())
        return false;
    if (!wk_stdio_setup() || !extend_path())
        goto pyerr;
    tb = PyImport_ImportModule("traceback");
    if (!tb)
        goto pyerr;
    format_exception_fn = PyObject_GetAttrString(tb, "format_exception");
    Py_DECREF(tb);
    if (!format_exception_fn)
        goto pyerr;
    return true;
pyerr:
    PyErr_Print();
    as_err("cannot set up the Python interpreter");
    return false;
}

/* Runs CODE (a module's worth of our own Python) under FILENAME, the name
 * its frames show in tracebacks, and returns its function NAME. */
PyObject *wk_python_define(const char *code, const char *filename, const char *name)
{
    PyObject *g = PyDict_New(), *co = NULL, *r = NULL, *fn = NULL;

    if (g && PyDict_SetItemString(g, "__builtins__", PyEval_GetBuiltins()) == 0 &&
        (co = Py_CompileString(code, filename, Py_file_input)) && (r = PyEval_EvalCode(co, g, g)))
        fn = Py_XNewRef(PyDict_GetItemString(g, name));
    if (!fn && !PyErr_Occurred())
        PyErr_Format(PyExc_RuntimeError, "%s defines no %s()", filename, name);
    Py_XDECREF(r);
    Py_XDECREF(co);
    Py_XDECREF(g);
    return fn;
}

/* The pending Python exception as text (the full traceback); clears it.
 * Returns a malloc'd string. */
char *wk_format_exception(void)
{
    PyObject *type, *value, *tb, *lines = NULL, *sep = NULL, *joined = NULL;
    char *out = NULL;

    PyErr_Fetch(&type, &value, &tb);
    if (!type)
        return strdup("(no exception)");
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value)
        PyException_SetTraceback(value, tb);
    else if (!tb && value)
        tb = PyException_GetTraceback(value);   /* re-raised from a saved exception */
    if (format_exception_fn)
        lines = PyObject_CallFunctionObjArgs(format_exception_fn, type, value ? value : Py_None,
                                             tb ? tb : Py_None, NULL);
    sep = PyUnicode_FromString("");
    if (lines && sep)
        joined = PyUnicode_Join(sep, lines);
    if (joined) {
        const char *s = PyUnicode_AsUTF8(joined);
        if (s)
            out = strdup(s);
    }
    if (!out) {
        PyErr_Clear();
        PyObject *r = value ? PyObject_Repr(value) : NULL;
        const char *s = r ? PyUnicode_AsUTF8(r) : NULL;
        if (asprintf(&out, "%s: %s", ((PyTypeObject *)type)->tp_name, s ? s : "?") < 0)
            out = NULL;
        Py_XDECREF(r);
        PyErr_Clear();
    }
    Py_XDECREF(lines);
    Py_XDECREF(sep);
    Py_XDECREF(joined);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return out ? out : strdup("(cannot format the exception)");
}

/* Logs the pending exception as one entry: WHAT, a newline, the traceback. */
void wk_log_exception(const char *what)
{
    char *tb = wk_format_exception(), *msg = NULL;

    if (!tb)
        return;
    for (size_t n = strlen(tb); n > 0 && tb[n - 1] == '\n'; n--)
        tb[n - 1] = '\0';
    if (asprintf(&msg, "%s\n%s", what, tb) >= 0)
        as_log_fields(LOG_ERR, msg, NULL, 0);
    free(msg);
    free(tb);
}

static PyObject *find_callable(void)
{
    const char *name = W.cfg.callable && *W.cfg.callable ? W.cfg.callable : "application";
    PyObject *mod = PyImport_ImportModule(W.cfg.module), *obj;

    if (!mod)
        return NULL;
    obj = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    if (obj && !PyCallable_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s:%s is not callable (it is a %.100s)", W.cfg.module, name,
                     Py_TYPE(obj)->tp_name);
        Py_CLEAR(obj);
    }
    return obj;
}

/* A lazy importer (importlib.util.LazyLoader, as in Mercurial's
 * demandimport) runs a module's code on its first attribute access. When
 * that code raises AttributeError inside `from M import name`, CPython
 * drops it and reports "cannot import name": the real error is lost. While
 * the app loads, such errors are recorded here so that the failure report
 * can show them. */
static const char lazy_hook[] =
    "def install(util):\n"
    "    cls = util._LazyModule\n"
    "    orig = cls.__getattribute__\n"
    "    seen = []\n"
    "    def __getattribute__(self, attr):\n"
    "        try:\n"
    "            return orig(self, attr)\n"
    "        except BaseException as e:\n"
    "            if not (isinstance(e, AttributeError) and e.name == attr and e.obj is self) \\\n"
    "                    and len(seen) < 8 and not any(e is x for _, x in seen):\n"
    "                seen.append((object.__getattribute__(self, '__spec__').name, e))\n"
    "            raise\n"
    "    cls.__getattribute__ = __getattribute__\n"
    "    def uninstall():\n"
    "        cls.__getattribute__ = orig\n"
    "    return seen, uninstall\n";

/* Returns (seen, uninstall) or NULL (nothing to watch). */
static PyObject *lazy_watch_start(void)
{
    PyObject *fn = wk_python_define(lazy_hook, "<appstack-worker: lazy import watch>", "install");
    PyObject *util = fn ? PyImport_ImportModule("importlib.util") : NULL;
    PyObject *r = util ? PyObject_CallOneArg(fn, util) : NULL;

    if (!r)
        PyErr_Clear();
    Py_XDECREF(util);
    Py_XDECREF(fn);
    return r;
}

static void lazy_watch_stop(PyObject *watch)
{
    PyObject *r;

    if (!watch)
        return;
    r = PyObject_CallNoArgs(PyTuple_GET_ITEM(watch, 1));
    if (r)
        Py_DECREF(r);
    else
        PyErr_Clear();
}

/* The first error a lazy load hid, as a paragraph for the failure report
 * (malloc'd), or NULL. It goes last so that its final line, which status
 * lines quote, is the root cause. */
static char *lazy_hidden_cause(PyObject *watch)
{
    PyObject *seen = watch ? PyTuple_GET_ITEM(watch, 0) : NULL, *first, *exc;
    const char *mod;
    char *tb, *out = NULL;

    if (!seen || !PyList_Check(seen) || PyList_GET_SIZE(seen) == 0)
        return NULL;
    first = PyList_GET_ITEM(seen, 0);
    mod = PyUnicode_AsUTF8(PyTuple_GET_ITEM(first, 0));
    exc = PyTuple_GET_ITEM(first, 1);
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    tb = wk_format_exception();
    if (asprintf(&out,
                 "\nThe error above is not the cause: a lazy importer (importlib.util.LazyLoader, as Mercurial's "
                 "demandimport uses) was running module %s when this was raised, and the import machinery hid it:\n\n%s",
                 mod ? mod : "?", tb) < 0)
        out = NULL;
    PyErr_Clear();
    free(tb);
    return out;
}

/* What the import left alive (modules, classes, settings, URL patterns:
 * some 50,000 objects for a Django site) lives as long as the worker: into
 * CPython's permanent generation with it, or every full collection
 * traverses all of it again, a stall of tens of milliseconds in the middle
 * of a request (and of the requests queued behind it). The template does
 * the same before each fork. */
static void freeze_loaded(void)
{
    PyObject *gc = PyImport_ImportModule("gc");
    PyObject *r = gc ? PyObject_CallMethod(gc, "freeze", NULL) : NULL;

    if (!r)
        wk_log_exception("gc.freeze() after the import");
    Py_XDECREF(r);
    Py_XDECREF(gc);
}

/* Imports module:callable. On failure the traceback (with the error a lazy
 * importer hid, if any) goes to the master, which logs it once with this
 * worker's fields and shows it in `supctl status`; run by hand, to the log. */
bool wk_python_load_app(void)
{
    char *tb, *hidden = NULL, *msg = NULL;
    PyObject *watch;

    if (!W.cfg.module || !*W.cfg.module) {
        tb = strdup("[app] module is not set\n");
    } else {
        watch = lazy_watch_start();
        W.app = find_callable();
        tb = W.app ? NULL : wk_format_exception();
        if (!W.app)
            hidden = lazy_hidden_cause(watch);
        lazy_watch_stop(watch);
        Py_XDECREF(watch);
        if (W.app && !W.template)
            freeze_loaded();
        if (W.app)
            return true;
    }
    /* Whatever the app printed before failing comes before the report. */
    wk_stdio_flush();
    if (asprintf(&msg, "%s%s%s", tb ? tb : "", hidden ? hidden : "", "") >= 0) {
        free(tb);
        tb = msg;
        msg = NULL;
    }
    free(hidden);
    if (W.standalone) {
        if (asprintf(&msg, "cannot load the app %s:\n%s", W.cfg.module ? W.cfg.module : "", tb ? tb : "") >= 0)
            as_log_fields(LOG_ERR, msg, NULL, 0);
    } else if (asprintf(&msg, "%s%s", AS_MSG_FAILED, tb ? tb : "") >= 0) {
        wk_master_send(msg, strlen(msg));
    }
    free(msg);
    free(tb);
    return false;
}

void wk_python_stop(void)
{
    wk_stdio_flush();
    if (Py_FinalizeEx() < 0)
        as_warn("errors while shutting Python down");
}
