/* The sendmail benchmark's load generator: starts N sendmail processes, P at
 * once, each with `-f sender@bench.test rcptI@bench.test` appended to the
 * command (I = i % 50) and the message file on its stdin through a pipe, as a
 * cron job or a PHP script would. posix_spawn (vfork-style in glibc) keeps the
 * driver's own cost per process to the minimum, the same for both MTAs.
 *
 *   sendmail-driver N P MESSAGE_FILE COMMAND [ARGS...]
 *
 * Exits 0 once every process exited 0; otherwise prints the first failure and
 * exits 1 after reaping what still runs. stdout of the children goes to
 * /dev/null, stderr is inherited. Compiled by sendmail-throughput.py with cc. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

static char* message;
static size_t message_len;

static int start(char** argv, int argc_cmd, long i) {
  static char rcpt[64];
  snprintf(rcpt, sizeof rcpt, "rcpt%ld@bench.test", i % 50);
  argv[argc_cmd] = "-f";
  argv[argc_cmd + 1] = "sender@bench.test";
  argv[argc_cmd + 2] = rcpt;
  argv[argc_cmd + 3] = NULL;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    perror("pipe2");
    return -1;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[0]);
  if (rc != 0) {
    fprintf(stderr, "sendmail-driver: %s: %s\n", argv[0], strerror(rc));
    close(fds[1]);
    return -1;
  }
  /* A message larger than the pipe would block here until the child reads it:
   * fine, the child reads all of its stdin first. */
  size_t off = 0;
  while (off < message_len) {
    ssize_t n = write(fds[1], message + off, message_len - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("sendmail-driver: write");
      break;
    }
    off += (size_t)n;
  }
  close(fds[1]);
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: sendmail-driver N P MESSAGE_FILE COMMAND [ARGS...]\n");
    return 2;
  }
  long n = atol(argv[1]), parallel = atol(argv[2]);
  if (n < 0 || parallel < 1) return 2;
  FILE* f = fopen(argv[3], "rb");
  if (!f) {
    perror(argv[3]);
    return 2;
  }
  struct stat st;
  fstat(fileno(f), &st);
  message_len = (size_t)st.st_size;
  message = malloc(message_len + 1);
  if (fread(message, 1, message_len, f) != message_len) {
    perror(argv[3]);
    return 2;
  }
  fclose(f);
  int argc_cmd = argc - 4;
  char** cmd = calloc((size_t)argc_cmd + 4, sizeof(char*));
  for (int k = 0; k < argc_cmd; ++k) cmd[k] = argv[4 + k];

  long started = 0, running = 0;
  int failed = 0;
  while (running > 0 || (started < n && !failed)) {
    while (running < parallel && started < n && !failed) {
      if (start(cmd, argc_cmd, started) != 0) {
        failed = 1;
        break;
      }
      ++started;
      ++running;
    }
    if (running == 0) break;
    int status;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      perror("waitpid");
      return 1;
    }
    --running;
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) && !failed) {
      fprintf(stderr, "sendmail-driver: %s exited with status %d\n", cmd[0],
              WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
      failed = 1;
    }
  }
  return failed ? 1 : 0;
}
