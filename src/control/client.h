/*
 * client - the blocking client side of the control socket, for the
 * subcommands (`tern queue`, sendmail, mailq): connect, send one request
 * line, read one answer line (proto.h). Not for the event loop.
 */
#ifndef TERN_CONTROL_CLIENT_H
#define TERN_CONTROL_CLIENT_H

#include <jansson.h>
#include <stddef.h>

/* Longest answer line read (a queue.list page of PROTO_LIST_MAX messages). */
#define CONTROL_ANSWER_MAX (256u * 1024 * 1024)

struct control_client;

/*
 * The control socket named by the configuration file (control_socket);
 * malloc'd. NULL after printing the file's errors on stderr.
 */
char *control_client_socket_path(const char *config_file);

/* Connect to the socket at path. NULL with err and *errnum (an errno:
   ENOENT, ECONNREFUSED, EACCES...) on failure. */
struct control_client *control_client_connect(const char *path, char *err, size_t errlen,
                                              int *errnum);

/*
 * Send {"cmd":cmd,"args":args} (the reference to args is taken; NULL for
 * none) and read the answer. Returns the answer object, {"ok":true,...} or
 * {"ok":false,"error":...}, for the caller to json_decref; NULL with err on
 * an I/O error or an answer that is not a JSON object.
 */
json_t *control_client_call(struct control_client *c, const char *cmd, json_t *args, char *err,
                            size_t errlen);

/* Close the connection. NULL does nothing. */
void control_client_close(struct control_client *c);

#endif
