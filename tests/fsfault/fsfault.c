/* A file-system call recorder and fault injector, loaded with LD_PRELOAD
 * into a child process by tests/fsfault.py.
 *
 * Every mutating call on a path under $EA_FS_UNDER is appended to the log
 * $EA_FS_LOG, one tab-separated line per call:
 *
 *     seq  kind  result  errno  fields...
 *
 *     create    path                      (an open that made a new file)
 *     open      path  flags               (an open for writing; flags in hex)
 *     write     path  offset  dsync  hex  (write/pwrite/writev/pwritev; dsync: O_DSYNC fd)
 *     sync      path  is_dir  data_only   (fsync / fdatasync)
 *     rename    from  to
 *     unlink    path
 *     mkdir     path
 *     truncate  path  length
 *     read      path  offset  count       (pread/pread64; only with $EA_FS_READS=1)
 *
 * A failed call has result -1 and its errno; a write logs the bytes it
 * wrote (all of them, or the prefix a short write took), a read the
 * offset and size asked for (its result is the bytes it read).
 *
 * $EA_FS_FAIL = "kind:n:errno" makes the n-th matching call (1-based) fail
 * with errno (a number, or EIO/ENOSPC) without reaching the kernel; kinds
 * are the ones above plus dsync_write (a write on an O_DSYNC descriptor),
 * filesync, dirsync and any (every logged call but open; reads count only
 * with $EA_FS_READS=1, which also makes `read` a kind). With
 * $EA_FS_FAIL_MATCH only calls whose path contains that text count, and
 * with $EA_FS_FAIL_REPEAT=1 every matching call from the n-th on fails.
 *
 * Paths are made absolute against the working directory but not resolved:
 * give $EA_FS_UNDER without symlinks (tests use resolved tmp paths).
 *
 * It also counts getpid() calls (not logged): ea_fs_getpid_calls() gives
 * the count, for tests that a call makes none (the package caches its id).
 * And PyEval_SaveThread() calls, how an extension gives the GIL up (pyo3's
 * `detach`): ea_fs_gil_releases() gives the count. Only an interpreter
 * whose C API lives in a shared libpython can be interposed; elsewhere the
 * count stays 0, so tests check it moves for a call that must release it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FDS 65536

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char *fd_path[MAX_FDS];
static int fd_dsync[MAX_FDS];
static long seq;
static long matched;
static int log_fd = -1;

/* ---------------------------------------------------------------- setup */

static const char *under(void) { return getenv("EA_FS_UNDER"); }

static int is_under(const char *abs) {
    const char *u = under();
    if (!u || !abs) return 0;
    size_t n = strlen(u);
    return strncmp(abs, u, n) == 0 && (abs[n] == 0 || abs[n] == '/' || u[n - 1] == '/');
}

/* An absolute path for `path` relative to `dirfd` (AT_FDCWD or a tracked
 * directory); NULL when it cannot be known. Caller frees. */
static char *absolute(int dirfd, const char *path) {
    char base[PATH_MAX];
    if (!path) return NULL;
    if (path[0] == '/') return strdup(path);
    if (dirfd == AT_FDCWD) {
        if (!getcwd(base, sizeof base)) return NULL;
    } else if (dirfd >= 0 && dirfd < MAX_FDS && fd_path[dirfd]) {
        snprintf(base, sizeof base, "%s", fd_path[dirfd]);
    } else {
        return NULL;
    }
    size_t n = strlen(base) + strlen(path) + 2;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%s/%s", base, path);
    return out;
}

