/*
 * baton-spawner: starts shell jobs for Baton's job supervisor (a Node process) and relays
 * their output and exit status back to it.
 *
 * Why it exists: Node's spawn forks the whole Node process and waits for the child's exec,
 * so starting a job costs about a millisecond of the supervisor's time and grows with its
 * memory. Forking this small process costs a fraction of that.
 *
 * It talks over its stdin (commands) and stdout (events), in frames: a 4-byte big-endian
 * length of what follows, a type byte, then the body. Numbers in bodies are 4-byte
 * big-endian. Jobs are named by a number the supervisor chooses.
 *
 * Commands:
 *   SPAWN  no, argc, envc, then NUL-terminated strings: cwd, file, argv[argc], env[envc]
 *   PAUSE  no, stream  stop reading one of the job's pipes (backpressure)
 *   RESUME no, stream  read it again
 *   CLOSE  no, stream  close it (the supervisor gave up waiting for its end)
 * (stream: 1 byte, 0 for stdout and 1 for stderr)
 * Events:
 *   READY              sent once at start: the spawner runs here
 *   SPAWNED no, pid, start (8 bytes)  the job runs, the leader of a new session and
 *                      process group; start: its start time in clock ticks after boot
 *                      (/proc/PID/stat, 0 if unknown), which with the pid identifies it
 *   FAILED  no, errno  it could not be started (no such program, bad working directory...)
 *   OUTPUT  no, stream, bytes
 *   EOF     no, stream every byte of that stream was sent before
 *   EXITED  no, code, signal  (code -1 when a signal ended it; signal 0 when none did)
 *
 * A leader is reaped as soon as it exits, as Node reaps its children. The supervisor then
 * signals its group only to stop what the job left behind: while any of that lives, the
 * group id cannot be given to another process.
 *
 * It exits when its stdin closes (the supervisor is gone). It ignores SIGINT and SIGTERM:
 * the supervisor decides when jobs stop, and needs this process until they have.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

enum { CMD_SPAWN = 1, CMD_PAUSE = 2, CMD_RESUME = 3, CMD_CLOSE = 4 };
enum { EV_SPAWNED = 1, EV_FAILED = 2, EV_OUTPUT = 3, EV_EOF = 4, EV_EXITED = 5, EV_READY = 6 };

#define READ_CHUNK 65536

struct job {
  uint32_t no;
  pid_t pid;
  int fd[2]; /* read ends of stdout and stderr, -1 once closed */
  int paused[2];
  int exited;
};

static struct job *jobs;
static size_t job_count, job_capacity;

