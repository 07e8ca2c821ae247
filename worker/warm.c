/* The template's warming ([app] preload = on): Django puts much of its
 * set-up off until the first request that needs it (the URLconf and the
 * views it imports, the template engines, loaders and context processors,
 * each template's compilation, the modules its settings name, regular
 * expressions compiled on first use). A forked worker would do all of it
 * again in its first request: after a kill -9 that request waits for it,
 * and each worker keeps a private copy of the result. The template does
 * it once, before the first fork, so that the workers share it.
 *
 * Only what a request would do anyway, and only Django's own lazy state:
 * no request is made, no view runs, no database is opened. A step that
 * fails is logged and left to the first request, which fails as it would
 * have (a URLconf that cannot be imported answers 500 there, as without
 * preload). docs/supervisor.md ("Preload") lists the steps. */
#include "worker.h"

#include "log.h"

/* Returns (done, failed): text for the log, empty when nothing applied. */
static const char warm_py[] =
    "MAX_TEMPLATES = 1000\n"
    "MAX_TEMPLATE_BYTES = 256 * 1024\n"
    "\n"
    "def warm(sys, types, os):\n"
    "    if 'django' not in sys.modules:\n"
    "        return '', ''\n"
    "    try:\n"
    "        from django.apps import apps\n"
    "        from django.conf import settings\n"
    "        if not apps.ready or not settings.configured:\n"
    "            return '', ''\n"
    "    except Exception:\n"
    "        return '', ''\n"
    "    done, failed = [], []\n"
    "\n"
    "    def step(what, fn):\n"
    "        try:\n"
    "            n = fn()\n"
    "            done.append(what if n is None else '%s (%d)' % (what, n))\n"
    "        except Exception as e:\n"
    "            failed.append('%s (%s: %s)' % (what, type(e).__name__, e))\n"
    "\n"
    "    def urlconf():\n"
    /*   Imports ROOT_URLCONF and its views, compiles every pattern. */
    "        from django.urls import get_resolver\n"
    "        get_resolver().reverse_dict\n"
    "\n"
    "    def translations():\n"
    /*   Loads the default language's catalogs into Django's cache; the
     *   active language is left as it was. */
    "        from django.utils import translation\n"
    "        with translation.override(settings.LANGUAGE_CODE):\n"
    "            pass\n"
    "\n"
    "    def django_engines():\n"
    "        from django.template import Engine, engines\n"
    "        found = []\n"
    "        for backend in engines.all():\n"
    "            engine = getattr(backend, 'engine', None)\n"
    "            if isinstance(engine, Engine):\n"
    "                engine.template_context_processors\n"
    "                engine.template_loaders\n"
    "                found.append(engine)\n"
    "        return found\n"
    "\n"
    "    def templates():\n"
    /*   Only into a cached loader (DEBUG off): without one each request
     *   compiles again anyway. Names as a request would give them, so the
     *   first directory that has a name wins, as it does for a request. */
    "        from django.template.loaders.cached import Loader as Cached\n"
    "        n = 0\n"
    "        for engine in django_engines():\n"
    "            for loader in engine.template_loaders:\n"
    "                if not isinstance(loader, Cached):\n"
    "                    continue\n"
    "                for sub in loader.loaders:\n"
    "                    get_dirs = getattr(sub, 'get_dirs', None)\n"
    "                    for top in (get_dirs() if get_dirs else ()):\n"
    "                        top = os.fspath(top)\n"
    "                        for root, dirs, files in os.walk(top):\n"
    "                            dirs[:] = sorted(d for d in dirs if not d.startswith('.'))\n"
    "                            for f in sorted(files):\n"
    "                                path = os.path.join(root, f)\n"
    "                                if f.startswith('.') or n >= MAX_TEMPLATES:\n"
    "                                    continue\n"
    "                                try:\n"
    "                                    if os.path.getsize(path) > MAX_TEMPLATE_BYTES:\n"
    "                                        continue\n"
    "                                    engine.get_template(os.path.relpath(path, top).replace(os.sep, '/'))\n"
    "                                    n += 1\n"
    "                                except Exception:\n"
    "                                    pass    # not a template, or a broken one: its request says so\n"
    "        return n\n"
    "\n"
    "    def modules():\n"
    /*   Those Django's middleware and {% static %} import on first use,
     *   when they belong to an installed app (the app uses them). */
    "        names = [getattr(settings, s, None) for s in\n"
    "                 ('SESSION_ENGINE', 'SESSION_SERIALIZER', 'MESSAGE_STORAGE', 'STATICFILES_STORAGE')]\n"
    "        names += list(getattr(settings, 'AUTHENTICATION_BACKENDS', ()))\n"
    "        errors = []\n"
    "        for name in names:\n"
    "            if not isinstance(name, str) or '.' not in name:\n"
    "                continue\n"
    "            module = name if name == settings.SESSION_ENGINE else name.rsplit('.', 1)[0]\n"
    "            if apps.get_containing_app_config(module) is None:\n"
    "                continue\n"
    "            try:\n"
    "                __import__(module)\n"
    "            except Exception as e:\n"
    "                errors.append(e)\n"
    "        if errors:\n"
    "            raise errors[0]\n"
    "\n"
    "    def regexes():\n"
    /*   Django's module-level regular expressions compile on first use
     *   (django.utils.regex_helper._lazy_re_compile). Only module globals
     *   are looked at, by type(): any other access to a lazy object would
     *   set it up, whatever it wraps. */
    "        from django.utils.functional import SimpleLazyObject, empty\n"
    "        n = 0\n"
    "        for m in list(sys.modules.values()):\n"
    "            if not issubclass(type(m), types.ModuleType):\n"
    "                continue\n"
    "            for v in list(object.__getattribute__(m, '__dict__').values()):\n"
    "                if type(v) is not SimpleLazyObject:\n"
    "                    continue\n"
    "                d = object.__getattribute__(v, '__dict__')\n"
    "                fn = d.get('_setupfunc')\n"
    "                if d.get('_wrapped') is empty and getattr(fn, '__qualname__', '') == '_lazy_re_compile.<locals>._compile':\n"
    "                    v._setup()\n"
    "                    n += 1\n"
    "        return n\n"
    "\n"
    "    step('URLconf', urlconf)\n"
    "    if settings.USE_I18N:\n"
    "        step('translations', translations)\n"
    "    step('template engines', lambda: len(django_engines()))\n"
    "    step('templates', templates)\n"
    "    step('modules named in settings', modules)\n"
    "    step('regular expressions', regexes)     # last: the steps above import modules that have some\n"
    "    return ', '.join(done), '; '.join(failed)\n";

