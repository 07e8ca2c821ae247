/* Content-Type by file extension, from /etc/mime.types loaded once. */
#ifndef APPSTACK_PROXY_MIME_H
#define APPSTACK_PROXY_MIME_H

#include <stdbool.h>
#include <stddef.h>

/* Loads PATH; a missing file leaves only the built-in defaults. Returns the
 * number of extensions known. */
size_t mime_load(const char *path);
/* Type for the file name NAME (length LEN); application/octet-stream when unknown. */
const char *mime_type(const char *name, size_t len);
/* Worth a precompressed sibling? (text, scripts, svg, json...) */
bool mime_compressible(const char *type);

#endif