static void die(const char *what) {
  fprintf(stderr, "baton-spawner: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void put_u32(unsigned char *at, uint32_t value) {
  at[0] = (unsigned char)(value >> 24);
  at[1] = (unsigned char)(value >> 16);
  at[2] = (unsigned char)(value >> 8);
  at[3] = (unsigned char)value;
}

static uint32_t get_u32(const unsigned char *at) {
  return ((uint32_t)at[0] << 24) | ((uint32_t)at[1] << 16) | ((uint32_t)at[2] << 8) | at[3];
}

/* Writes every byte or exits: a supervisor that stopped reading is gone. */
static void write_all(struct iovec *parts, int count) {
  while (count > 0) {
    ssize_t written = writev(STDOUT_FILENO, parts, count);
    if (written < 0) {
      if (errno == EINTR) continue;
      exit(0);
    }
    while (count > 0 && (size_t)written >= parts->iov_len) {
      written -= (ssize_t)parts->iov_len;
      parts++;
      count--;
    }
    if (count > 0) {
      parts->iov_base = (char *)parts->iov_base + written;
      parts->iov_len -= (size_t)written;
    }
  }
}

/* An event of up to four numbers. */
static void send_numbers(int type, int count, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  unsigned char frame[5 + 16];
  uint32_t values[4] = {a, b, c, d};
  put_u32(frame, (uint32_t)(1 + 4 * count));
  frame[4] = (unsigned char)type;
  for (int i = 0; i < count; i++) put_u32(frame + 5 + 4 * i, values[i]);
  struct iovec part = {frame, (size_t)(5 + 4 * count)};
  write_all(&part, 1);
}

static void send_stream(int type, uint32_t no, int stream, const void *data, size_t length) {
  unsigned char header[10];
  put_u32(header, (uint32_t)(6 + length));
  header[4] = (unsigned char)type;
  put_u32(header + 5, no);
  header[9] = (unsigned char)stream;
  struct iovec parts[2] = {{header, sizeof header}, {(void *)data, length}};
  write_all(parts, length > 0 ? 2 : 1);
}

static struct job *find_job(uint32_t no) {
  for (size_t i = 0; i < job_count; i++) {
    if (jobs[i].no == no) return &jobs[i];
  }
  return NULL;
}

/* A job is forgotten once its leader has exited and both pipes are closed. */
static void forget_finished(void) {
  size_t kept = 0;
  for (size_t i = 0; i < job_count; i++) {
    struct job *job = &jobs[i];
    if (job->exited && job->fd[0] < 0 && job->fd[1] < 0) continue;
    jobs[kept++] = *job;
  }
  job_count = kept;
}

static void close_pipe(struct job *job, int stream) {
  if (job->fd[stream] < 0) return;
  close(job->fd[stream]);
  job->fd[stream] = -1;
}

/* The value of PATH in a job's environment, which its program is looked up on. */
static const char *path_of(char **env) {
  for (char **entry = env; *entry; entry++) {
    if (strncmp(*entry, "PATH=", 5) == 0) return *entry + 5;
  }
  return "/usr/bin:/bin";
}

/*
 * Where `file` may be, in the order execvp would try: itself when it names a path, else
 * each entry of the job's own PATH (relative entries count from the job's directory, since
 * the child looks after its chdir). NULL-terminated; free the array and each string.
 */
static char **candidates_of(const char *file, char **env) {
  const char *path = strchr(file, '/') ? NULL : path_of(env);
  size_t count = 1;
  for (const char *at = path; at && *at; at++) count += *at == ':';
  char **list = calloc(count + 1, sizeof *list);
  if (!list) die("calloc");
  if (!path) {
    list[0] = strdup(file);
    if (!list[0]) die("strdup");
    return list;
  }
  size_t index = 0;
  for (const char *dir = path;; dir++) {
    const char *end = strchrnul(dir, ':');
    int length = (int)(end - dir);
    /* An empty entry is the current directory. */
    if (asprintf(&list[index++], "%.*s%s%s", length, dir, length ? "/" : "", file) < 0) {
      die("asprintf");
    }
    if (*end == '\0') break;
    dir = end;
  }
  return list;
}

/*
 * In the forked child: the state of a fresh process (a session of its own, no blocked or
 * ignored signals, stdin on /dev/null, output on the pipes, no other descriptor), then the
 * program. Returns only on failure, with the errno to report.
 */
static int exec_child(const char *cwd, char **candidates, char **argv, char **shell_argv,
                      char **env, int out, int err) {
  sigset_t none;
  sigemptyset(&none);
  for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
  sigprocmask(SIG_SETMASK, &none, NULL);
  if (setsid() < 0) return errno;
  if (chdir(cwd) < 0) return errno;
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0) return errno;
  if (dup2(null, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 ||
      dup2(err, STDERR_FILENO) < 0) {
    return errno;
  }
  /* Whatever else is open (inherited from whoever started Baton) is not the job's. */
  syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  int failure = ENOENT;
  for (char **candidate = candidates; *candidate; candidate++) {
    execve(*candidate, argv, env);
    if (errno == ENOEXEC) {
      /* An executable without a #! line: a shell script, run by sh as execvp would. */
      shell_argv[0] = "sh";
      shell_argv[1] = *candidate;
      for (int i = 1; argv[i]; i++) shell_argv[i + 1] = argv[i];
      execve("/bin/sh", shell_argv, env);
      return errno;
    }
    if (errno == EACCES) failure = EACCES;
    else if (errno != ENOENT && errno != ENOTDIR) return errno;
  }
  return failure;
}

/*
 * Forks and execs the job. The child reports a failure to exec through a pipe that the
 * exec closes, so the answer is known before this returns: 0 with the pid, or the errno.
 * Forking this small, single-threaded process costs about what posix_spawn does, and
 * leaves the child's signal state entirely in its hands (glibc's posix_spawn leaves its
 * two internal signals ignored in the program it starts).
 */
static int fork_exec(pid_t *pid, const char *cwd, const char *file, char **argv, char **env,
                     int out, int err) {
  char **candidates = candidates_of(file, env);
  size_t argc = 0;
  while (argv[argc]) argc++;
  /* For a script without #!: sh, the script, its arguments, NULL. */
  char **shell_argv = calloc(argc + 2, sizeof *shell_argv);
  if (!shell_argv) die("calloc");
  int report[2];
  int failure = 0;
  if (pipe2(report, O_CLOEXEC) < 0) {
    failure = errno;
  } else {
    *pid = fork();
    if (*pid == 0) {
      failure = exec_child(cwd, candidates, argv, shell_argv, env, out, err);
      ssize_t ignored = write(report[1], &failure, sizeof failure);
      (void)ignored;
      _exit(127);
    }
    if (*pid < 0) failure = errno;
    close(report[1]);
    if (*pid > 0) {
      ssize_t got;
      while ((got = read(report[0], &failure, sizeof failure)) < 0 && errno == EINTR) {
      }
      if (got != (ssize_t)sizeof failure) {
        failure = 0;
      } else {
        /* Never a job: reap it here, before the loop could look for its job. */
        while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR) {
        }
      }
    }
    close(report[0]);
  }
  for (char **candidate = candidates; *candidate; candidate++) free(*candidate);
  free(candidates);
  free(shell_argv);
  return failure;
}

