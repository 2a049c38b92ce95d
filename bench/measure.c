/*
 * The load generator's measured phase (bench/loadgen.py), in C so that the clients cost
 * less than the server they measure.
 *
 * Python opens the connections (handshake, subscribe, replies) and then hands their
 * sockets to this loop: one epoll set, one growing buffer per connection, complete frames
 * walked in place (pings answered with a masked pong, a close frame recorded as an error),
 * and in every text frame each data message found by its literal head
 * {"message_type":"data","symbol":" -- the same bytes inside a batch frame -- with its
 * "seq", "sent_ns" (fan-out: latency = receive time - sent_ns) or "close" (e2e) read up to
 * the message's closing brace. Nothing is allocated per message.
 *
 * mg_run returns 1 when the control descriptor (the parent's commands on stdin) is
 * readable, after the rest of that epoll batch; Python reads the command and calls again.
 *
 * Build: cc -O2 -shared -fPIC -o measure.so measure.c (bench/native.py does it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

enum { MODE_COUNT = 0, MODE_FANOUT = 1, MODE_E2E = 2 };
enum { READ_ROOM = 65536, MAX_EVENTS = 1024, MAX_BUFFER = 64 << 20 };

static const char HEAD[] = "{\"message_type\":\"data\",\"symbol\":\"";
#define HEAD_LEN (sizeof(HEAD) - 1)

typedef struct { /* bench/native.py's _Row */
    int64_t ns;
    int32_t client, sym;
    double close;
} row_t;

typedef struct {
    int fd;
    int client;
    unsigned char *buf;
    size_t len, cap;
} conn_t;

typedef struct {
    int epfd, mode, nclients, nsym, nconn, closed, control_fd;
    conn_t *conns;
    char **syms;
    size_t *symlen;
    int *table; /* open addressing: symbol index + 1, 0 = empty */
    uint32_t tmask;
    int64_t *counts, *last; /* [client * nsym + symbol] */
    int64_t received, last_ns, unknown;
    int64_t *lat; /* fan-out: receive ns - sent_ns */
    size_t nlat, caplat;
    row_t *rows; /* e2e: one row per data message */
    size_t ne, cape;
    char errors[8192];
    size_t errlen;
    int nerr;
} ctx_t;

static uint32_t hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int lookup(const ctx_t *c, const char *s, size_t n) {
    for (uint32_t i = hash(s, n) & c->tmask;; i = (i + 1) & c->tmask) {
        int k = c->table[i];
        if (!k) return -1;
        k--;
        if (c->symlen[k] == n && memcmp(c->syms[k], s, n) == 0) return k;
    }
}

static void note_error(ctx_t *c, const char *fmt, int a, const char *b) {
    if (c->nerr >= 20 || c->errlen >= sizeof(c->errors) - 256) return;
    int n = snprintf(c->errors + c->errlen, sizeof(c->errors) - c->errlen, fmt, a, b);
    if (n > 0) c->errlen += (size_t)n + 1; /* each message ends with its NUL */
    c->nerr++;
}

static int grow(void **p, size_t *cap, size_t need, size_t item) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 65536;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * item);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* The digits right after `key` in [p, end), or -1. */
static int64_t int_after(const char *p, const char *end, const char *key, size_t klen) {
    const char *at = memmem(p, (size_t)(end - p), key, klen);
    if (!at) return -1;
    at += klen;
    if (at >= end || *at < '0' || *at > '9') return -1;
    int64_t v = 0;
    while (at < end && *at >= '0' && *at <= '9') v = v * 10 + (*at++ - '0');
    return v;
}

