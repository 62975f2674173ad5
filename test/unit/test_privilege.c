/*
 * Unit tests for the seccomp allowlists and privilege setup (src/vmm/
 * privilege.c), without KVM: each case forks a child that confines itself as
 * one thread kind and then makes an allowed or a forbidden call; forbidden
 * calls must kill the child with SIGSYS after a message naming the call.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <seccomp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/kvm.h>

#include <cmocka.h>

#include "vmm/privilege.h"

enum action { ACT_WRITE, ACT_GETPPID, ACT_FORK, ACT_THREAD, ACT_MMAP_EXEC, ACT_IOCTL_KVM,
	      ACT_IOCTL_SOCK, ACT_FLOCK, ACT_OPEN_RO, ACT_OPEN_WR, ACT_SOCKET_PACKET, ACT_SOCKET_INET,
	      ACT_NONE };

static void *thread_fn(void *arg)
{
	return arg;
}

static int act(enum action a)
{
	pthread_t t;
	void *p;
	int fd;

	switch (a) {
	case ACT_WRITE:
		return write(STDOUT_FILENO, "", 0) == 0 ? 0 : 1;
	case ACT_GETPPID:
		syscall(SYS_getppid);
		return 0;
	case ACT_FORK: {
		pid_t pid = fork();

		if (pid == 0)
			_exit(0);
		return pid > 0 ? 0 : 1;
	}
	case ACT_THREAD:
		if (pthread_create(&t, NULL, thread_fn, NULL))
			return 1;
		return pthread_join(t, NULL) ? 1 : 0;
	case ACT_MMAP_EXEC:
		p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		return p == MAP_FAILED ? 1 : 0;
	case ACT_IOCTL_KVM:
		/* Allowed; fails with EBADF on a bad fd. */
		return ioctl(-1, KVM_RUN, 0) < 0 && errno == EBADF ? 0 : 1;
	case ACT_IOCTL_SOCK:
		return ioctl(-1, 0xab00 /* NBD_SET_SOCK: no kind may */, 0) < 0 ? 0 : 1;
	case ACT_FLOCK:     /* the disk lock handoff at the switch */
		return flock(-1, LOCK_UN) < 0 && errno == EBADF ? 0 : 1;
	case ACT_OPEN_RO:
		fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		return fd >= 0 ? 0 : 1;
	case ACT_OPEN_WR:
		fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
		return fd >= 0 ? 0 : 1;
	case ACT_SOCKET_PACKET:
		socket(AF_PACKET, SOCK_RAW, 0);
		return 0;
	case ACT_SOCKET_INET:
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		return fd >= 0 ? 0 : 1;
	case ACT_NONE:
		return 0;
	}
	return 1;
}

/* Forks a child that configures MODE, confines itself as KIND, runs A; returns
 * the wait status; the child's stderr is in MSG. */
