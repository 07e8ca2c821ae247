/* Logging to the journal (native protocol, structured fields) when stderr is
 * connected to journald, to stderr otherwise. */
#ifndef APPSTACK_LOG_H
#define APPSTACK_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

/* IDENT becomes SYSLOG_IDENTIFIER and the stderr prefix. */
void as_log_init(const char *ident);

/* A field ("NAME=value") added to every later message of this process,
 * e.g. APPSTACK_WORKER=3. At most 8. */
void as_log_add_global_field(const char *field);
/* Forgets them (a process that becomes another one: a forked worker). */
void as_log_clear_global_fields(void);

/* A field added to every later message until it is changed or dropped
 * (NULL): APPSTACK_REQUEST_ID=... while a worker serves a request. */
void as_log_set_request_field(const char *field);

/* True when messages go to the journal. */
int as_log_to_journal(void);

void as_log(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void as_vlog(int priority, const char *fmt, va_list ap);

/* A message with extra fields: FIELDS is an array of N "NAME=value" strings.
 * MESSAGE may contain newlines: it stays one entry. */
void as_log_fields(int priority, const char *message, const char *const *fields, int n);

/* An entry on behalf of another process (a worker's stdout/stderr read by
 * appstackd): SYSLOG_IDENTIFIER=IDENT and SYSLOG_PID=PID instead of ours,
 * none of our global fields; on stderr "IDENT[PID]: message". MESSAGE is
 * LEN bytes and need not be NUL-terminated. */
void as_log_relay(int priority, const char *ident, int pid, const char *message, size_t len,
                  const char *const *fields, int n);

/* Where non-journal output goes and how the journal is detected: FD
 * instead of stderr (a worker whose fd 2 is a pipe to appstackd logs its
 * own messages on the descriptor appstackd handed it). */
void as_log_set_fd(int fd);

/* How entries look outside the journal (log_format): a line of text
 * "IDENT[PID]: message", or one JSON object per line with the fields the
 * journal would have (MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, _PID,
 * __REALTIME_TIMESTAMP, the global and the entry's own fields), every value
 * a string as in "journalctl -o json". The journal, when stderr is one,
 * is used either way. */
enum as_log_format { AS_LOG_TEXT, AS_LOG_JSON };
void as_log_set_format(enum as_log_format format);
enum as_log_format as_log_format(void);

/* The JSON line (newline included) that log_format = json writes for an
 * entry of ours, into OUT (CAP bytes; *LEN set to its length): for a
 * caller that batches its writes (the proxy's access log). False when CAP
 * is too small. */
bool as_log_json(char *out, size_t cap, size_t *len, int priority, const char *message, size_t mlen,
                 const char *const *fields, int n);

/* Appends to OUT (CAP bytes, *LEN used) the JSON string of S (LEN bytes):
 * quotes, escapes, invalid UTF-8 as U+FFFD. False when it does not fit
 * (then *LEN is unchanged). */
bool as_json_str(char *out, size_t cap, size_t *len, const char *s, size_t n);

/* "err", "warning", "info", ... or "0".."7" -> LOG_*; -1 when unknown. */
int as_log_level_parse(const char *name);

/* Sends log entries that waited because the journal was not reading (they
 * also go out before the next entry). For an event loop's idle timer. */
void as_log_flush(void);

#define as_err(...)     as_log(LOG_ERR, __VA_ARGS__)
#define as_warn(...)    as_log(LOG_WARNING, __VA_ARGS__)
#define as_notice(...)  as_log(LOG_NOTICE, __VA_ARGS__)
#define as_info(...)    as_log(LOG_INFO, __VA_ARGS__)
#define as_debug(...)   as_log(LOG_DEBUG, __VA_ARGS__)

#endif