/* Field 22 of /proc/PID/stat (after the name, which may hold anything but ends at the last
 * ")"), or 0 when it cannot be read. */
static uint64_t start_time_of(pid_t pid) {
  char path[64], text[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t got = read(fd, text, sizeof text - 1);
  close(fd);
  if (got <= 0) return 0;
  text[got] = '\0';
  char *at = strrchr(text, ')');
  /* After ") ": state is field 3; skip to field 22. */
  for (int field = 2; at && field < 22; field++) at = strchr(at + 1, ' ');
  return at ? strtoull(at + 1, NULL, 10) : 0;
}

/* Parses a SPAWN body and starts the job; answers SPAWNED or FAILED. */
static void spawn_job(const unsigned char *body, size_t length) {
  if (length < 12) {
    fprintf(stderr, "baton-spawner: SPAWN frame too short\n");
    exit(2);
  }
  uint32_t no = get_u32(body), argc = get_u32(body + 4), envc = get_u32(body + 8);
  size_t strings = 2 + (size_t)argc + (size_t)envc;
  if (argc < 1 || strings > length) {
    fprintf(stderr, "baton-spawner: SPAWN frame with bad counts\n");
    exit(2);
  }
  char **fields = calloc(strings + 2, sizeof(char *)); /* argv and env each end in NULL */
  if (!fields) die("calloc");
  const char *at = (const char *)body + 12, *end = (const char *)body + length;
  for (size_t i = 0; i < strings; i++) {
    const char *nul = memchr(at, '\0', (size_t)(end - at));
    if (!nul) {
      fprintf(stderr, "baton-spawner: SPAWN frame with an unterminated string\n");
      exit(2);
    }
    fields[i < 2 + argc ? i : i + 1] = (char *)at;
    at = nul + 1;
  }
  const char *cwd = fields[0], *file = fields[1];
  char **argv = fields + 2, **env = fields + 3 + argc;

  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) < 0) {
    int failure = errno;
    free(fields);
    send_numbers(EV_FAILED, 2, no, (uint32_t)failure, 0, 0);
    return;
  }
  if (pipe2(err, O_CLOEXEC) < 0) {
    int failure = errno;
    close(out[0]);
    close(out[1]);
    free(fields);
    send_numbers(EV_FAILED, 2, no, (uint32_t)failure, 0, 0);
    return;
  }
  pid_t pid = 0;
  int failure = fork_exec(&pid, cwd, file, argv, env, out[1], err[1]);
  free(fields);
  close(out[1]);
  close(err[1]);
  if (failure != 0) {
    close(out[0]);
    close(err[0]);
    send_numbers(EV_FAILED, 2, no, (uint32_t)failure, 0, 0);
    return;
  }
  if (job_count == job_capacity) {
    job_capacity = job_capacity ? job_capacity * 2 : 64;
    jobs = realloc(jobs, job_capacity * sizeof *jobs);
    if (!jobs) die("realloc");
  }
  jobs[job_count++] = (struct job){no, pid, {out[0], err[0]}, {0, 0}, 0};
  /* Read now: only this process reaps it, so it is there, at worst a zombie. */
  uint64_t start = start_time_of(pid);
  send_numbers(EV_SPAWNED, 4, no, (uint32_t)pid, (uint32_t)(start >> 32), (uint32_t)start);
}

static void run_command(int type, const unsigned char *body, size_t length) {
  if (type == CMD_SPAWN) {
    spawn_job(body, length);
    return;
  }
  if (length < 4) {
    fprintf(stderr, "baton-spawner: command %d too short\n", type);
    exit(2);
  }
  struct job *job = find_job(get_u32(body));
  if (!job) return;
  int stream = length > 4 && body[4] == 1 ? 1 : 0;
  switch (type) {
    case CMD_PAUSE:
      job->paused[stream] = 1;
      break;
    case CMD_RESUME:
      job->paused[stream] = 0;
      break;
    case CMD_CLOSE:
      close_pipe(job, stream);
      break;
    default:
      fprintf(stderr, "baton-spawner: unknown command %d\n", type);
      exit(2);
  }
  forget_finished();
}

