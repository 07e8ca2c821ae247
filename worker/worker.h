/* appstack-worker: process-wide state in W, the request in progress in R,
 * which every part of the worker shares instead of threading pointers
 * through the Python callbacks. With [supervisor] threads = 1 the event
 * loop runs the requests itself, one at a time; with more, each request
 * thread (threads.c) has its own R, and the loop hands it connections.
 * Shared state (W, the connection lists, the scoreboard slot) is only
 * touched with the GIL held, which serializes the threads there. */
#ifndef APPSTACK_WORKER_H
#define APPSTACK_WORKER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "accept_pause.h"
#include "config.h"
#include "http_parse.h"
#include "scoreboard.h"

#define WK_MAX_LISTEN 64
#define WK_RBUF_SIZE (64 * 1024)

enum wk_item { WK_LISTENER = 1, WK_CONN, WK_SIGNAL, WK_CHANNEL, WK_PARKED };

/* Where the listening sockets are watched (loop.c wk_listening_update). */
enum { WK_LISTEN_NOWHERE, WK_LISTEN_LOOP, WK_LISTEN_PARKED };
#define WK_FULL_TAKES_NEW 0.1  /* s every request thread is busy before new connections take turns */

struct wk_listener {
    enum wk_item kind;          /* WK_LISTENER; first, for epoll dispatch */
    int fd;
    bool is_unix;
    PyObject *server_name;      /* SERVER_NAME / SERVER_PORT when no Host */
    PyObject *server_port;
    bool disarmed;              /* threads > 1: took its turn among the parked connections (conn.c) */
    uint64_t disarmed_at;       /* W.req_seq then */
};

struct wk_conn {
    enum wk_item kind;          /* WK_CONN */
    int fd;
    struct wk_listener *lst;
    struct wk_conn *prev, *next;    /* idle list, oldest activity first */
    double last_active;             /* monotonic seconds */
    struct wk_conn *qnext;          /* threads > 1: the queue of connections for the request threads */
    bool in_epoll;                  /* threads > 1: in parked_epfd (only once a thread parked it) */
    bool trusted;                   /* peer may set X-Forwarded-* */
    bool lingering;                 /* answered and shut down: discarding input */
    unsigned served;                /* requests answered on this connection */
    PyObject *remote_addr, *remote_port;
    struct as_http_request req;
};

struct wk_worker {
    struct as_config cfg;
    const char *config_path;
    int id;
    unsigned generation;
    struct as_scoreboard *sb;   /* the master's scoreboard; NULL standalone */
    struct as_slot *slot;       /* our slot in it, or a private one */
    int channel_fd;             /* -1 when standalone */
    bool standalone;
    bool template;              /* a generation's template ([app] preload): forks workers, never serves */
    pid_t master_pid;           /* appstackd, our parent */
    uint64_t max_requests;      /* 0 = unlimited */
    bool recycle;               /* limit reached: the master is replacing us */
    int threads;                /* [supervisor] threads: requests served at once */
    int busy;                   /* requests in progress */

    struct wk_listener lst[WK_MAX_LISTEN];
    int n_lst;
    int epfd;
    int sig_pipe[2];
    volatile sig_atomic_t term;     /* SIGTERM seen */
    bool stopping;                  /* no new requests after the current one */
    int listening;                  /* where the listening sockets are watched: WK_LISTEN_* */
    int inflight;                   /* threads > 1: connections handed to request threads, not back yet */
    int parked_epfd;                /* threads > 1: the parked connections' own epoll set (threads.c) */
    bool watching_parked;           /* parked_epfd is in epfd: a request thread is free */
    double full_since;              /* threads > 1: every thread busy since (monotonic s), or 0 */
    double accept_paused_until;     /* out of descriptors: listeners unwatched until then */
    struct as_accept_pause accept_pause;


    struct as_http_limits limits;
    struct as_http_limits proxy_limits;     /* for a trusted peer: room for what the proxy adds */
    double io_timeout;              /* s a blocked read/write in a request may wait */
    double heartbeat_every;         /* s the loop may sleep: well inside the master's `timeout` */

    struct wk_conn idle_head;       /* sentinel of the idle list */
    size_t n_conns;

    PyObject *app;
    uint64_t req_seq;               /* bumps per request: stale wsgi.input objects see EOF */
};

/* The request being served by one thread (the loop's, or a request
 * thread's). */
struct wk_request {
    /* Read buffer: only the connection this thread serves has unparsed
     * bytes in it; the parser copies a header section it keeps. */
    char *rbuf;
    size_t rpos, rlen;
    /* Response head being built. */
    char *hbuf;
    size_t hlen, hcap;
    struct as_req *slot_req;    /* this thread's entry in the scoreboard slot */
    uint64_t seq;               /* W.req_seq when it began: a wsgi.input of another request reads EOF */