static int run_child(enum seccomp_mode mode, enum thread_kind kind, enum action a, char *msg,
		     size_t len)
{
	int pfd[2], status;
	pid_t pid;
	ssize_t n;

	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct vmm_config cfg = { .seccomp = mode };

		dup2(pfd[1], STDERR_FILENO);
		close(pfd[0]);
		if (privilege_configure(&cfg) || privilege_seccomp(kind))
			_exit(100);
		_exit(act(a));
	}
	close(pfd[1]);
	n = read(pfd[0], msg, len - 1);
	msg[n > 0 ? n : 0] = 0;
	close(pfd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

#define assert_allowed(kind, a)                                                        \
	do {                                                                           \
		char m_[512];                                                          \
		int st_ = run_child(SECCOMP_ON, (kind), (a), m_, sizeof(m_));          \
		if (!WIFEXITED(st_) || WEXITSTATUS(st_) != 0)                          \
			fail_msg("%s: action %d not allowed (status 0x%x): %s",       \
				 privilege_kind_name(kind), (a), st_, m_);              \
	} while (0)

#define assert_killed(kind, a, name)                                                   \
	do {                                                                           \
		char m_[512];                                                          \
		int st_ = run_child(SECCOMP_ON, (kind), (a), m_, sizeof(m_));          \
		if (!WIFSIGNALED(st_) || WTERMSIG(st_) != SIGSYS)                      \
			fail_msg("%s: action %d not killed by SIGSYS (status 0x%x)",  \
				 privilege_kind_name(kind), (a), st_);                  \
		if (*(name) && !strstr(m_, "forbidden system call " name))            \
			fail_msg("message '%s' does not name %s", m_, name);           \
	} while (0)

static void test_filters_build(void **state)
{
	for (int k = 0; k < THREAD_KINDS; k++) {
		for (int mode = SECCOMP_ON; mode <= SECCOMP_LOG; mode += SECCOMP_LOG) {
			void *ctx = privilege_filter(k, mode);

			assert_non_null(ctx);
			seccomp_release(ctx);
		}
	}
	assert_string_equal(privilege_kind_name(THREAD_VCPU), "vcpu");
	assert_string_equal(privilege_kind_name(THREAD_KINDS), "unknown");
}

static void test_everyone_basics(void **state)
{
	for (int k = 0; k < THREAD_KINDS; k++) {
		assert_allowed(k, ACT_WRITE);
		assert_allowed(k, ACT_IOCTL_KVM);
		assert_killed(k, ACT_GETPPID, "getppid");
		assert_killed(k, ACT_IOCTL_SOCK, "ioctl");
	}
}

static void test_vcpu(void **state)
{
	assert_killed(THREAD_VCPU, ACT_MMAP_EXEC, "mmap");
	assert_killed(THREAD_VCPU, ACT_OPEN_RO, "openat");
	assert_killed(THREAD_VCPU, ACT_SOCKET_INET, "socket");
	/* glibc blocks signals around clone3: the kernel then kills without
	 * running the reporter, so there is no message to check. */
	assert_killed(THREAD_VCPU, ACT_THREAD, "");
	assert_killed(THREAD_IO, ACT_OPEN_RO, "openat");
	assert_killed(THREAD_VCPU, ACT_FLOCK, "flock");
}

static void test_migration(void **state)
{
	assert_allowed(THREAD_MIGRATION, ACT_SOCKET_INET);
	assert_allowed(THREAD_MIGRATION, ACT_OPEN_RO);
	assert_allowed(THREAD_MIGRATION, ACT_THREAD);
	assert_allowed(THREAD_MIGRATION, ACT_FLOCK);
	assert_killed(THREAD_MIGRATION, ACT_OPEN_WR, "openat");
	assert_killed(THREAD_MIGRATION, ACT_SOCKET_PACKET, "socket");
	assert_killed(THREAD_MIGRATION, ACT_FORK, "clone");
}

static void test_control(void **state)
{
	assert_allowed(THREAD_CONTROL, ACT_OPEN_WR);
	assert_allowed(THREAD_CONTROL, ACT_FLOCK);
	assert_allowed(THREAD_CONTROL, ACT_THREAD);
	assert_allowed(THREAD_CONTROL, ACT_MMAP_EXEC);
	assert_killed(THREAD_CONTROL, ACT_FORK, "clone");
	assert_killed(THREAD_CONTROL, ACT_SOCKET_PACKET, "socket");
}

static void test_off_and_hook(void **state)
{
	char m[512];
	int st = run_child(SECCOMP_OFF, THREAD_VCPU, ACT_GETPPID, m, sizeof(m));

	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	setenv("VMM_TEST_FORBIDDEN_SYSCALL", "control", 1);
	st = run_child(SECCOMP_ON, THREAD_VCPU, ACT_NONE, m, sizeof(m));
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);   /* not this kind */
	st = run_child(SECCOMP_ON, THREAD_CONTROL, ACT_NONE, m, sizeof(m));
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
	assert_non_null(strstr(m, "the control thread made the forbidden system call getppid"));
	unsetenv("VMM_TEST_FORBIDDEN_SYSCALL");
}

static void test_bad_user(void **state)
{
	struct vmm_config cfg = { .seccomp = SECCOMP_OFF, .user = "no-such-user-vmm-test" };

	assert_int_equal(privilege_configure(&cfg), -ENOENT);
	cfg.user = "root";
	assert_int_equal(privilege_configure(&cfg), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_filters_build),
		cmocka_unit_test(test_everyone_basics),
		cmocka_unit_test(test_vcpu),
		cmocka_unit_test(test_migration),
		cmocka_unit_test(test_control),
		cmocka_unit_test(test_off_and_hook),
		cmocka_unit_test(test_bad_user),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
