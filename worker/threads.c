/* Request threads ([supervisor] threads = N > 1): N Python threads, each
 * serving one connection at a time with a request state of its own (R).
 * A thread that finishes a request takes the next connection that waits
 * (conn.c's parked set, conn.c says how a connection changes hands) itself,
 * keeping the GIL: under load a request goes from one thread to the next
 * without a wake-up of the loop or a hand-over of the GIL. Only a thread
 * that finds nothing waiting becomes free: it waits on a FIFO, with the
 * GIL released, and the loop, which watches the parked set and the
 * listening sockets while a thread is free, hands it the next connection.
 * The GIL is released too whenever a request waits on its socket or the
 * app waits on I/O. Counters are changed with the GIL held; the FIFO has
 * its own lock because threads take from it without the GIL. */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;
static struct wk_conn *head, *tail;     /* the FIFO, through conn->qnext */
static bool stop;
static struct wk_request *requests;     /* one per thread */
static PyObject *handles;               /* the threading.Thread objects */

static struct wk_conn *take(void)
{
    struct wk_conn *c;

    pthread_mutex_lock(&lock);
    while (!head && !stop)
        pthread_cond_wait(&work, &lock);
    c = head;
    if (c) {
        head = c->qnext;
        if (!head)
            tail = NULL;
        c->qnext = NULL;
    }
    pthread_mutex_unlock(&lock);
    return c;
}

/* A thread that just finished a connection's requests: the connection the
 * loop queued first, else a parked one with a request waiting (or a new
 * one, in its turn), else none: the thread becomes free. W.inflight counts
 * the thread while it stays busy; a connection from the FIFO was counted
 * when it was queued, so one of the two counts goes. GIL held. */
static struct wk_conn *next_waiting(void)
{
    struct wk_conn *c = NULL;

    pthread_mutex_lock(&lock);
    if (head) {
        c = head;
        head = c->qnext;
        if (!head)
            tail = NULL;
        c->qnext = NULL;
    }
    pthread_mutex_unlock(&lock);
    if (c) {
        W.inflight--;
        return c;
    }
    wk_conn_rearm_new();
    return wk_conn_take_waiting(&c, 1) > 0 ? c : NULL;
}

/* The body of request thread K (a threading.Thread target). */
static PyObject *thread_main(PyObject *self, PyObject *arg)
{
    long k = PyLong_AsLong(arg);
    struct wk_request *r;

    (void)self;
    if (k < 0 || k >= W.threads) {
        PyErr_SetString(PyExc_ValueError, "no such request thread");
        return NULL;
    }
    r = &requests[k];
    r->slot_req = &W.slot->req[k];
    wk_thread_request = r;
    for (struct wk_conn *c = NULL;;) {
        if (!c) {
            Py_BEGIN_ALLOW_THREADS
            c = take();
            Py_END_ALLOW_THREADS
            if (!c)
                break;
        }
        wk_conn_readable(c);    /* serves what it has, then parks or closes it */
        c = next_waiting();     /* still busy: W.inflight counts it already */
        if (!c) {
            W.inflight--;
            wk_listening_update();  /* one more thread free */
        } else if (W.listening == WK_LISTEN_NOWHERE) {
            wk_listening_update();  /* busy long enough for new connections to take turns? */
        }
    }
    wk_thread_request = &wk_loop_request;
    Py_RETURN_NONE;
}

static PyMethodDef thread_main_def = { "appstack_request_thread", thread_main, METH_O,
                                       "A request thread of appstack-worker." };

/* After fork (preload) and after the app loaded: the threads belong to
 * this worker only. */
bool wk_threads_start(void)
{
    PyObject *fn = NULL, *threading = NULL, *cls = NULL;
    bool ok = false;

    requests = calloc((size_t)W.threads, sizeof *requests);
    if (!requests) {
        as_err("out of memory for %d request threads", W.threads);
        return false;
    }
    for (int k = 0; k < W.threads; k++)
        if (!wk_request_buffers(&requests[k]))
            return false;
    wk_slot_threads(W.threads);
    fn = PyCFunction_New(&thread_main_def, NULL);
    threading = fn ? PyImport_ImportModule("threading") : NULL;
    cls = threading ? PyObject_GetAttrString(threading, "Thread") : NULL;
    handles = cls ? PyList_New(0) : NULL;
    for (int k = 0; handles && k < W.threads; k++) {
        PyObject *args = PyTuple_New(0), *r = NULL, *t = NULL;
        PyObject *kw = Py_BuildValue("{s:O,s:(i),s:N,s:O}", "target", fn, "args", k, "name",
                                     PyUnicode_FromFormat("appstack-request-%d", k + 1), "daemon", Py_True);
        if (args && kw)
            t = PyObject_Call(cls, args, kw);
        Py_XDECREF(kw);
        Py_XDECREF(args);
        r = t ? PyObject_CallMethod(t, "start", NULL) : NULL;
        if (!r || PyList_Append(handles, t) < 0) {
            Py_XDECREF(r);
            Py_XDECREF(t);
            goto out;
        }
        Py_DECREF(r);
        Py_DECREF(t);
    }
    ok = handles != NULL;
out:
    if (!ok)
        wk_log_exception("cannot start the request threads");
    Py_XDECREF(cls);
    Py_XDECREF(threading);
    Py_XDECREF(fn);
    return ok;
}

/* Loop thread: C is readable and off the idle list; a thread takes it. */
void wk_threads_dispatch(struct wk_conn *c)
{
    W.inflight++;
    c->qnext = NULL;
    pthread_mutex_lock(&lock);
    if (tail)
        tail->qnext = c;
    else
        head = c;
    tail = c;
    pthread_cond_signal(&work);
    pthread_mutex_unlock(&lock);
    wk_listening_update();  /* every thread has one now? */
}

/* Loop thread: parked connections have requests waiting, and a thread is
 * free (the loop watches them only then): as many as there are free
 * threads are handed over. */
void wk_threads_parked_waiting(void)
{
    struct wk_conn *c[WK_TAKE_WAITING_MAX];
    int n = wk_conn_take_waiting(c, W.threads - W.inflight);

    for (int i = 0; i < n; i++)
        wk_threads_dispatch(c[i]);
}

/* Whether a new connection would find a thread free. */
bool wk_threads_has_room(void)
{
    return W.inflight < W.threads;
}

bool wk_threads_idle(void)
{
    return W.inflight == 0;
}

/* Stopping, with nothing in flight: the threads end. */
void wk_threads_stop(void)
{
    pthread_mutex_lock(&lock);
    stop = true;
    pthread_cond_broadcast(&work);
    pthread_mutex_unlock(&lock);
    for (Py_ssize_t i = 0; handles && i < PyList_GET_SIZE(handles); i++) {
        PyObject *r = PyObject_CallMethod(PyList_GET_ITEM(handles, i), "join", "d", 5.0);
        if (r)
            Py_DECREF(r);
        else
            PyErr_Clear();
    }
}