static void log_raw(const char *s, size_t n) {
    if (log_fd < 0) {
        const char *p = getenv("EA_FS_LOG");
        if (!p) return;
        log_fd = (int)syscall(SYS_openat, AT_FDCWD, p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (log_fd < 0) return;
    }
    while (n > 0) {
        long w = syscall(SYS_write, log_fd, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static int errno_from(const char *s) {
    if (!strcmp(s, "EIO")) return EIO;
    if (!strcmp(s, "ENOSPC")) return ENOSPC;
    if (!strcmp(s, "EDQUOT")) return EDQUOT;
    if (!strcmp(s, "EMFILE")) return EMFILE;
    return atoi(s);
}

/* Whether this call of `kind` on `path` is to fail, and with which errno
 * (0: no). Called with `mu` held. */
static int fault(const char *kind, const char *path, int dsync, int is_dir) {
    static char armed[128];
    const char *spec = getenv("EA_FS_FAIL");
    if (!spec) return 0;
    /* A workload may arm a new fault at run time (os.environ): counting
     * starts again from it. */
    if (strncmp(armed, spec, sizeof armed - 1) != 0) {
        snprintf(armed, sizeof armed, "%s", spec);
        matched = 0;
    }
    char want[32];
    long n = 0;
    char err[32];
    if (sscanf(spec, "%31[^:]:%ld:%31s", want, &n, err) != 3) return 0;
    int hit = !strcmp(want, kind) || (!strcmp(want, "any") && strcmp(kind, "open") != 0) ||
              (!strcmp(want, "dsync_write") && !strcmp(kind, "write") && dsync) ||
              (!strcmp(want, "filesync") && !strcmp(kind, "sync") && !is_dir) ||
              (!strcmp(want, "dirsync") && !strcmp(kind, "sync") && is_dir);
    const char *match = getenv("EA_FS_FAIL_MATCH");
    if (!hit || (match && (!path || !strstr(path, match)))) return 0;
    matched++;
    int repeat = getenv("EA_FS_FAIL_REPEAT") != NULL;
    if (matched == n || (repeat && matched > n)) return errno_from(err);
    return 0;
}

/* One log line: seq kind result errno, then `rest` (already tab-led).
 * Written with one append, so that a marker another thread of the
 * workload writes meanwhile (a committer thread's calls against the
 * caller's marks) never lands inside it. */
static void log_line(const char *kind, long result, int err, const char *rest) {
    char head[96];
    int k = snprintf(head, sizeof head, "%ld\t%s\t%ld\t%d", ++seq, kind, result, err);
    size_t r = rest ? strlen(rest) : 0;
    char *line = malloc((size_t)k + r + 1);
    if (!line) return;
    memcpy(line, head, (size_t)k);
    if (r) memcpy(line + k, rest, r);
    line[(size_t)k + r] = '\n';
    log_raw(line, (size_t)k + r + 1);
    free(line);
}

static void log_path(const char *kind, long result, int err, const char *path, const char *more) {
    size_t n = strlen(path) + (more ? strlen(more) : 0) + 4;
    char *rest = malloc(n);
    if (!rest) return;
    snprintf(rest, n, "\t%s%s", path, more ? more : "");
    log_line(kind, result, err, rest);
    free(rest);
}

/* The next definition of `name` (libc's), looked up once. */
#define REAL(name) \
    static __typeof__(&name) real_##name; \
    if (!real_##name) real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

/* ---------------------------------------------------------------- opens */

static void track(int fd, char *abs, int flags) {
    if (fd < 0 || fd >= MAX_FDS) {
        free(abs);
        return;
    }
    free(fd_path[fd]);
    fd_path[fd] = abs;
    fd_dsync[fd] = (flags & (O_DSYNC | O_SYNC)) != 0;
}

typedef int (*openat_fn)(int, const char *, int, ...);

static int do_open(openat_fn real, int dirfd, const char *path, int flags, mode_t mode) {
    char *abs = absolute(dirfd, path);
    if (!is_under(abs)) {
        free(abs);
        int fd = real(dirfd, path, flags, mode);
        if (fd >= 0 && fd < MAX_FDS) {
            pthread_mutex_lock(&mu);
            free(fd_path[fd]);
            fd_path[fd] = NULL;
            pthread_mutex_unlock(&mu);
        }
        return fd;
    }
    int writes = (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC));
    pthread_mutex_lock(&mu);
    int injected = writes ? fault("open", abs, 0, 0) : 0;
    if (injected) {
        char more[32];
        snprintf(more, sizeof more, "\t%x", flags);
        log_path("open", -1, injected, abs, more);
        pthread_mutex_unlock(&mu);
        free(abs);
        errno = injected;
        return -1;
    }
    struct stat st;
    int existed = (flags & O_CREAT) ? fstatat(AT_FDCWD, abs, &st, AT_SYMLINK_NOFOLLOW) == 0 : 1;
    int fd = real(dirfd, path, flags, mode);
    int saved = errno;
    if (fd >= 0 && !existed) log_path("create", fd, 0, abs, NULL);
    if (writes) {
        char more[32];
        snprintf(more, sizeof more, "\t%x", flags);
        log_path("open", fd, fd < 0 ? saved : 0, abs, more);
    }
    if (fd >= 0) track(fd, abs, flags);
    else free(abs);
    pthread_mutex_unlock(&mu);
    errno = saved;
    return fd;
}

static mode_t mode_arg(int flags, va_list ap) {
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

static int via_open(int dirfd, const char *path, int flags, mode_t mode) {
    (void)dirfd;
    REAL(open);
    return real_open(path, flags, mode);
}
static int via_open64(int dirfd, const char *path, int flags, mode_t mode) {
    (void)dirfd;
    REAL(open64);
    return real_open64(path, flags, mode);
}
static int via_openat(int dirfd, const char *path, int flags, mode_t mode) {
    REAL(openat);
    return real_openat(dirfd, path, flags, mode);
}
static int via_openat64(int dirfd, const char *path, int flags, mode_t mode) {
    REAL(openat64);
    return real_openat64(dirfd, path, flags, mode);
}

int open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_open((openat_fn)via_open, AT_FDCWD, path, flags, mode);
}
int open64(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_open((openat_fn)via_open64, AT_FDCWD, path, flags, mode);
}
int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_open((openat_fn)via_openat, dirfd, path, flags, mode);
}
int openat64(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_open((openat_fn)via_openat64, dirfd, path, flags, mode);
}

int close(int fd) {
    REAL(close);
    if (fd >= 0 && fd < MAX_FDS && fd_path[fd]) {
        pthread_mutex_lock(&mu);
        free(fd_path[fd]);
        fd_path[fd] = NULL;
        fd_dsync[fd] = 0;
        pthread_mutex_unlock(&mu);
    }
    return real_close(fd);
}

/* ---------------------------------------------------------------- writes */

static void log_write(int fd, long offset, const struct iovec *iov, int iovcnt, long result, int err) {
    size_t total = result > 0 ? (size_t)result : 0;
    size_t n = strlen(fd_path[fd]) + 2 * total + 64;
    char *rest = malloc(n);
    if (!rest) return;
    int k = snprintf(rest, n, "\t%s\t%ld\t%d\t", fd_path[fd], offset, fd_dsync[fd]);
    static const char digits[] = "0123456789abcdef";
    size_t left = total;
    for (int i = 0; i < iovcnt && left > 0; i++) {
        const unsigned char *b = iov[i].iov_base;
        size_t take = iov[i].iov_len < left ? iov[i].iov_len : left;
        for (size_t j = 0; j < take; j++) {
            rest[k++] = digits[b[j] >> 4];
            rest[k++] = digits[b[j] & 15];
        }
        left -= take;
    }
    rest[k] = 0;
    log_line("write", result, err, rest);
    free(rest);
}

/* Runs one write-like call on a tracked descriptor: a fault, or the real
 * call and its log line. `offset` < 0: the current file offset. */
#define TRACKED_WRITE(fd, offset, iov, iovcnt, call)                              \
    do {                                                                          \
        if (fd < 0 || fd >= MAX_FDS || !fd_path[fd]) return call;                 \
        pthread_mutex_lock(&mu);                                                  \
        long at = offset >= 0 ? (long)offset : (long)lseek(fd, 0, SEEK_CUR);      \
        int injected = fault("write", fd_path[fd], fd_dsync[fd], 0);              \
        if (injected) {                                                           \
            log_write(fd, at, iov, iovcnt, -1, injected);                         \
            pthread_mutex_unlock(&mu);                                            \
            errno = injected;                                                     \
            return -1;                                                            \
        }                                                                         \
        ssize_t r = call;                                                         \
        int saved = errno;                                                        \
        log_write(fd, at, iov, iovcnt, (long)r, r < 0 ? saved : 0);              \
        pthread_mutex_unlock(&mu);                                                \
        errno = saved;                                                            \
        return r;                                                                 \
    } while (0)

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write);
    struct iovec one = {(void *)buf, count};
    TRACKED_WRITE(fd, -1, &one, 1, real_write(fd, buf, count));
}
ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite);
    struct iovec one = {(void *)buf, count};
    TRACKED_WRITE(fd, offset, &one, 1, real_pwrite(fd, buf, count, offset));
}
ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite64);
    struct iovec one = {(void *)buf, count};
    TRACKED_WRITE(fd, offset, &one, 1, real_pwrite64(fd, buf, count, offset));
}
ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    REAL(writev);
    TRACKED_WRITE(fd, -1, iov, iovcnt, real_writev(fd, iov, iovcnt));
}
ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
    REAL(pwritev);
    TRACKED_WRITE(fd, offset, iov, iovcnt, real_pwritev(fd, iov, iovcnt, offset));
}

