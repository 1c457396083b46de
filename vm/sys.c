/*
** sys.c: folders, atomic file writes and the default thread count (see sys.h).
*/
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sys.h"

int sys_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int sys_mkdir_p(const char *folder) {
  char buf[PATH_MAX];
  if ((size_t)snprintf(buf, sizeof buf, "%s", folder) >= sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
  if (!sys_is_dir(buf)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

int sys_dir_creatable(const char *folder) {
  char buf[PATH_MAX];
  if ((size_t)snprintf(buf, sizeof buf, "%s", folder) >= sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (;;) {
    struct stat st;
    if (stat(buf, &st) == 0) {
      if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
      }
      return access(buf, W_OK | X_OK);
    }
    if (errno != ENOENT) return -1; /* ENOTDIR (a file on the way), EACCES, ... */
    /* not there: sys_mkdir_p would make it in its parent */
    char *slash = strrchr(buf, '/');
    while (slash && slash > buf && slash[1] == '\0') { /* a trailing '/' */
      *slash = '\0';
      slash = strrchr(buf, '/');
    }
    if (slash == NULL) {
      strcpy(buf, ".");
    } else if (slash == buf) {
      buf[1] = '\0'; /* "/" */
    } else {
      *slash = '\0';
    }
  }
}

/* write all n bytes to fd, at most *budget of them (then ENOSPC); 0 or an errno value */
static int write_all(int fd, const char *data, size_t n, size_t *budget) {
  size_t done = 0;
  while (done < n) {
    size_t chunk = n - done;
    if (chunk > *budget) chunk = *budget;
    if (chunk == 0) return ENOSPC;
    ssize_t w = write(fd, data + done, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    done += (size_t)w;
    *budget -= (size_t)w;
  }
  return 0;
}

int sys_write_atomic(const char *path, int n, const void *const data[], const size_t size[], char *err, size_t errlen) {
  char tmp[PATH_MAX];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
    snprintf(err, errlen, "cannot create a temporary file for '%s': %s", path, strerror(ENAMETOOLONG));
    return -1;
  }
  /* MAMLRUN_WRITE_LIMIT=N (tests): the disk is full after N bytes of this file */
  const char *limit_env = getenv("MAMLRUN_WRITE_LIMIT");
  size_t budget = (size_t)-1;
  if (limit_env != NULL && limit_env[0] != '\0') {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(limit_env, &end, 10);
    if (limit_env[0] < '0' || limit_env[0] > '9' || *end != '\0' || errno == ERANGE) {
      snprintf(err, errlen, "cannot write '%s': MAMLRUN_WRITE_LIMIT must be a number of bytes, got '%s' (unset it)",
               path, limit_env);
      return -1;
    }
    budget = (size_t)v;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    snprintf(err, errlen, "cannot create '%s': %s", tmp, strerror(errno));
    return -1;
  }
  int failure = 0;
  for (int i = 0; i < n && !failure; i++) failure = write_all(fd, data[i], size[i], &budget);
  if (!failure && fsync(fd) != 0) failure = errno;
  if (close(fd) != 0 && !failure) failure = errno;
  if (!failure && rename(tmp, path) != 0) failure = errno;
  if (failure) {
    unlink(tmp);
    snprintf(err, errlen, "cannot write '%s': %s", path, strerror(failure));
    return -1;
  }
  /* make the rename itself durable */
  char folder[PATH_MAX];
  snprintf(folder, sizeof folder, "%s", path);
  char *slash = strrchr(folder, '/');
  if (slash) *slash = '\0';
  int dfd = open(slash ? (folder[0] ? folder : "/") : ".", O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
}

int sys_env_threads(char *err, size_t errlen) {
  const char *env = getenv("MAMLRUN_THREADS");
  if (env == NULL || env[0] == '\0') return 0;
  char *end;
  errno = 0;
  long n = strtol(env, &end, 10);
  if (errno != 0 || end == env || *end != '\0' || n < 0 || n > SYS_MAX_THREADS) {
    if (err != NULL && errlen > 0)
      snprintf(err, errlen, "MAMLRUN_THREADS must be a whole number of threads from 1 to %d (0 or unset: one per "
               "core), got '%s'", SYS_MAX_THREADS, env);
    return -1;
  }
  return (int)n;
}

int64_t sys_env_memory_limit(char *err, size_t errlen) {
  const char *env = getenv("MAMLRUN_MEMORY_LIMIT");
  if (env == NULL || env[0] == '\0') return 0;
  char *end;
  errno = 0;
  double v = strtod(env, &end);
  if (errno != 0 || end == env || *end != '\0' || !(v >= 1 && v < 9e18)) {
    if (err != NULL && errlen > 0)
      snprintf(err, errlen, "MAMLRUN_MEMORY_LIMIT must be a number of bytes (such as 4e9), got '%s' (unset it for "
               "90%% of the machine's memory)", env);
    return -1;
  }
  return (int64_t)v;
}

int sys_default_threads(void) {
  int from_env = sys_env_threads(NULL, 0);
  long n;
  if (from_env > 0) {
    n = from_env;
  } else {
    long online = sysconf(_SC_NPROCESSORS_ONLN), allowed = online;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) allowed = CPU_COUNT(&set);
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    long ranks_here = local != NULL && atoi(local) > 0 ? atoi(local) : 1;
    long share = online / ranks_here;
    n = allowed < share ? allowed : share;
  }
  return n < 1 ? 1 : n > SYS_MAX_THREADS ? SYS_MAX_THREADS : (int)n;
}
