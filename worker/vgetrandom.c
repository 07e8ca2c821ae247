/* getrandom(2) through the kernel's vDSO, for the whole worker process.
 *
 * Why: the apps we run ask the kernel for randomness in tiny pieces.
 * Django renders a CSRF token with secrets.choice() per character, and
 * random.SystemRandom reads os.urandom() for each: about a hundred
 * getrandom(2) calls of one byte for the example site's page, a few
 * per cent of the worker's CPU per request in syscall entries alone.
 * Linux 6.11 and later export the same generator in the vDSO
 * (__vdso_getrandom): the kernel's own ChaCha20 CRNG, run in user space
 * over a per-thread state the kernel wipes on fork and reseeds when its
 * own generation moves. glibc 2.41 calls it from getrandom(); Debian 12's
 * glibc 2.36 does not, so the worker defines getrandom() itself and
 * exports it (worker/exports.sym): libpython's and every extension's calls
 * bind to this definition before libc's. Same bytes, same guarantees, no
 * syscall.
 *
 * Where the vDSO has no such function (older kernels), or a state cannot
 * be had, or the vDSO declines (flags it does not take, a CRNG not yet
 * seeded, a call re-entered from a signal handler), the call is the plain
 * syscall, as before. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "worker.h"

/* The kernel's struct vgetrandom_opaque_params (include/uapi/linux/random.h):
 * how big a state is and how to map states. */
struct vgetrandom_params {
    uint32_t size_of_opaque_state;
    uint32_t mmap_prot;
    uint32_t mmap_flags;
    uint32_t reserved[13];
};

typedef ssize_t vgetrandom_fn(void *buf, size_t len, unsigned int flags, void *state, size_t state_len);

/* States handed to threads are never given back to the kernel: a thread
 * that ends returns its state here for the next thread. The cap bounds
 * what a thread-happy app can pin; threads beyond it use the syscall. */
#define VGR_MAX_STATES 256

static struct {
    vgetrandom_fn *fn;          /* NULL: the syscall for everything */
    struct vgetrandom_params params;
    size_t stride;              /* state size rounded to a cache line */
    pthread_mutex_t lock;       /* the fields below */
    pthread_key_t key;          /* its destructor returns a thread's state */
    void *free[VGR_MAX_STATES];
    size_t n_free, n_made;
} vgr = { .lock = PTHREAD_MUTEX_INITIALIZER };

static __thread void *thread_state;

static ssize_t syscall_getrandom(void *buf, size_t len, unsigned int flags)
{
    return syscall(SYS_getrandom, buf, len, flags);
}

/* A page of states, carved without crossing a page (the kernel requires
 * each state to sit within one page). Called with the lock held. */
static void add_page(void)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t per_page, n;
    char *p;

    if (page <= 0 || vgr.stride > (size_t)page)
        return;
    per_page = (size_t)page / vgr.stride;
    n = VGR_MAX_STATES - vgr.n_made < per_page ? VGR_MAX_STATES - vgr.n_made : per_page;
    if (!n)
        return;
    p = mmap(NULL, (size_t)page, (int)vgr.params.mmap_prot, (int)vgr.params.mmap_flags, -1, 0);
    if (p == MAP_FAILED)
        return;
    for (size_t i = 0; i < n; i++)
        vgr.free[vgr.n_free++] = p + i * vgr.stride;
    vgr.n_made += n;
}

static void *take_state(void)
{
    void *s = NULL;

    /* trylock: a signal handler on this thread may be inside it already. */
    if (pthread_mutex_trylock(&vgr.lock) != 0)
        return NULL;
    if (!vgr.n_free)
        add_page();
    if (vgr.n_free)
        s = vgr.free[--vgr.n_free];
    pthread_mutex_unlock(&vgr.lock);
    if (s && pthread_setspecific(vgr.key, s) != 0) {
        pthread_mutex_lock(&vgr.lock);
        vgr.free[vgr.n_free++] = s;
        pthread_mutex_unlock(&vgr.lock);
        return NULL;
    }
    return s;
}

static void give_back_state(void *s)
{
    pthread_mutex_lock(&vgr.lock);
    vgr.free[vgr.n_free++] = s;
    pthread_mutex_unlock(&vgr.lock);
}

/* fork() in another thread must not leave the child's lock held. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&vgr.lock);
}

static void fork_done(void)
{
    pthread_mutex_unlock(&vgr.lock);
}

void wk_vgetrandom_init(void)
{
    void *vdso = dlopen("linux-vdso.so.1", RTLD_LAZY | RTLD_NOLOAD);
    vgetrandom_fn *fn;
    long line;

    if (!vdso)
        return;
    fn = (vgetrandom_fn *)dlvsym(vdso, "__vdso_getrandom", "LINUX_2.6");
    /* The vDSO stays mapped: the handle is not closed. */
    if (!fn || fn(NULL, 0, 0, &vgr.params, ~0UL) != 0 || !vgr.params.size_of_opaque_state)
        return;
    line = sysconf(_SC_LEVEL1_DCACHE_LINESIZE);
    if (line <= 0)
        line = 64;
    vgr.stride = (vgr.params.size_of_opaque_state + (size_t)line - 1) / (size_t)line * (size_t)line;
    if (pthread_key_create(&vgr.key, give_back_state) != 0
        || pthread_atfork(fork_prepare, fork_done, fork_done) != 0)
        return;
    vgr.fn = fn;
}

ssize_t getrandom(void *buf, size_t len, unsigned int flags)
{
    ssize_t r;

    if (!vgr.fn || (!thread_state && !(thread_state = take_state())))
        return syscall_getrandom(buf, len, flags);
    r = vgr.fn(buf, len, flags, thread_state, vgr.params.size_of_opaque_state);
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}