/* ---------------------------------------------------------------- reads */

/* Reads are logged (and can fail) only when asked for: the other traces
 * stay as they were. */
static int reads_traced(void) {
    const char *r = getenv("EA_FS_READS");
    return r && r[0] == '1';
}

static void log_read(int fd, long offset, size_t count, long result, int err) {
    char more[64];
    snprintf(more, sizeof more, "\t%ld\t%zu", offset, count);
    log_path("read", result, err, fd_path[fd], more);
}

#define TRACKED_READ(fd, offset, count, call)                                     \
    do {                                                                          \
        if (fd < 0 || fd >= MAX_FDS || !fd_path[fd] || !reads_traced()) return call; \
        pthread_mutex_lock(&mu);                                                  \
        int injected = fault("read", fd_path[fd], 0, 0);                          \
        if (injected) {                                                           \
            log_read(fd, (long)offset, count, -1, injected);                      \
            pthread_mutex_unlock(&mu);                                            \
            errno = injected;                                                     \
            return -1;                                                            \
        }                                                                         \
        ssize_t r = call;                                                         \
        int saved = errno;                                                        \
        log_read(fd, (long)offset, count, (long)r, r < 0 ? saved : 0);           \
        pthread_mutex_unlock(&mu);                                                \
        errno = saved;                                                            \
        return r;                                                                 \
    } while (0)