/* Reaps the leaders that have exited and reports them. */
static void report_exits(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (size_t i = 0; i < job_count; i++) {
      struct job *job = &jobs[i];
      if (job->pid != pid || job->exited) continue;
      job->exited = 1;
      int exited = WIFEXITED(status);
      send_numbers(EV_EXITED, 3, job->no, exited ? (uint32_t)WEXITSTATUS(status) : UINT32_MAX,
                   exited ? 0 : (uint32_t)WTERMSIG(status), 0);
      break;
    }
  }
}

/* Reads what one pipe holds; EOF closes it. */
static void relay(struct job *job, int stream) {
  static char buffer[READ_CHUNK];
  ssize_t got = read(job->fd[stream], buffer, sizeof buffer);
  if (got < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (got > 0) {
    send_stream(EV_OUTPUT, job->no, stream, buffer, (size_t)got);
    return;
  }
  close_pipe(job, stream);
  send_stream(EV_EOF, job->no, stream, NULL, 0);
}

int main(void) {
  sigset_t child;
  sigemptyset(&child);
  sigaddset(&child, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &child, NULL) < 0) die("sigprocmask");
  int child_fd = signalfd(-1, &child, SFD_CLOEXEC | SFD_NONBLOCK);
  if (child_fd < 0) die("signalfd");
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  fcntl(STDIN_FILENO, F_SETFD, FD_CLOEXEC);
  fcntl(STDOUT_FILENO, F_SETFD, FD_CLOEXEC);
  send_numbers(EV_READY, 0, 0, 0, 0, 0);

  unsigned char *input = NULL;
  size_t input_length = 0, input_capacity = 0;
  struct pollfd *polls = NULL;
  size_t polls_capacity = 0;
  /* Which job and stream each pipe's poll entry belongs to. */
  uint32_t *poll_job = NULL;

  for (;;) {
    size_t wanted = 2 + 2 * job_count;
    if (wanted > polls_capacity) {
      polls_capacity = wanted * 2;
      polls = realloc(polls, polls_capacity * sizeof *polls);
      poll_job = realloc(poll_job, polls_capacity * sizeof *poll_job);
      if (!polls || !poll_job) die("realloc");
    }
    polls[0] = (struct pollfd){STDIN_FILENO, POLLIN, 0};
    polls[1] = (struct pollfd){child_fd, POLLIN, 0};
    size_t count = 2;
    for (size_t i = 0; i < job_count; i++) {
      for (int stream = 0; stream < 2; stream++) {
        if (jobs[i].fd[stream] < 0 || jobs[i].paused[stream]) continue;
        poll_job[count] = (uint32_t)(i * 2 + (size_t)stream);
        polls[count++] = (struct pollfd){jobs[i].fd[stream], POLLIN, 0};
      }
    }
    if (poll(polls, count, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    for (size_t k = 2; k < count; k++) {
      if (polls[k].revents == 0) continue;
      relay(&jobs[poll_job[k] / 2], (int)(poll_job[k] % 2));
    }
    if (polls[1].revents) {
      struct signalfd_siginfo drained[16];
      while (read(child_fd, drained, sizeof drained) > 0) {
      }
      report_exits();
    }
    forget_finished();
    if (polls[0].revents) {
      if (input_capacity - input_length < READ_CHUNK) {
        input_capacity = input_length + READ_CHUNK * 2;
        input = realloc(input, input_capacity);
        if (!input) die("realloc");
      }
      ssize_t got = read(STDIN_FILENO, input + input_length, input_capacity - input_length);
      if (got == 0) return 0; /* the supervisor is gone */
      if (got < 0) {
        if (errno == EINTR) continue;
        die("read");
      }
      input_length += (size_t)got;
      size_t used = 0;
      while (input_length - used >= 5) {
        uint32_t frame_length = get_u32(input + used);
        if (frame_length < 1) {
          fprintf(stderr, "baton-spawner: empty frame\n");
          exit(2);
        }
        if (input_length - used - 4 < frame_length) break;
        run_command(input[used + 4], input + used + 5, frame_length - 1);
        used += 4 + frame_length;
      }
      memmove(input, input + used, input_length - used);
      input_length -= used;
    }
  }
}
