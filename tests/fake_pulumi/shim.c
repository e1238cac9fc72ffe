/* The `pulumi` process when a warm stand-in server runs (FAKE_PULUMI_ZYGOTE, see zygote.py): it
 * hands its call to the server, forwards the signals it receives to the command, and exits as the
 * command did (dying by the same signal if the command did). Without a server it becomes the
 * stand-in itself. In C because the tests start some 2,000 of these: a Python start costs about
 * 11 ms of CPU, this about 1 ms.
 *
 * `shim --mlserve SOCKET ARGS` does the same for `mlserve ARGS` with the warm mlserve server at
 * SOCKET (tests/fake_pulumi/fixture.py `mlserve_command`); without it, `python -m mlserve ARGS`.
 *
 * Built by the fixture: cc -O -o shim shim.c -DPYTHON='"…"' -DFAKE_PULUMI='"…/fake_pulumi.py"'.
 *
 * The request (one SOCK_SEQPACKET message, with descriptors 0-2 as SCM_RIGHTS): NUL-terminated
 * records, each a tag and a value: a argv word, e environment entry, c working directory,
 * m blocked signal, i ignored signal, s the descriptor number of each passed descriptor. Then one
 * byte per signal to deliver; the server answers with the command's wait status, in decimal. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* What a `kill`, a terminal or a process-group kill may send. SIGKILL cannot be forwarded: the
 * server sees this process's end of the connection close and kills the command. */
static const int FORWARDED[] = {SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM};

static int conn = -1;
static char request[1 << 22]; /* argv and environment: far above what a shell would accept */
static size_t used;

static void put(char tag, const char *value) {
    size_t n = strlen(value);
    if (used + n + 2 > sizeof request) {
        fputs("fake pulumi: the call is too large for the stand-in server\n", stderr);
        _exit(255);
    }
    request[used++] = tag;
    memcpy(request + used, value, n + 1);
    used += n + 1;
}

static void put_number(char tag, int value) {
    char text[16];
    snprintf(text, sizeof text, "%d", value);
    put(tag, text);
}

static void forward(int signum) {
    int saved = errno;
    unsigned char byte = (unsigned char)signum;
    (void)send(conn, &byte, 1, MSG_NOSIGNAL);
    errno = saved;
}

static int ignored(int signum) {
    struct sigaction action;
    return sigaction(signum, NULL, &action) == 0 && action.sa_handler == SIG_IGN;
}

int main(int argc, char **argv) {
    int first = 1;
    const char *path = getenv("FAKE_PULUMI_ZYGOTE");
    char *fresh[argc + 3];
    int n = 0;
    fresh[n++] = PYTHON;
    if (argc > 2 && strcmp(argv[1], "--mlserve") == 0) {
        path = argv[2];
        first = 3;
        fresh[n++] = "-m";
        fresh[n++] = "mlserve";
    } else {
        fresh[n++] = FAKE_PULUMI;
    }
    for (int i = first; i < argc; i++) fresh[n++] = argv[i];
    fresh[n] = NULL;

    struct sockaddr_un address = {.sun_family = AF_UNIX};
    conn = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (path == NULL || strlen(path) >= sizeof address.sun_path || conn < 0) goto start_afresh;
    strcpy(address.sun_path, path);
    if (connect(conn, (struct sockaddr *)&address, sizeof address) != 0) goto start_afresh;

    sigset_t mask, held;
    sigprocmask(SIG_BLOCK, NULL, &mask);
    int stdio[3], passed = 0;
    for (int i = first; i < argc; i++) put('a', argv[i]);
    for (char **entry = environ; *entry != NULL; entry++) put('e', *entry);
    char cwd[8192];
    if (getcwd(cwd, sizeof cwd) == NULL) {
        perror("fake pulumi: getcwd");
        return 255;
    }
    put('c', cwd);
    for (int signum = 1; signum < NSIG; signum++) {
        if (sigismember(&mask, signum) == 1) put_number('m', signum);
        if (ignored(signum)) put_number('i', signum);
    }
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) != -1) {
            stdio[passed++] = fd;
            put_number('s', fd);
        }
    }

    /* Held until the request is out: a signal that comes earlier is forwarded right after it. */
    sigemptyset(&held);
    for (size_t i = 0; i < sizeof FORWARDED / sizeof *FORWARDED; i++) {
        if (ignored(FORWARDED[i])) continue;
        sigaddset(&held, FORWARDED[i]);
        struct sigaction action = {.sa_handler = forward, .sa_flags = SA_RESTART};
        sigemptyset(&action.sa_mask);
        sigaction(FORWARDED[i], &action, NULL);
    }
    sigprocmask(SIG_BLOCK, &held, NULL);

    struct iovec body = {.iov_base = request, .iov_len = used};
    union {
        char buffer[CMSG_SPACE(sizeof stdio)];
        struct cmsghdr align;
    } control;
    struct msghdr message = {.msg_iov = &body, .msg_iovlen = 1};
    if (passed > 0) {
        message.msg_control = control.buffer;
        message.msg_controllen = CMSG_SPACE(passed * sizeof(int));
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(passed * sizeof(int));
        memcpy(CMSG_DATA(header), stdio, passed * sizeof(int));
    }
    if (sendmsg(conn, &message, MSG_NOSIGNAL) < 0) {
        perror("fake pulumi: sending the call to the stand-in server");
        return 255;
    }
    sigprocmask(SIG_SETMASK, &mask, NULL);

    char reply[64];
    ssize_t got;
    do {
        got = recv(conn, reply, sizeof reply - 1, 0);
    } while (got < 0 && errno == EINTR);
    if (got <= 0) {
        fputs("fake pulumi: the stand-in server went away\n", stderr);
        return 255;
    }
    reply[got] = '\0';
    int status = atoi(reply);
    if (WIFSIGNALED(status)) {
        int signum = WTERMSIG(status);
        signal(signum, SIG_DFL); /* fails, harmlessly, for SIGKILL */
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, signum);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        kill(getpid(), signum);
        return 128 + signum; /* a signal whose default is to continue */
    }
    return WEXITSTATUS(status);

start_afresh:
    execv(PYTHON, fresh);
    perror("fake pulumi: " PYTHON);
    return 127;
}
