/* Memory back to the kernel after a crowd of connections has left. */
#ifndef APPSTACK_PROXY_MEMTRIM_H
#define APPSTACK_PROXY_MEMTRIM_H

/* From the once-a-second tick, with the number of open connections. */
void mem_trim_tick(long n_conns);

#endif
