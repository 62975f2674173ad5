/* Capabilities (libcap-ng), the --user switch, and per-thread-kind seccomp
 * allowlists (libseccomp) for `vmm run`. Default action: SIGSYS trap whose
 * handler prints the call's name and re-raises SIGSYS with the default
 * disposition, so the whole process dies by SIGSYS either way. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <pwd.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cap-ng.h>
#include "vmm/privilege.h"

#define PRIV_MAX_NR 512

static struct {
	bool configured;
	enum seccomp_mode mode;
	bool switch_user;
	uid_t uid;
	gid_t gid;
	char user[64];
	const char *qmp;
	int test_kind;              /* VMM_TEST_FORBIDDEN_SYSCALL's kind, or -1 */
	char *names[PRIV_MAX_NR];   /* syscall names for the SIGSYS message */
} priv = { .test_kind = -1 };

static __thread int priv_kind = THREAD_CONTROL;

static const char *const kind_names[THREAD_KINDS] = { "control", "vcpu", "io", "migration" };

/* Every thread: memory, time, signals, futexes, fd I/O on fds it was given,
 * eventfd/epoll/io_uring completion, block I/O, exit. */
static const char *const sys_base[] = {
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
	"preadv2", "pwritev2", "close", "futex", "munmap", "madvise", "mremap", "brk",
	"clock_gettime", "clock_getres", "gettimeofday", "time", "clock_nanosleep", "nanosleep",
	"rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "sigaltstack", "tgkill", "tkill",
	"gettid", "getpid", "exit", "exit_group", "sched_yield", "restart_syscall",
	"epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "poll", "ppoll", "eventfd2",
	"getrandom", "io_uring_enter", "io_uring_register", "fcntl", "lseek", "fstat",
	"newfstatat", "statx", "fsync", "fdatasync", "fallocate", "sendto", "recvfrom",
	"sendmsg", "recvmsg", "set_robust_list", "rseq", "sched_getaffinity", "getuid",
	"geteuid", "getgid", "getegid", "membarrier",
};

/* Migration threads: sockets, name resolution (read-only opens, netlink);
 * the disk image locks handed over at the switch (flock); and what a thread
 * they start needs to confine itself (prctl, cap*, seccomp: the destination
 * starts the vCPUs). */
static const char *const sys_migration[] = {
	"connect", "bind", "listen", "accept4", "accept", "getsockopt", "setsockopt",
	"getsockname", "getpeername", "shutdown", "sendmmsg", "recvmmsg", "io_uring_setup",
	"uname", "epoll_create1", "timerfd_create", "timerfd_settime", "pipe2", "dup", "dup3",
	"prctl", "capget", "capset", "seccomp", "flock",
};

/* The control thread: QMP (sockets, files for pmemsave, socket removal),
 * starting migration threads, teardown. */
static const char *const sys_control[] = {
	"unlink", "unlinkat", "signalfd4", "flock", "readlink",
	"readlinkat", "faccessat", "faccessat2", "access", "getdents64", "sysinfo", "getcwd",
	"fchmod", "chmod", "fchmodat", "umask", "getrusage", "prlimit64", "mkdir", "mkdirat",
	"rename", "renameat", "renameat2", "wait4",
};

const char *privilege_kind_name(enum thread_kind kind)
{
	return (unsigned)kind < THREAD_KINDS ? kind_names[kind] : "unknown";
}

static int priv_add_list(scmp_filter_ctx ctx, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int nr = seccomp_syscall_resolve_name(list[i]);
		int ret;

		if (nr == __NR_SCMP_ERROR)
			continue;   /* unknown to this libseccomp: not callable anyway */
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (ret)
			return ret;
	}
	return 0;
}

/* ioctl: KVM (type 0xAE) and the 'T' group (terminal, FIONBIO, TUN); the
 * control thread also block-device queries (0x12) and socket ioctls. */
static int priv_add_ioctl(scmp_filter_ctx ctx, enum thread_kind kind)
{
	static const unsigned types[] = { 0xAE, 0x54, 0x12, 0x89 };
	size_t n = kind == THREAD_CONTROL ? ARRAY_SIZE(types) : 2;
	int ret = 0;

	for (size_t i = 0; i < n && !ret; i++)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				       SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, types[i] << 8));
	return ret;
}

/* mmap/mprotect: never executable in vCPU and I/O threads. */
static int priv_add_memory(scmp_filter_ctx ctx, enum thread_kind kind)
{
	if (kind == THREAD_CONTROL || kind == THREAD_MIGRATION)
		return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 0) ?:
		       seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 0);
	return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)) ?:
	       seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
}

/* Threads but never processes: clone only with CLONE_THREAD; clone3 (whose
 * flags a filter cannot see) fails with ENOSYS so glibc falls back to clone. */