static void scan(ctx_t *c, const conn_t *conn, const char *p, const char *end, int64_t now) {
    while (p < end) {
        const char *m = memmem(p, (size_t)(end - p), HEAD, HEAD_LEN);
        if (!m) return;
        const char *s = m + HEAD_LEN;
        const char *q = memchr(s, '"', (size_t)(end - s));
        if (!q) return;
        const char *stop = memchr(q, '}', (size_t)(end - q)); /* data messages hold no nested object */
        if (!stop) stop = end;
        c->received++;
        c->last_ns = now;
        int k = lookup(c, s, (size_t)(q - s));
        if (k < 0) {
            c->unknown++;
            p = stop;
            continue;
        }
        size_t slot = (size_t)conn->client * (size_t)c->nsym + (size_t)k;
        c->counts[slot]++;
        int64_t seq = int_after(q, stop, "\"seq\":", 6);
        if (seq >= 0) c->last[slot] = seq;
        if (c->mode == MODE_FANOUT) {
            int64_t sent = int_after(q, stop, "\"sent_ns\":", 10);
            if (sent >= 0 && !grow((void **)&c->lat, &c->caplat, c->nlat + 1, sizeof(int64_t)))
                c->lat[c->nlat++] = now - sent;
        } else if (c->mode == MODE_E2E) {
            const char *at = memmem(q, (size_t)(stop - q), "\"close\":", 8);
            if (at && !grow((void **)&c->rows, &c->cape, c->ne + 1, sizeof(row_t)))
                c->rows[c->ne++] = (row_t){now, conn->client, k, strtod(at + 8, NULL)};
        }
        p = stop;
    }
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* the publisher's time.time_ns() clock */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void pong(int fd, const unsigned char *payload, size_t n) {
    unsigned char frame[2 + 4 + 125];
    if (n > 125) n = 125; /* control frames carry at most 125 bytes */
    uint32_t mask = (uint32_t)rand();
    frame[0] = 0x8A;
    frame[1] = (unsigned char)(0x80 | n);
    memcpy(frame + 2, &mask, 4);
    for (size_t i = 0; i < n; i++) frame[6 + i] = payload[i] ^ frame[2 + (i & 3)];
    ssize_t w = write(fd, frame, 6 + n);
    (void)w; /* a pong lost to a full socket only delays the server's keepalive check */
}

/* Walk the complete frames at the start of conn->buf; keep the incomplete rest. */
static void frames(ctx_t *c, conn_t *conn, int64_t now) {
    unsigned char *b = conn->buf;
    size_t n = conn->len, pos = 0;
    while (n - pos >= 2) {
        uint64_t len = b[pos + 1] & 0x7F;
        size_t head = 2;
        if (len == 126) {
            if (n - pos < 4) break;
            len = ((uint64_t)b[pos + 2] << 8) | b[pos + 3];
            head = 4;
        } else if (len == 127) {
            if (n - pos < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | b[pos + 2 + i];
            head = 10;
        }
        if (len > MAX_BUFFER) {
            note_error(c, "client %d: %s", conn->client, "frame longer than 64 MiB");
            pos = n;
            break;
        }
        if (n - pos < head + len) break;
        int opcode = b[pos] & 0x0F;
        const unsigned char *payload = b + pos + head;
        if (opcode == 1 || opcode == 0)
            scan(c, conn, (const char *)payload, (const char *)payload + len, now);
        else if (opcode == 9)
            pong(conn->fd, payload, len);
        else if (opcode == 8) {
            char code[8] = "";
            if (len >= 2) snprintf(code, sizeof code, "%02x%02x", payload[0], payload[1]);
            note_error(c, "client %d: closed by server %s", conn->client, code);
        }
        pos += head + len;
    }
    if (pos) {
        memmove(b, b + pos, n - pos);
        conn->len = n - pos;
    }
}

void *mg_new(int mode, int nclients, int nsym, const char **syms) {
    ctx_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->mode = mode;
    c->nclients = nclients;
    c->nsym = nsym;
    c->control_fd = -1;
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    uint32_t size = 16;
    while (size < (uint32_t)nsym * 4) size *= 2;
    c->tmask = size - 1;
    c->table = calloc(size, sizeof(int));
    c->syms = calloc((size_t)nsym, sizeof(char *));
    c->symlen = calloc((size_t)nsym, sizeof(size_t));
    c->counts = calloc((size_t)nclients * (size_t)nsym + 1, sizeof(int64_t));
    c->last = calloc((size_t)nclients * (size_t)nsym + 1, sizeof(int64_t));
    c->conns = calloc((size_t)nclients + 1, sizeof(conn_t));
    if (c->epfd < 0 || !c->table || !c->syms || !c->symlen || !c->counts || !c->last || !c->conns) return NULL;
    for (int k = 0; k < nsym; k++) {
        c->syms[k] = strdup(syms[k]);
        c->symlen[k] = strlen(syms[k]);
        uint32_t i = hash(syms[k], c->symlen[k]) & c->tmask;
        while (c->table[i]) i = (i + 1) & c->tmask;
        c->table[i] = k + 1;
    }
    return c;
}

/* Watch one connection's socket; `data` holds bytes already read past the set-up. */
int mg_add(void *ctx, int fd, int client, const unsigned char *data, size_t n) {
    ctx_t *c = ctx;
    if (client < 0 || client >= c->nclients || c->nconn >= c->nclients) return -EINVAL;
    conn_t *conn = &c->conns[c->nconn];
    conn->fd = fd;
    conn->client = client;
    if (grow((void **)&conn->buf, &conn->cap, n + READ_ROOM, 1)) return -ENOMEM;
    memcpy(conn->buf, data, n);
    conn->len = n;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)c->nconn};
    if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) return -errno;
    c->nconn++;
    frames(c, conn, now_ns()); /* whatever arrived with the last set-up reply */
    return 0;
}

