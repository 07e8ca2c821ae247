/* Memory back to the kernel after a crowd of connections has left.
 *
 * glibc's malloc gives back only the top of its heap by itself. Thousands
 * of connections (a TLS one holds some 14 KiB of OpenSSL state, docs/
 * proxy.md) that close in any order leave the heap full of free holes
 * that stay resident: without this, a process that once held 10,000 idle
 * connections would keep their 140 MiB while it holds none. When the
 * open connections have fallen to half their peak (and by at least
 * TRIM_MIN_DROP), the cached buffer blocks beyond a few go back to malloc
 * and malloc_trim returns every free page (madvise). That happens at most
 * once per fall, from the once-a-second tick: never on a request's path. */
#include "memtrim.h"
#include "buf.h"

#include <malloc.h>

#define TRIM_MIN_DROP 256           /* connections: some 4 MiB of TLS state */
#define BLOCKS_KEPT 64              /* 1 MiB of buffers stay cached for the next requests */

static long peak;                   /* most connections open since the last trim */

void mem_trim_tick(long n_conns)
{
    if (n_conns > peak) {
        peak = n_conns;
        return;
    }
    if (peak - n_conns < TRIM_MIN_DROP || n_conns > peak / 2)
        return;
    block_cache_trim(BLOCKS_KEPT);
    malloc_trim(0);
    peak = n_conns;
}