static int priv_add_threads(scmp_filter_ctx ctx)
{
	return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)) ?:
	       seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
}

static int priv_add_sockets(scmp_filter_ctx ctx)
{
	static const int domains[] = { AF_UNIX, AF_INET, AF_INET6, AF_NETLINK };
	int ret = 0;

	for (size_t i = 0; i < ARRAY_SIZE(domains) && !ret; i++)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
				       SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)domains[i]));
	return ret;
}

/* Files: the control thread opens anything (pmemsave, QMP); migration
 * threads only read (name resolution reads /etc/hosts and friends). */
static int priv_add_open(scmp_filter_ctx ctx, enum thread_kind kind)
{
	if (kind == THREAD_CONTROL)
		return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 0);
	return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
				SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC, 0));
}

/* glibc's setuid family runs in every thread (SIGSETXID), so threads that
 * are filtered before the control thread switches user must allow exactly
 * that switch. */
static int priv_add_setid(scmp_filter_ctx ctx)
{
	if (!priv.switch_user)
		return 0;
	return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(setresuid), 3,
				SCMP_A0(SCMP_CMP_EQ, priv.uid), SCMP_A1(SCMP_CMP_EQ, priv.uid),
				SCMP_A2(SCMP_CMP_EQ, priv.uid)) ?:
	       seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(setresgid), 3,
				SCMP_A0(SCMP_CMP_EQ, priv.gid), SCMP_A1(SCMP_CMP_EQ, priv.gid),
				SCMP_A2(SCMP_CMP_EQ, priv.gid)) ?:
	       seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(setgroups), 1,
				SCMP_A0(SCMP_CMP_EQ, 0));
}

void *privilege_filter(enum thread_kind kind, int mode)
{
	scmp_filter_ctx ctx = seccomp_init(mode == SECCOMP_LOG ? SCMP_ACT_LOG : SCMP_ACT_TRAP);
	bool creates_threads = kind == THREAD_CONTROL || kind == THREAD_MIGRATION;
	int ret;

	if (!ctx)
		return NULL;
	ret = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) ?:
	      priv_add_list(ctx, sys_base, ARRAY_SIZE(sys_base)) ?:
	      priv_add_ioctl(ctx, kind) ?: priv_add_memory(ctx, kind) ?: priv_add_setid(ctx);
	if (!ret && creates_threads)
		ret = priv_add_threads(ctx) ?: priv_add_sockets(ctx) ?: priv_add_open(ctx, kind) ?:
		      priv_add_list(ctx, sys_migration, ARRAY_SIZE(sys_migration));
	if (!ret && kind == THREAD_CONTROL)
		ret = priv_add_list(ctx, sys_control, ARRAY_SIZE(sys_control));
	if (ret) {
		seccomp_release(ctx);
		return NULL;
	}
	return ctx;
}

/* Async-signal-safe: only write, sigaction, sigprocmask and tgkill. */
static void priv_sigsys(int sig, siginfo_t *si, void *uc)
{
	char msg[256];
	int nr = si->si_syscall;
	const char *name = nr >= 0 && nr < PRIV_MAX_NR && priv.names[nr] ? priv.names[nr] : "?";
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t set;
	int n = snprintf(msg, sizeof(msg), "vmm: fatal: seccomp: the %s thread made the "
			 "forbidden system call %s (%d); killing the process (--seccomp log "
			 "lists such calls instead)\n", privilege_kind_name(priv_kind), name, nr);

	(void)uc;
	if (n > 0 && write(STDERR_FILENO, msg, (size_t)n) < 0) { /* nothing to do */ }
	sigaction(SIGSYS, &dfl, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGSYS);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), sig);
	syscall(SYS_exit_group, 128 + SIGSYS);
}

static int priv_user(const char *name)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int ret = getpwnam_r(name, &pw, buf, sizeof(buf), &res);

	if (!res) {
		vmm_err("--user: no user '%s'%s%s", name, ret ? ": " : "", ret ? strerror(ret) : "");
		return ret ? -ret : -ENOENT;
	}
	if (pw.pw_uid == 0) {
		vmm_err("--user: '%s' is root; give an unprivileged user", name);
		return -EINVAL;
	}
	priv.switch_user = true;
	priv.uid = pw.pw_uid;
	priv.gid = pw.pw_gid;
	snprintf(priv.user, sizeof(priv.user), "%s", name);
	return 0;
}

/* True if this thread holds capabilities (loads libcap-ng's view of them). */
static bool priv_have_caps(void)
{
	return !capng_get_caps_process() &&
	       capng_have_capabilities(CAPNG_SELECT_CAPS) != CAPNG_NONE;
}

