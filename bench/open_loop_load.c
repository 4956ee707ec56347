/*
 * Open-loop HTTP/1.1 load for bench/collector_capacity.py: request k is due at
 * start + k / rate, whatever happened to the ones before it, and its latency counts
 * from that moment, so a server that stalls is charged for every request that waited
 * (in the server or here, for a free connection). A Python client cannot send 3,300
 * requests a second from one shared core; this one spends a few microseconds each.
 *
 *   open_loop_load HOST PORT RATE CONNECTIONS REQUESTS_FILE LATENCIES_FILE
 *
 * REQUESTS_FILE: the requests, pre-encoded, each preceded by its length as a 4-byte
 * little-endian integer. LATENCIES_FILE gets one line per request, in order:
 * "<due to sent, us> <due to reply read, us> <HTTP status, 0 if the connection failed>".
 * Replies must carry a Content-Length (aiohttp's do). Keep-alive connections, one
 * request in flight on each; a connection the server closes is opened again.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REPLY_BUFFER (256 * 1024)

struct request { const char *data; uint32_t size; };

struct connection {
    int fd;
    long request; /* index in flight, -1 when idle */
    uint32_t written;
    size_t have;
    char reply[REPLY_BUFFER];
};

static struct sockaddr_in server;
static int epoll_fd;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fail(const char *what) {
    perror(what);
    exit(2);
}

static int open_connection(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) fail("socket");
    if (connect(fd, (struct sockaddr *)&server, sizeof server) < 0) fail("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void watch(struct connection *c, uint32_t events, int op) {
    struct epoll_event event = {.events = events, .data.ptr = c};
    if (epoll_ctl(epoll_fd, op, c->fd, &event) < 0) fail("epoll_ctl");
}

static void *read_file(const char *path, size_t *size) {
    FILE *file = fopen(path, "rb");
    if (!file) fail(path);
    fseek(file, 0, SEEK_END);
    *size = (size_t)ftell(file);
    fseek(file, 0, SEEK_SET);
    char *data = malloc(*size ? *size : 1);
    if (!data || fread(data, 1, *size, file) != *size) fail("read requests");
    fclose(file);
    return data;
}

/* Status of a complete reply at the start of c->reply, or -1 while it is incomplete. */
static int complete_reply(struct connection *c, size_t *consumed) {
    char *end = memmem(c->reply, c->have, "\r\n\r\n", 4);
    if (!end) return -1;
    size_t head = (size_t)(end - c->reply) + 4, length = 0;
    for (char *line = memchr(c->reply, '\n', head); line && line < end;
         line = memchr(line + 1, '\n', (size_t)(end - line))) {
        if (strncasecmp(line + 1, "content-length:", 15) == 0) length = strtoul(line + 16, NULL, 10);
    }
    if (c->have < head + length) return -1;
    *consumed = head + length;
    return c->have > 12 ? atoi(c->reply + 9) : 0;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT RATE CONNECTIONS REQUESTS_FILE LATENCIES_FILE\n",
                argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a closed connection is a failed request, not our end */
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) fail("address");
    double rate = atof(argv[3]);
    int connections = atoi(argv[4]);
    size_t size;
    char *data = read_file(argv[5], &size);
    long count = 0, capacity = 1024;
    struct request *requests = malloc(capacity * sizeof *requests);
    for (size_t offset = 0; offset + 4 <= size;) {
        uint32_t length;
        memcpy(&length, data + offset, 4);
        if (count == capacity) requests = realloc(requests, (capacity *= 2) * sizeof *requests);
        requests[count++] = (struct request){data + offset + 4, length};
        offset += 4 + (size_t)length;
    }
    double *sent_at = calloc((size_t)count, sizeof *sent_at);
    double *done_at = calloc((size_t)count, sizeof *done_at);
    int *status = calloc((size_t)count, sizeof *status);
    struct connection *pool = calloc((size_t)connections, sizeof *pool);
    struct connection **idle = malloc((size_t)connections * sizeof *idle);
    int idle_count = 0;
    if (!sent_at || !done_at || !status || !pool || !idle) fail("malloc");
    epoll_fd = epoll_create1(0);
    for (int i = 0; i < connections; i++) {
        pool[i].fd = open_connection();
        pool[i].request = -1;
        watch(&pool[i], EPOLLIN, EPOLL_CTL_ADD);
        idle[idle_count++] = &pool[i];
    }

    double start = now_seconds() + 0.05;
    long assigned = 0, finished = 0;
    struct epoll_event events[256];
    while (finished < count) {
        double now = now_seconds();
        long due = now < start ? 0 : (long)((now - start) * rate) + 1;
        if (due > count) due = count;
        while (assigned < due && idle_count > 0) {
            struct connection *c = idle[--idle_count];
            c->request = assigned++;
            c->written = 0;
            c->have = 0;
            sent_at[c->request] = now_seconds();
            struct request *r = &requests[c->request];
            ssize_t n = write(c->fd, r->data, r->size);
            if (n > 0) c->written = (uint32_t)n;
            if (c->written < r->size) watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
        }
        int timeout_ms = -1; /* waiting for a reply: a free connection is what is missing */
        if (assigned == due && assigned < count) {
            double next_due = start + (double)assigned / rate;
            double wait = next_due - now_seconds();
            timeout_ms = wait <= 0 ? 0 : (int)(wait * 1e3) + 1;
        }
        int ready = epoll_wait(epoll_fd, events, 256, timeout_ms);
        if (ready < 0 && errno != EINTR) fail("epoll_wait");
        for (int e = 0; e < ready; e++) {
            struct connection *c = events[e].data.ptr;
            if (c->request < 0) { /* an idle connection the server closed: open it again */
                char byte;
                ssize_t got = read(c->fd, &byte, 1);
                if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                    close(c->fd);
                    c->fd = open_connection();
                    watch(c, EPOLLIN, EPOLL_CTL_ADD);
                }
                continue;
            }
            struct request *r = &requests[c->request];
            if ((events[e].events & EPOLLOUT) && c->written < r->size) {
                ssize_t n = write(c->fd, r->data + c->written, r->size - c->written);
                if (n > 0) c->written += (uint32_t)n;
                if (c->written == r->size) watch(c, EPOLLIN, EPOLL_CTL_MOD);
            }
            if (!(events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            ssize_t n = read(c->fd, c->reply + c->have, REPLY_BUFFER - c->have);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            size_t consumed = 0;
            int code = n > 0 ? (c->have += (size_t)n, complete_reply(c, &consumed)) : 0;
            if (code < 0 && c->have < REPLY_BUFFER) continue;
            status[c->request] = code < 0 ? 0 : code;
            done_at[c->request] = now_seconds();
            finished++;
            c->request = -1;
            if (code <= 0) { /* closed, failed or an oversized reply: start a new connection */
                close(c->fd);
                c->fd = open_connection();
                watch(c, EPOLLIN, EPOLL_CTL_ADD);
            } else {
                memmove(c->reply, c->reply + consumed, c->have - consumed);
                c->have -= consumed;
            }
            idle[idle_count++] = c;
        }
    }

    FILE *out = fopen(argv[6], "w");
    if (!out) fail(argv[6]);
    for (long k = 0; k < count; k++) {
        double due_at = start + (double)k / rate;
        fprintf(out, "%.1f %.1f %d\n", (sent_at[k] - due_at) * 1e6, (done_at[k] - due_at) * 1e6,
                status[k]);
    }
    fclose(out);
    return 0;
}
