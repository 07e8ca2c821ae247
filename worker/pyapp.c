/* Starting the embedded interpreter and importing the app ([app] section).
 * The interpreter is always the system one (SYSTEM_PYTHON), optionally seen
 * through a virtualenv: PYTHONHOME, PYTHONPATH and whatever python3 comes
 * first on PATH never decide which Python we run. */
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
    char *exe = python_executable();
    char *argv[] = { "appstack-worker" };
    const char *nobc = getenv("PYTHONDONTWRITEBYTECODE");

    if (!exe) {
        as_err("out of memory");
        return false;
    }
    PyConfig_InitPythonConfig(&pc);
    pc.use_environment = 0;         /* no PYTHONHOME/PYTHONPATH from a pyenv shell */
    pc.user_site_directory = 0;
    pc.install_signal_handlers = 0; /* the worker owns its signals */
    pc.parse_argv = 0;
    /* The test suite and read-only trees ask for no bytecode files. */
    if (nobc && *nobc)
        pc.write_bytecode = 0;
    if (!check_status(PyConfig_SetBytesString(&pc, &pc.program_name, exe), &pc) ||
        !check_status(PyConfig_SetBytesString(&pc, &pc.executable, exe), &pc) ||
        !check_status(PyConfig_SetBytesArgv(&pc, 1, argv), &pc)) {
        free(exe);
        return false;
    }
    free(exe);
    if (!check_status(Py_InitializeFromConfig(&pc), &pc))
        return false;
    PyConfig_Clear(&pc);
    return true;
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
    if (!wk_logstream_install() || !extend_path())
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

/* Imports module:callable. On failure the master gets "FAILED\n" and the
 * traceback, and the log gets the same as one entry. */
bool wk_python_load_app(void)
{
    char *tb, *msg = NULL;

    if (!W.cfg.module || !*W.cfg.module) {
        tb = strdup("[app] module is not set\n");
    } else {
        W.app = find_callable();
        if (W.app)
            return true;
        tb = wk_format_exception();
    }
    if (asprintf(&msg, "%s%s", AS_MSG_FAILED, tb ? tb : "") >= 0)
        wk_master_send(msg, strlen(msg));
    free(msg);
    msg = NULL;
    if (asprintf(&msg, "cannot load the app %s:\n%s", W.cfg.module ? W.cfg.module : "", tb ? tb : "") >= 0)
        as_log_fields(LOG_ERR, msg, NULL, 0);
    free(msg);
    free(tb);
    return false;
}

void wk_python_stop(void)
{
    wk_logstream_flush_all();
    if (Py_FinalizeEx() < 0)
        as_warn("errors while shutting Python down");
}