int privilege_configure(const struct vmm_config *cfg)
{
	const char *t = getenv("VMM_TEST_FORBIDDEN_SYSCALL");
	struct sigaction sa = { .sa_sigaction = priv_sigsys, .sa_flags = SA_SIGINFO };
	int ret;

	priv.mode = cfg->seccomp;
	priv.qmp = cfg->qmp;
	if (cfg->user) {
		ret = priv_user(cfg->user);
		if (ret)
			return ret;
	}
	for (int k = 0; t && *t && k < THREAD_KINDS; k++)
		if (!strcmp(t, kind_names[k]) || (k == THREAD_VCPU && !strcmp(t, "1")))
			priv.test_kind = k;
	if (priv.mode == SECCOMP_ON) {
		for (int nr = 0; nr < PRIV_MAX_NR; nr++)
			priv.names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSYS, &sa, NULL) < 0)
			return -errno;
	}
	/* The bounding set goes now, while this is the only thread, so every
	 * thread started later begins without one. A thread that cleared its own
	 * as it started could come too late: once the --user switch has taken its
	 * capabilities it cannot (a vCPU thread kept a full bounding set in a CI
	 * run under emulation). */
	if (priv_have_caps()) {
		capng_clear(CAPNG_SELECT_BOUNDS);
		if (capng_apply(CAPNG_SELECT_BOUNDS)) {
			vmm_err("cannot clear the capability bounding set");
			return -EPERM;
		}
	}
	priv.configured = true;
	return 0;
}

/* Clears this thread's capabilities (root only: a non-root vmm has none to
 * drop); its bounding set is empty from the start (privilege_configure).
 * KEEP_SETID keeps CAP_SETUID/CAP_SETGID until the --user switch: glibc
 * makes every thread run the setgroups/setresgid/setresuid calls and aborts
 * the process if some thread fails them; the switch away from uid 0 then
 * clears them. */
static int priv_clear_caps(bool keep_setid)
{
	if (!priv_have_caps())
		return 0;
	capng_clear(CAPNG_SELECT_CAPS);
	if (keep_setid &&
	    capng_updatev(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, CAP_SETUID, CAP_SETGID, -1))
		return -EPERM;
	return capng_apply(CAPNG_SELECT_CAPS) ? -EPERM : 0;
}

int privilege_drop(void)
{
	int ret;

	if (!priv.configured)
		return 0;
	if (!priv.switch_user) {
		ret = priv_clear_caps(false);
		if (ret)
			vmm_err("cannot drop capabilities");
		return ret;
	}
	if (priv.qmp && chown(priv.qmp, priv.uid, priv.gid) < 0) {
		ret = -errno;
		vmm_err("cannot hand %s to user %s: %s", priv.qmp, priv.user, strerror(errno));
		return ret;
	}
	capng_clear(CAPNG_SELECT_BOTH);
	ret = capng_change_id((int)priv.uid, (int)priv.gid,
			      CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING);
	if (ret) {
		vmm_err("cannot switch to user %s (libcap-ng error %d)", priv.user, ret);
		return -EPERM;
	}
	if (getuid() != priv.uid || geteuid() != priv.uid || getgid() != priv.gid) {
		vmm_err("still not running as user %s", priv.user);
		return -EPERM;
	}
	vmm_info("running as user %s with no capabilities", priv.user);
	return 0;
}

int privilege_seccomp(enum thread_kind kind)
{
	static const char *const comm[THREAD_KINDS] = { NULL, "vmm-vcpu", "vmm-io", "vmm-mig" };
	scmp_filter_ctx ctx;
	int ret;

	if (!priv.configured)
		return 0;
	priv_kind = kind;
	if (comm[kind])
		prctl(PR_SET_NAME, comm[kind]);
	if (kind != THREAD_CONTROL && priv_clear_caps(priv.switch_user))
		vmm_warn("%s thread: cannot drop capabilities", privilege_kind_name(kind));
	if (priv.mode == SECCOMP_OFF)
		return 0;
	ctx = privilege_filter(kind, priv.mode);
	if (!ctx && kind != THREAD_CONTROL)
		vmm_die("cannot build the seccomp filter for %s threads", privilege_kind_name(kind));
	if (!ctx) {
		vmm_err("cannot build the seccomp filter for %s threads", privilege_kind_name(kind));
		return -ENOMEM;
	}
	ret = seccomp_load(ctx);
	seccomp_release(ctx);
	if (ret && kind != THREAD_CONTROL)
		vmm_die("cannot load the seccomp filter for %s threads: %s",
			privilege_kind_name(kind), strerror(-ret));
	if (ret) {
		vmm_err("cannot load the seccomp filter for %s threads: %s",
			privilege_kind_name(kind), strerror(-ret));
		return ret;
	}
	if (priv.test_kind == (int)kind)
		syscall(SYS_getppid);   /* test hook: never on any allowlist */
	return 0;
}
