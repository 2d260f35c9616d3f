// Trace-profiling subject (C, pthreads): an HTTP/1.1 server on 127.0.0.1
// whose `GET /work` spends, in the thread serving the connection,
//   ~150 ms of thread CPU time in burn_cpu,
//   ~200 ms waiting on PostgreSQL (`SELECT pg_sleep(0.2)`, wire protocol v3
//   spoken by hand over one connection per server, opened on first use),
//   ~100 ms blocked on a pthread mutex a helper thread holds,
// then answers 200. `GET /work?spinners=N` also runs N threads spinning in
// `spin` for the request's duration (CPU starvation on a small machine).
// Usage: traceserver PG_PORT. Prints its port on stdout; per request, its
// own timings on stderr (pg_rq_ms, lock_rq_ms: the parts of the waits spent in
// a run queue once woken, from the kernel's per-thread run_delay):
//   timing trace=<id|-> cpu_ms X burn_wall_ms X pg_ms X lock_ms X total_ms X pg_rq_ms X lock_rq_ms X
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int pg_port;
static int pg_fd = -1;
static pthread_mutex_t pg_mu = PTHREAD_MUTEX_INITIALIZER;

static void die(const char *what) {
    fprintf(stderr, "traceserver: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now_ms(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Time this thread has waited in a run queue (the kernel's run_delay, ms).
static double run_delay_ms(void) {
    FILE *f = fopen("/proc/thread-self/schedstat", "r");
    unsigned long long cpu = 0, delay = 0;
    if (!f) die("opening /proc/thread-self/schedstat");
    if (fscanf(f, "%llu %llu", &cpu, &delay) != 2) {
        fprintf(stderr, "traceserver: unreadable /proc/thread-self/schedstat\n");
        exit(1);
    }
    fclose(f);
    return delay / 1e6;
}

// ---------------------------------------------------------------- on-CPU

static volatile uint64_t sink;

// Busy until `ms` of this thread's CPU time is spent. The clock is read
// every ~100k iterations so the loop itself, not clock_gettime, is the hot
// code.
__attribute__((noinline)) void burn_cpu(double ms) {
    double start = now_ms(CLOCK_THREAD_CPUTIME_ID);
    uint64_t x = 88172645463325252ULL;
    do {
        for (int i = 0; i < 100000; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        sink = x;
    } while (now_ms(CLOCK_THREAD_CPUTIME_ID) - start < ms);
}

// ---------------------------------------------------------------- PostgreSQL

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void put32(char *p, uint32_t v) {
    v = htonl(v);
    memcpy(p, &v, 4);
}

// Reads backend messages until ReadyForQuery. Fails on an error response or
// an authentication method other than trust (the test cluster uses trust).
static void pg_until_ready(int fd) {
    for (;;) {
        char hdr[5];
        if (read_all(fd, hdr, 5) < 0) die("reading from postgres");
        uint32_t len;
        memcpy(&len, hdr + 1, 4);
        len = ntohl(len);
        if (len < 4 || len > (1u << 24)) {
            fprintf(stderr, "traceserver: bad postgres message length %u\n", len);
            exit(1);
        }
        char *body = malloc(len - 4 + 1);
        if (!body) die("malloc");
        if (read_all(fd, body, len - 4) < 0) die("reading from postgres");
        body[len - 4] = 0;
        char type = hdr[0];
        if (type == 'E') {
            fprintf(stderr, "traceserver: postgres error:");
            for (uint32_t i = 0; i + 1 < len - 4; i += strlen(body + i) + 1) fprintf(stderr, " %s", body + i);
            fprintf(stderr, "\n");
            exit(1);
        }
        if (type == 'R') {
            uint32_t code;
            memcpy(&code, body, 4);
            if (ntohl(code) != 0) {
                fprintf(stderr, "traceserver: postgres asks for auth method %u; only trust is supported\n", ntohl(code));
                exit(1);
            }
        }
        free(body);
        if (type == 'Z') return;
    }
}

static int pg_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(pg_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connecting to postgres");
    static const char params[] = "user\0postgres\0database\0postgres\0";
    char msg[8 + sizeof params];  // params + the final terminator
    put32(msg, sizeof msg);
    put32(msg + 4, 196608);  // protocol 3.0
    memcpy(msg + 8, params, sizeof params);
    if (write_all(fd, msg, sizeof msg) < 0) die("writing to postgres");
    pg_until_ready(fd);
    return fd;
}

// One simple query on the shared connection; the mutex is uncontended when
// requests come one at a time (as the test sends them).
static void pg_query(const char *sql) {
    pthread_mutex_lock(&pg_mu);
    if (pg_fd < 0) pg_fd = pg_connect();
    size_t n = strlen(sql) + 1;
    char *msg = malloc(5 + n);
    if (!msg) die("malloc");
    msg[0] = 'Q';
    put32(msg + 1, (uint32_t)(4 + n));
    memcpy(msg + 5, sql, n);
    if (write_all(pg_fd, msg, 5 + n) < 0) die("writing to postgres");
    free(msg);
    pg_until_ready(pg_fd);
    pthread_mutex_unlock(&pg_mu);
}

// ---------------------------------------------------------------- lock

static pthread_mutex_t contended = PTHREAD_MUTEX_INITIALIZER;

struct holder {
    sem_t held;
    int ms;
};

static void *hold_lock(void *arg) {
    struct holder *h = arg;
    pthread_mutex_lock(&contended);
    sem_post(&h->held);
    usleep(h->ms * 1000);
    pthread_mutex_unlock(&contended);
    return NULL;
}

// A helper takes the mutex and holds it `ms`; we block acquiring it. Returns
// the time blocked, and in `rq` the part of it spent in a run queue once woken.
static double wait_on_lock(int ms, double *rq) {
    struct holder h = {.ms = ms};
    sem_init(&h.held, 0, 0);
    pthread_t t;
    if (pthread_create(&t, NULL, hold_lock, &h) != 0) die("pthread_create");
    while (sem_wait(&h.held) < 0 && errno == EINTR) {
    }
    double t0 = now_ms(CLOCK_MONOTONIC), rq0 = run_delay_ms();
    pthread_mutex_lock(&contended);
    double blocked = now_ms(CLOCK_MONOTONIC) - t0;
    *rq = run_delay_ms() - rq0;
    pthread_mutex_unlock(&contended);
    pthread_join(t, NULL);
    sem_destroy(&h.held);
    return blocked;
}

// ---------------------------------------------------------------- spinners

static volatile int spinning;

__attribute__((noinline)) static void *spin(void *arg) {
    (void)arg;
    uint64_t x = 1;
    while (spinning) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    sink = x;
    return NULL;
}

// ---------------------------------------------------------------- HTTP

// The trace id of a `traceparent` header in `req`, or "-".
static void trace_id_of(const char *req, char *out, size_t cap) {
    snprintf(out, cap, "-");
    for (const char *p = req; (p = strstr(p, "\r\n")) != NULL; p += 2) {
        if (strncasecmp(p + 2, "traceparent:", 12) != 0) continue;
        const char *v = p + 14;
        while (*v == ' ') v++;
        const char *id = strchr(v, '-');  // after the version
        if (id && strlen(id + 1) >= 32) snprintf(out, cap, "%.32s", id + 1);
        return;
    }
}

static void reply(int fd, int code, const char *body) {
    char buf[512];
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     code, code == 200 ? "OK" : "Not Found", strlen(body), body);
    write_all(fd, buf, (size_t)n);
}

static void serve_work(int fd, const char *req) {
    char trace[40];
    trace_id_of(req, trace, sizeof trace);
    int spinners = 0;
    const char *q = strstr(req, "spinners=");
    if (q && q < strstr(req, "\r\n")) spinners = atoi(q + 9);
    pthread_t sp[64];
    if (spinners > 64) spinners = 64;
    spinning = 1;
    for (int i = 0; i < spinners; i++)
        if (pthread_create(&sp[i], NULL, spin, NULL) != 0) die("pthread_create");

    double t0 = now_ms(CLOCK_MONOTONIC), c0 = now_ms(CLOCK_THREAD_CPUTIME_ID);
    burn_cpu(150);
    double t1 = now_ms(CLOCK_MONOTONIC), c1 = now_ms(CLOCK_THREAD_CPUTIME_ID);
    double rq1 = run_delay_ms();
    pg_query("SELECT pg_sleep(0.2)");
    double t2 = now_ms(CLOCK_MONOTONIC), rq2 = run_delay_ms();
    double lock_rq_ms;
    double lock_ms = wait_on_lock(100, &lock_rq_ms);
    double t3 = now_ms(CLOCK_MONOTONIC);

    spinning = 0;
    for (int i = 0; i < spinners; i++) pthread_join(sp[i], NULL);
    reply(fd, 200, "done\n");
    fprintf(stderr,
            "timing trace=%s cpu_ms %.1f burn_wall_ms %.1f pg_ms %.1f lock_ms %.1f total_ms %.1f pg_rq_ms %.1f "
            "lock_rq_ms %.1f\n",
            trace, c1 - c0, t1 - t0, t2 - t1, lock_ms, t3 - t0, rq2 - rq1, lock_rq_ms);
}

static void *serve_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char req[8192];
    size_t n = 0;
    while (n + 1 < sizeof req) {
        ssize_t r = read(fd, req + n, sizeof req - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
        req[n] = 0;
        if (strstr(req, "\r\n\r\n")) break;
    }
    req[n] = 0;
    if (strncmp(req, "GET /work", 9) == 0)
        serve_work(fd, req);
    else if (n > 0)
        reply(fd, 404, "not found\n");
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2 || (pg_port = atoi(argv[1])) <= 0) {
        fprintf(stderr, "usage: traceserver PG_PORT\n");
        return 2;
    }
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0) die("socket");
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 64) < 0) die("bind/listen");
    socklen_t al = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &al);
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR) continue;
            die("accept");
        }
        pthread_t t;
        if (pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd) != 0) die("pthread_create");
        pthread_detach(t);
    }
}
