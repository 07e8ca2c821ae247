/* What appstack-worker and appstack-proxy write themselves: status lines,
 * the Connection field, 100 Continue and whole short responses (errors), so
 * that the two programs answer the same way. */
#ifndef APPSTACK_HTTP_REPLY_H
#define APPSTACK_HTTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define AS_HTTP_SERVER "appstack"

/* The interim response a client that sent "Expect: 100-continue" waits for
 * before its body (RFC 9110 10.1.1). */
#define AS_HTTP_CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"

/* Room as_http_reply() needs without EXTRA. */
#define AS_HTTP_REPLY_MAX 400

/* Reason phrase of a status code ("Not Found"). */
const char *as_http_reason(int status);

/* The Connection field a response carries, CRLF included, or "": close
 * when the connection ends after it; keep-alive spelled out for an HTTP/1.0
 * client, whose default is to close (RFC 9112 9.3). */
const char *as_http_connection_field(bool keep_alive, bool http10, size_t *len);

/* "HTTP/1.1 STATUS Reason", Server and Date (DATE, an IMF-fixdate) into
 * BUF; returns the length, or 0 when CAP is too small. */
size_t as_http_status_head(char *buf, size_t cap, int status, const char *date);

/* The body of an error response of ours, and its type. */
#define AS_HTTP_ERROR_BODY_MAX 48
#define AS_HTTP_ERROR_TYPE "text/plain; charset=utf-8"

/* "404 Not Found\n" into BUF (AS_HTTP_ERROR_BODY_MAX bytes); its length. */
size_t as_http_error_body(int status, char *buf);

/* A whole text/plain response whose body is "STATUS Reason\n" (none when
 * HEAD_ONLY; Content-Length still the body's), with the Connection field
 * (see above) and EXTRA (more header lines, CRLF-terminated, or NULL).
 * Returns the length, or 0 when CAP is too small. */
size_t as_http_reply(char *buf, size_t cap, int status, const char *date, bool keep_alive, bool http10,
                     bool head_only, const char *extra);

#endif