void wk_template_warm(void)
{
    PyObject *fn = wk_python_define(warm_py, "<appstack-worker: warm>", "warm");
    PyObject *sys = fn ? PyImport_ImportModule("sys") : NULL;
    PyObject *types = sys ? PyImport_ImportModule("types") : NULL;
    PyObject *os = types ? PyImport_ImportModule("os") : NULL;
    double t0 = wk_now();
    PyObject *r = os ? PyObject_CallFunctionObjArgs(fn, sys, types, os, NULL) : NULL;
    const char *done = NULL, *failed = NULL;

    if (r && PyTuple_Check(r) && PyTuple_GET_SIZE(r) == 2) {
        done = PyUnicode_AsUTF8(PyTuple_GET_ITEM(r, 0));
        failed = done ? PyUnicode_AsUTF8(PyTuple_GET_ITEM(r, 1)) : NULL;
    }
    if (!done || !failed) {
        wk_log_exception("cannot warm the app before forking (workers do it on their first request)");
    } else {
        if (*done)
            as_info("Django's first-request set-up done once before forking (%s) in %.3f s", done, wk_now() - t0);
        if (*failed)
            as_warn("Django's first-request set-up left to each worker's first request: %s", failed);
    }
    Py_XDECREF(r);
    Py_XDECREF(os);
    Py_XDECREF(types);
    Py_XDECREF(sys);
    Py_XDECREF(fn);
}
