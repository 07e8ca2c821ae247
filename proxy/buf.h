/* Fixed-size buffer blocks from a free list, and the spool: an ordered byte
 * queue that lives in blocks up to a limit and continues in an unlinked temp
 * file beyond it, so a big body costs disk, not RAM. */
#ifndef APPSTACK_PROXY_BUF_H
#define APPSTACK_PROXY_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BLOCK_SIZE 16384

struct block {
    struct block *next;
    size_t start, end;      /* live bytes are data[start..end) */
    char data[BLOCK_SIZE];
};

struct block *block_get(void);
void block_put(struct block *b);
/* Blocks kept on the free list at most (the rest go back to malloc). */
void block_set_cache(size_t max);
/* Frees cached blocks beyond KEEP (the crowd that needed them has gone). */
void block_cache_trim(size_t keep);

struct spool {
    struct block *head, *tail;
    struct block *cur;      /* send position: block and offset in it */
    size_t cur_off;
    size_t mem;             /* bytes held in blocks */
    size_t mem_limit;       /* spill to a file beyond this */
    int fd;                 /* temp file or static file; -1 = none */
    off_t file_start, file_pos, file_end;
    uint64_t total;         /* bytes appended */
    uint64_t sent;
    bool keep;              /* keep sent bytes (request bodies: retries) */
};

void spool_init(struct spool *s, size_t mem_limit, bool keep);
void spool_free(struct spool *s);
/* Returns 0, or -1 with errno set (temp file trouble). */
int spool_append(struct spool *s, const void *data, size_t len);
int spool_printf(struct spool *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends LEN bytes read from FD at OFF (a small file). Returns 0 or -1. */
int spool_append_file(struct spool *s, int fd, off_t off, size_t len);
/* Moves every block of FRONT before the bytes of S; FRONT must be memory-only. */
void spool_prepend(struct spool *s, struct spool *front);
/* Serves [START, END) of FD after the memory bytes; the spool closes FD. */
void spool_attach_file(struct spool *s, int fd, off_t start, off_t end);
/* Bytes not yet sent. */
uint64_t spool_pending(const struct spool *s);
/* Sends as much as SOCK takes. Returns 1 when everything is sent, 0 when the
 * socket is full, -1 on error (errno). */
int spool_send(struct spool *s, int sock);
/* Bytes that arrive to be relayed: when nothing waits in S, they go
 * straight to SOCK (one send, no copy into a block) and only what the
 * socket did not take is queued; otherwise they queue behind what waits.
 * total and sent count them as spool_append and spool_send would. Returns
 * 1 when everything is sent, 0 when some is queued, -1 on a send error
 * (errno). Memory-only spools. */
int spool_write(struct spool *s, int sock, const void *data, size_t len);
/* For senders that frame or encrypt the bytes themselves: */
/* The next unsent bytes in memory: their address in *P, their count as the
 * result (0: none left in memory); *MORE says whether other unsent bytes
 * follow them (another block or the file part). */
size_t spool_peek(struct spool *s, const char **p, bool *more);
/* Copies up to LEN unsent bytes, memory then file, into BUF without
 * marking them sent. Returns the count, or -1 with errno (file read). */
ssize_t spool_gather(struct spool *s, char *buf, size_t len);
/* Marks N bytes sent, memory first, then the file part; the blocks sent
 * are dropped (not with keep). */
void spool_advance(struct spool *s, size_t n);
/* The file part still unsent: false when there is none. */
bool spool_file_part(const struct spool *s, int *fd, off_t *pos, off_t *end);

/* Back to the first byte (only with keep). */
void spool_rewind(struct spool *s);

/* Directory for temp files (TMPDIR or /var/tmp). */
void spool_set_tmpdir(const char *dir);

#endif