ssize_t pread(int fd, void *buf, size_t count, off_t offset) {
    REAL(pread);
    TRACKED_READ(fd, offset, count, real_pread(fd, buf, count, offset));
}
ssize_t pread64(int fd, void *buf, size_t count, off_t offset) {
    REAL(pread64);
    TRACKED_READ(fd, offset, count, real_pread64(fd, buf, count, offset));
}

/* ---------------------------------------------------------------- syncs */

static int tracked_sync(int fd, int data_only) {
    REAL(fsync);
    REAL(fdatasync);
    if (fd < 0 || fd >= MAX_FDS || !fd_path[fd]) return data_only ? real_fdatasync(fd) : real_fsync(fd);
    struct stat st;
    int is_dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    pthread_mutex_lock(&mu);
    char more[16];
    snprintf(more, sizeof more, "\t%d\t%d", is_dir, data_only);
    int injected = fault("sync", fd_path[fd], 0, is_dir);
    if (injected) {
        log_path("sync", -1, injected, fd_path[fd], more);
        pthread_mutex_unlock(&mu);
        errno = injected;
        return -1;
    }
    int r = data_only ? real_fdatasync(fd) : real_fsync(fd);
    int saved = errno;
    log_path("sync", r, r < 0 ? saved : 0, fd_path[fd], more);
    pthread_mutex_unlock(&mu);
    errno = saved;
    return r;
}

int fsync(int fd) { return tracked_sync(fd, 0); }
int fdatasync(int fd) { return tracked_sync(fd, 1); }

/* ---------------------------------------------------------------- names */

/* Runs a name call on `abs` (and `abs2`): a fault, or the real call and
 * its log line. Frees both paths. */
static int name_call(const char *kind, char *abs, char *abs2, const char *more, int (*call)(void *), void *ctx) {
    if (!is_under(abs) && !is_under(abs2)) {
        free(abs);
        free(abs2);
        return call(ctx);
    }
    pthread_mutex_lock(&mu);
    char extra[PATH_MAX + 64] = "";
    if (abs2) snprintf(extra, sizeof extra, "\t%s", abs2);
    if (more) strncat(extra, more, sizeof extra - strlen(extra) - 1);
    const char *shown = abs ? abs : "?";
    int injected = fault(kind, shown, 0, 0);
    int r;
    int saved;
    if (injected) {
        r = -1;
        saved = injected;
    } else {
        r = call(ctx);
        saved = errno;
    }
    log_path(kind, r, r < 0 ? saved : 0, shown, extra);
    pthread_mutex_unlock(&mu);
    free(abs);
    free(abs2);
    errno = saved;
    return r;
}