    struct wk_conn *c;
    struct as_http_request *r;
    bool active;
    bool head_method;
    bool http11;
    bool body_done;             /* parser saw the end of the request body */
    bool continue_pending;      /* 100-continue owed before the first body read */
    bool client_gone;
    bool must_close;
    bool body_error;            /* bad body framing: the connection is unusable */

    /* Decoded body bytes land here (parser on_body); NULL = discard. */
    char *sink;
    size_t sink_cap, sink_len;

    /* wsgi.input lookahead (readline). */
    char inbuf[16384];
    size_t in_pos, in_len;

    /* Response */
    PyObject *status;           /* from start_response */
    PyObject *headers;
    bool started;
    bool headers_sent;
    int code;
    int64_t resp_length;        /* Content-Length the app gave, -1 none */
    uint64_t resp_sent;
    bool chunked;
    bool no_body;
};

extern struct wk_worker W;
/* The request of this thread: a request thread's own; in every other
 * thread the loop's (with threads = 1 the one request, which an app's own
 * threads see too, as in any WSGI server). */
extern struct wk_request wk_loop_request;
extern __thread struct wk_request *wk_thread_request;
#define R (*wk_thread_request)

/* util.c */
double wk_now(void);
uint64_t wk_now_usec(void);
int wk_wait(int fd, short events, double timeout);
bool wk_send_all(int fd, struct iovec *iov, int n);
ssize_t wk_recv(int fd, char *buf, size_t len);

/* master.c: scoreboard and channel */
bool wk_master_attach(void);
void wk_master_bind(int id, int slot, uint64_t max_requests);
void wk_log_generation(void);
void wk_master_send(const char *msg, size_t len);
void wk_slot_state(enum as_slot_state st);
void wk_slot_heartbeat(void);
void wk_slot_threads(int threads);
/* RID: the request's ID (X-Request-ID from a trusted peer), RID_LEN 0 for none. */
void wk_slot_request_begin(const char *method, const char *target, size_t target_len, const char *rid,
                           size_t rid_len);
void wk_slot_request_end(void);

/* pyapp.c */
bool wk_python_start(void);
bool wk_python_load_app(void);
void wk_python_stop(void);
PyObject *wk_python_define(const char *code, const char *filename, const char *name);
char *wk_format_exception(void);
void wk_log_exception(const char *what);

/* vgetrandom.c: getrandom() without a syscall where the kernel's vDSO has it */
void wk_vgetrandom_init(void);

/* dump.c */
bool wk_dump_init(void);
void wk_dump_set_fd(int fd);

/* template.c: [app] preload */
bool wk_template_prepare(void);
void wk_template_run(void);
/* warm.c: what Django's first request in each worker would set up */
void wk_template_warm(void);

/* pylog.c */
bool wk_stdio_setup(void);
PyObject *wk_errors_stream(void);
void wk_stdio_flush(void);

/* input.c */
bool wk_input_init(void);
PyObject *wk_input_new(void);
ssize_t wk_body_read(char *dst, size_t n);
bool wk_body_drain(size_t limit);
int wk_on_body(void *ctx, const char *data, size_t len);

/* environ.c */
bool wk_environ_init(void);
PyObject *wk_environ_build(struct wk_conn *c);
void wk_peer_set(struct wk_conn *c, const struct sockaddr *sa, socklen_t len);

/* trust.c */
bool wk_trust_init(void);
bool wk_peer_trusted(int fd, const struct sockaddr *sa);
bool wk_front_trusted(const char *addr, size_t len);

/* response.c */
bool wk_response_init(void);
PyObject *wk_start_response(void);
void wk_response_run(PyObject *environ);
void wk_send_error(int fd, int status, bool http11, bool head_only);

/* filewrap.c */
bool wk_filewrap_init(void);
PyObject *wk_filewrap_type(void);
bool wk_filewrap_check(PyObject *o);
PyObject *wk_filewrap_filelike(PyObject *o);
Py_ssize_t wk_filewrap_blksize(PyObject *o);

/* threads.c: [supervisor] threads > 1 */
bool wk_threads_start(void);
void wk_threads_dispatch(struct wk_conn *c);
void wk_threads_parked_waiting(void);
bool wk_threads_has_room(void);
bool wk_threads_idle(void);
void wk_threads_stop(void);

/* conn.c */
bool wk_conn_accept(struct wk_listener *l);
void wk_accept_pause(void);
void wk_accept_resume_due(double now);
bool wk_conn_readable(struct wk_conn *c);
#define WK_TAKE_WAITING_MAX 64
int wk_conn_take_waiting(struct wk_conn **out, int max);
void wk_conn_rearm_new(void);
void wk_conn_close(struct wk_conn *c);
double wk_conn_expire(double now);
size_t wk_conn_drain_all(void);

/* loop.c */
int wk_loop_run(void);
bool wk_loop_init(void);
void wk_listening_update(void);
bool wk_request_buffers(struct wk_request *r);

#endif
