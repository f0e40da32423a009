/*
 * What a dynamically linked VMM needs inside its jail: the program interpreter (PT_INTERP)
 * and the shared libraries the host's dynamic loader resolves for it (`LOADER --list EXEC`,
 * what ldd runs). Each is placed in the jail at the path the loader printed, as a hard link
 * where the file system allows (else a copy), so the loader in the jail finds the same
 * files in its default directories. Firecracker's jailer assumes a static binary and
 * places nothing; a static exec file gets nothing here either.
 */
#ifndef API_JAILER_JAIL_LIBS_H
#define API_JAILER_JAIL_LIBS_H

#include <stddef.h>

#include "common/error.h"

#define JAIL_LIBS_MAX 128 /* shared objects accepted in a closure */

/*
 * Reads the ELF64 executable fd's PT_INTERP into out: "" for a static executable.
 * Anything but a little-endian ELF64 executable, or a malformed header, is -ENOEXEC with a
 * message.
 */
int jail_libs_interp(int fd, char *out, size_t size, struct error *err);

/*
 * Parses a loader's `--list` output: fills paths[] with each absolute, normalised path
 * (linux-vdso and the like have none and are skipped); "not found" is an error naming the
 * library. Returns the count; paths point into text, which is modified.
 */
int jail_libs_parse_list(char *text, const char **paths, size_t max, struct error *err);

/*
 * Places the interpreter (interp, from jail_libs_interp; "" for a static executable: nothing
 * to do) and the libraries of exec_path beneath root_fd. Returns how many objects were
 * placed, or a negative errno. *nr_linked: how many of them are hard links (the others are
 * copies).
 */
int jail_libs_install(const char *interp, const char *exec_path, int root_fd,
                      const char *shown_root, int *nr_linked, struct error *err);

#endif
