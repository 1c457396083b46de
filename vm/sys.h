/*
** sys.h: what mamlrun asks of the operating system, each in one place: folders,
** atomic file writes and the default number of threads.
*/
#ifndef MAMLRUN_SYS_H
#define MAMLRUN_SYS_H

#include <stddef.h>
#include <stdint.h>

/* whether path is a folder (following links) */
int sys_is_dir(const char *path);

/* mkdir -p: create folder and its missing parents (0777 less the umask); 0, or
** -1 with errno set. An existing folder is fine. */
int sys_mkdir_p(const char *folder);

/* Whether sys_mkdir_p(folder) could make folder and files in it, asked without making anything
** (`mamlrun --check`): folder, or else its nearest existing parent, is a folder this process may write
** in. 0, or -1 with errno set (ENOTDIR: a part of the path is a file; EACCES, EROFS, ...). */
int sys_dir_creatable(const char *folder);

/* Write the n parts (data[i], size[i] bytes) to path atomically: a temporary file
** beside it (path.tmp.<pid>), fsync, rename over path, fsync of the folder; on a
** failure the previous file is unchanged and the temporary file removed.
** MAMLRUN_WRITE_LIMIT=N makes the writes fail with ENOSPC after N bytes (the
** tests of a full disk). 0, or -1 with err set to "cannot create '<tmp>': <why>"
** or "cannot write '<path>': <why>". */
int sys_write_atomic(const char *path, int n, const void *const data[], const size_t size[], char *err, size_t errlen);

/* The threads to use when the user asked for 0 (as many as useful): $MAMLRUN_THREADS
** when set, else the CPUs this process may run on (its affinity: mpirun's binding)
** but at most its share of the machine's cores among the MPI ranks on it
** ($OMPI_COMM_WORLD_LOCAL_SIZE); always in 1..SYS_MAX_THREADS. */
#define SYS_MAX_THREADS 64
int sys_default_threads(void);

/* $MAMLRUN_THREADS: 0 when unset, empty or 0, its value when a whole number in 1..SYS_MAX_THREADS, else
** -1 with err set (the host refuses to start then: a bad value is not a silent default). */
int sys_env_threads(char *err, size_t errlen);

/* $MAMLRUN_MEMORY_LIMIT (bytes, as 4e9 or 4000000000): 0 when unset or empty, its value when a number
** from 1 to 9e18, else -1 with err set (the host refuses to start then). */
int64_t sys_env_memory_limit(char *err, size_t errlen);

#endif
