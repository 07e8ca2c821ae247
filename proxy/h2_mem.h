/* The allocator nghttp2 sessions use (nghttp2_mem): the large blocks a
 * session is made with on whole pages of their own, so that an idle
 * session's pages can go back to the kernel (h2_mem_idle); the others
 * from malloc. */
#ifndef APPSTACK_H2_MEM_H
#define APPSTACK_H2_MEM_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>

struct h2_block;

struct h2_mem {
    struct h2_block *big;       /* the page-aligned blocks, any order */
    size_t n_big, cap_big;
    void *frame_buf;            /* nghttp2's outgoing frame buffer, once known */
    int frame_sized;            /* blocks of its size made while creating */
    bool creating;              /* inside nghttp2_session_server_new3 */
};

/* The nghttp2_mem for one session; M must outlive the session. */
nghttp2_mem h2_mem_of(struct h2_mem *m);
/* Around nghttp2_session_server_new3: the frame buffer is told apart
 * from the session's other blocks while it is made. */
void h2_mem_creating(struct h2_mem *m, bool on);
/* The session is idle (nghttp2_session_want_write() is 0, no stream
 * open): the frame buffer's pages and every all-zero page of the other
 * large blocks go back to the kernel. */
void h2_mem_idle(struct h2_mem *m);
/* After nghttp2_session_del: the bookkeeping goes. */
void h2_mem_release(struct h2_mem *m);

#endif