struct rename_args { int olddirfd; const char *oldpath; int newdirfd; const char *newpath; unsigned flags; };
static int call_renameat2(void *p) {
    struct rename_args *a = p;
    if (a->flags) return (int)syscall(SYS_renameat2, a->olddirfd, a->oldpath, a->newdirfd, a->newpath, a->flags);
    REAL(renameat);
    return real_renameat(a->olddirfd, a->oldpath, a->newdirfd, a->newpath);
}
int rename(const char *oldpath, const char *newpath) {
    struct rename_args a = {AT_FDCWD, oldpath, AT_FDCWD, newpath, 0};
    return name_call("rename", absolute(AT_FDCWD, oldpath), absolute(AT_FDCWD, newpath), NULL, call_renameat2, &a);
}
int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
    struct rename_args a = {olddirfd, oldpath, newdirfd, newpath, 0};
    return name_call("rename", absolute(olddirfd, oldpath), absolute(newdirfd, newpath), NULL, call_renameat2, &a);
}
int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags) {
    struct rename_args a = {olddirfd, oldpath, newdirfd, newpath, flags};
    return name_call("rename", absolute(olddirfd, oldpath), absolute(newdirfd, newpath), NULL, call_renameat2, &a);
}

struct path_args { int dirfd; const char *path; int flags; mode_t mode; off_t length; };
static int call_unlinkat(void *p) {
    struct path_args *a = p;
    REAL(unlinkat);
    return real_unlinkat(a->dirfd, a->path, a->flags);
}
int unlink(const char *path) {
    struct path_args a = {AT_FDCWD, path, 0, 0, 0};
    return name_call("unlink", absolute(AT_FDCWD, path), NULL, NULL, call_unlinkat, &a);
}
int unlinkat(int dirfd, const char *path, int flags) {
    struct path_args a = {dirfd, path, flags, 0, 0};
    return name_call((flags & AT_REMOVEDIR) ? "rmdir" : "unlink", absolute(dirfd, path), NULL, NULL, call_unlinkat, &a);
}
int rmdir(const char *path) {
    struct path_args a = {AT_FDCWD, path, AT_REMOVEDIR, 0, 0};
    return name_call("rmdir", absolute(AT_FDCWD, path), NULL, NULL, call_unlinkat, &a);
}

static int call_mkdirat(void *p) {
    struct path_args *a = p;
    REAL(mkdirat);
    return real_mkdirat(a->dirfd, a->path, a->mode);
}
int mkdir(const char *path, mode_t mode) {
    struct path_args a = {AT_FDCWD, path, 0, mode, 0};
    return name_call("mkdir", absolute(AT_FDCWD, path), NULL, NULL, call_mkdirat, &a);
}
int mkdirat(int dirfd, const char *path, mode_t mode) {
    struct path_args a = {dirfd, path, 0, mode, 0};
    return name_call("mkdir", absolute(dirfd, path), NULL, NULL, call_mkdirat, &a);
}

static int call_ftruncate(void *p) {
    struct path_args *a = p;
    REAL(ftruncate);
    return real_ftruncate(a->flags, a->length);
}
static int tracked_ftruncate(int fd, off_t length) {
    struct path_args a = {0, NULL, fd, 0, length};
    if (fd < 0 || fd >= MAX_FDS || !fd_path[fd]) return call_ftruncate(&a);
    char more[32];
    snprintf(more, sizeof more, "\t%ld", (long)length);
    return name_call("truncate", strdup(fd_path[fd]), NULL, more, call_ftruncate, &a);
}
int ftruncate(int fd, off_t length) { return tracked_ftruncate(fd, length); }
int ftruncate64(int fd, off_t length) { return tracked_ftruncate(fd, length); }

/* ---------------------------------------------------------------- getpid */

static long getpid_calls;

pid_t getpid(void) {
    REAL(getpid);
    __atomic_add_fetch(&getpid_calls, 1, __ATOMIC_RELAXED);
    return real_getpid();
}

/* How many times getpid() was called in this process so far. */
long ea_fs_getpid_calls(void) { return __atomic_load_n(&getpid_calls, __ATOMIC_RELAXED); }

/* ---------------------------------------------------------------- the GIL */

typedef void *(*save_thread_fn)(void);
static long gil_releases;

void *PyEval_SaveThread(void) {
    static save_thread_fn real_save;
    if (!real_save) real_save = (save_thread_fn)dlsym(RTLD_NEXT, "PyEval_SaveThread");
    __atomic_add_fetch(&gil_releases, 1, __ATOMIC_RELAXED);
    return real_save();
}

/* How many times PyEval_SaveThread() was called through the shim so far. */
long ea_fs_gil_releases(void) { return __atomic_load_n(&gil_releases, __ATOMIC_RELAXED); }