void mg_reset(void *ctx) {
    ctx_t *c = ctx;
    c->received = c->last_ns = c->unknown = 0;
    c->nlat = c->ne = 0;
    memset(c->counts, 0, (size_t)c->nclients * (size_t)c->nsym * sizeof(int64_t));
    memset(c->last, 0, (size_t)c->nclients * (size_t)c->nsym * sizeof(int64_t));
}

/* Read until the control descriptor is readable (returns 1) or epoll fails (-errno). */
int mg_run(void *ctx, int control_fd, int64_t poll_ns) {
    ctx_t *c = ctx;
    if (c->control_fd != control_fd) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
        if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, control_fd, &ev) < 0 && errno != EEXIST) return -errno;
        c->control_fd = control_fd;
    }
    struct epoll_event events[MAX_EVENTS];
    struct timespec pause = {.tv_sec = poll_ns / 1000000000, .tv_nsec = poll_ns % 1000000000};
    for (;;) {
        int n = epoll_wait(c->epfd, events, MAX_EVENTS, 1000);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        int command = 0;
        for (int i = 0; i < n; i++) {
            uint32_t at = events[i].data.u32;
            if (at == UINT32_MAX) {
                command = 1;
                continue;
            }
            conn_t *conn = &c->conns[at];
            if (conn->len > MAX_BUFFER ||
                grow((void **)&conn->buf, &conn->cap, conn->len + READ_ROOM, 1)) {
                note_error(c, "client %d: %s", conn->client, "no memory for a frame");
                epoll_ctl(c->epfd, EPOLL_CTL_DEL, conn->fd, NULL);
                c->closed++;
                continue;
            }
            ssize_t got = read(conn->fd, conn->buf + conn->len, conn->cap - conn->len);
            if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (got <= 0) {
                if (got < 0) note_error(c, "client %d: %s", conn->client, strerror(errno));
                epoll_ctl(c->epfd, EPOLL_CTL_DEL, conn->fd, NULL);
                c->closed++;
                continue;
            }
            conn->len += (size_t)got;
            frames(c, conn, now_ns());
        }
        if (command) return 1;
        if (poll_ns > 0) nanosleep(&pause, NULL);
    }
}

int64_t mg_received(void *ctx) { return ((ctx_t *)ctx)->received; }
int64_t mg_last_ns(void *ctx) { return ((ctx_t *)ctx)->last_ns; }
int64_t mg_unknown(void *ctx) { return ((ctx_t *)ctx)->unknown; }
int mg_closed(void *ctx) { return ((ctx_t *)ctx)->closed; }
int64_t *mg_counts(void *ctx) { return ((ctx_t *)ctx)->counts; }
int64_t *mg_last(void *ctx) { return ((ctx_t *)ctx)->last; }
size_t mg_nlat(void *ctx) { return ((ctx_t *)ctx)->nlat; }
int64_t *mg_lat(void *ctx) { return ((ctx_t *)ctx)->lat; }
size_t mg_ne(void *ctx) { return ((ctx_t *)ctx)->ne; }
row_t *mg_rows(void *ctx) { return ((ctx_t *)ctx)->rows; }
const char *mg_errors(void *ctx, size_t *n) {
    *n = ((ctx_t *)ctx)->errlen;
    return ((ctx_t *)ctx)->errors;
}

void mg_free(void *ctx) {
    ctx_t *c = ctx;
    if (!c) return;
    for (int i = 0; i < c->nconn; i++) free(c->conns[i].buf);
    for (int k = 0; k < c->nsym; k++) free(c->syms[k]);
    free(c->conns);
    free(c->syms);
    free(c->symlen);
    free(c->table);
    free(c->counts);
    free(c->last);
    free(c->lat);
    free(c->rows);
    if (c->epfd >= 0) close(c->epfd);
    free(c);
}
