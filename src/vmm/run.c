/* `vmm run`: assemble the machine, run the main loop until the guest ends,
 * tear down, and turn the way the guest ended into an exit status. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>
#include "vmm/acpi.h"
#include "vmm/boot.h"
#include "vmm/device.h"
#include "vmm/devices.h"
#include "vmm/loop.h"
#include "vmm/migrate.h"
#include "vmm/notify.h"
#include "vmm/pm.h"
#include "vmm/privilege.h"
#include "vmm/qmp.h"
#include "vmm/qmp_migrate.h"
#include "vmm/run.h"
#include "vmm/serial.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define RUN_ESCAPE 0x01   /* Ctrl-A, then x quits */

struct run_ctx {
	struct vmm_config *cfg;
	struct vm vm;
	struct loop loop;
	struct serial serial;
	struct pm pm;
	int serial_fd;        /* file output, or -1 */
	int sig_fd;
	struct qmp_server *qmp;
	struct migrate *mig;
	bool tty_raw;
	bool escape;
	struct termios saved_tty;
};

/* Picks the lexically newest /boot/vmlinuz-* (Debian names sort by version
 * closely enough for one installed kernel series). */
static int run_newest_kernel(char *out, size_t len)
{
	DIR *d = opendir("/boot");
	struct dirent *e;
	char best[256] = "";

	if (!d)
		return -ENOENT;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, "vmlinuz-", 8) && strcmp(e->d_name, best) > 0)
			snprintf(best, sizeof(best), "%s", e->d_name);
	closedir(d);
	if (!best[0])
		return -ENOENT;
	snprintf(out, len, "/boot/%s", best);
	return 0;
}

/* The default guest's initramfs: $VMM_GUEST_INITRD, next to the binary in
 * the build tree (guest/initramfs.img), or the installed data dir. */
static int run_default_initrd(char *out, size_t len)
{
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *env = getenv("VMM_GUEST_INITRD");

	if (env && *env) {
		snprintf(out, len, "%s", env);
		return access(out, R_OK) ? -ENOENT : 0;
	}
	if (n > 0) {
		exe[n] = 0;
		*strrchr(exe, '/') = 0;
		snprintf(out, len, "%s/guest/initramfs.img", exe);
		if (!access(out, R_OK))
			return 0;
	}
	snprintf(out, len, "%s", VMM_DATADIR "/initramfs.img");
	return access(out, R_OK) ? -ENOENT : 0;
}

int run_resolve_defaults(struct vmm_config *cfg, char *buf, size_t buflen, char *err,
			 size_t errlen)
{
	size_t half = buflen / 2;

	if (cfg->kernel)
		goto cmdline;
	if (run_newest_kernel(buf, half)) {
		snprintf(err, errlen, "no --kernel given and no /boot/vmlinuz-* to boot");
		return -ENOENT;
	}
	cfg->kernel = buf;
	if (!cfg->initrd) {
		if (run_default_initrd(buf + half, buflen - half)) {
			snprintf(err, errlen, "default guest initramfs not found (%s); build it "
				 "with guest/mkinitramfs.sh or pass --initrd", buf + half);
			return -ENOENT;
		}
		cfg->initrd = buf + half;
	}
cmdline:
	if (!cfg->cmdline)
		cfg->cmdline = "console=ttyS0";
	if (boot_probe(cfg->kernel, err, errlen))
		return -ENOEXEC;
	if (cfg->initrd && access(cfg->initrd, R_OK)) {
		snprintf(err, errlen, "cannot read initrd %s: %s", cfg->initrd, strerror(errno));
		return -ENOENT;
	}
	return 0;
}

static void run_serial_irq(void *opaque, int level)
{
	vm_irq_line(opaque, SERIAL_COM1_IRQ, level);
}

static int run_open_serial(struct run_ctx *c)
{
	int out = -1;

	c->serial_fd = -1;
	if (c->cfg->serial == SERIAL_STDIO) {
		out = STDOUT_FILENO;
	} else if (c->cfg->serial == SERIAL_FILE) {
		out = open(c->cfg->serial_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
			   0644);
		if (out < 0) {
			int err = -errno;

			vmm_err("--serial: cannot open %s: %s", c->cfg->serial_path, strerror(errno));
			return err;
		}
		c->serial_fd = out;
	}
	serial_init(&c->serial, out, run_serial_irq, &c->vm);
	c->vm.serial = &c->serial;
	return bus_register(&c->vm.pio, SERIAL_COM1_BASE, 8, serial_pio, &c->serial, "com1");
}

/* Legacy devices: the console UART and ACPI power management. */
static int run_legacy_devices(struct run_ctx *c)
{
	int ret = run_open_serial(c);

	if (!ret)
		ret = pm_init(&c->pm, &c->vm);
	if (!ret)
		ret = device_register(&c->vm, &serial_device_ops, &c->serial, "serial0");
	if (!ret)
		ret = device_register(&c->vm, &pm_device_ops, &c->pm, "acpi-pm");
	if (ret)
		vmm_err("cannot set up legacy devices: %s", strerror(-ret));
	c->vm.pm = &c->pm;
	return ret;
}

/* Loads the kernel and points the boot vCPU at it; an incoming guest gets
 * its memory and registers from the migration stream instead. */
static int run_boot(struct run_ctx *c, const struct acpi_extra *extra)
{
	struct boot_info info;
	char err[512];
	int ret = acpi_build(&c->vm.mem, c->cfg->cpus, extra);

	if (ret) {
		vmm_err("cannot build ACPI tables: %s", strerror(-ret));
		return ret;
	}
	ret = boot_load(&c->vm.mem, c->cfg->kernel, c->cfg->initrd, c->cfg->cmdline, &info, err,
			sizeof(err));
	if (ret) {
		vmm_err("cannot boot: %s", err);
		return ret;
	}
	ret = boot_setup_vcpu(c->vm.vcpus[0]->fd, &info);
	if (ret)
		vmm_err("cannot set up the boot vCPU: %s", strerror(-ret));
	return ret;
}

/* Builds devices, tables and vCPUs; the guest is ready to start after. */
static int run_build(struct run_ctx *c)
{
	struct acpi_extra extra = { 0 };
	int ret;

	ret = vm_create(&c->vm, c->cfg->mem_size, c->cfg->cpus);
	if (!ret)
		ret = run_legacy_devices(c);
	if (!ret)
		ret = devices_create(&c->vm, c->cfg, &extra);
	if (ret)
		return ret;
	for (int i = 0; i < c->cfg->cpus; i++) {
		ret = vcpu_create(&c->vm, i, &c->vm.vcpus[i]);
		if (ret) {
			vmm_err("cannot create vCPU %d: %s", i, strerror(-ret));
			return ret;
		}
	}
	return c->cfg->incoming ? 0 : run_boot(c, &extra);
}

static void run_on_end(void *opaque, int fd, uint32_t events)
{
	struct run_ctx *c = opaque;

	loop_stop(&c->loop);
}

static void run_on_signal(void *opaque, int fd, uint32_t events)
{
	struct run_ctx *c = opaque;
	struct signalfd_siginfo si;

	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	vm_end(&c->vm, VM_END_QUIT, "terminated by signal %u", si.ssi_signo);
}

/* Stdin to the UART; Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A. */
static void run_on_stdin(void *opaque, int fd, uint32_t events)
{
	struct run_ctx *c = opaque;
	uint8_t buf[64], out[64];
	size_t n_out = 0;
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			loop_del(&c->loop, fd);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (c->escape) {
			c->escape = false;
			if (buf[i] == 'x' || buf[i] == 'X') {
				vm_end(&c->vm, VM_END_QUIT, "quit from the console (Ctrl-A x)");
				return;
			}
			if (buf[i] != RUN_ESCAPE)
				continue;
		} else if (buf[i] == RUN_ESCAPE && c->tty_raw) {
			c->escape = true;
			continue;
		}
		out[n_out++] = buf[i];
	}
	serial_input(&c->serial, out, n_out);
}

static void run_tty_raw(struct run_ctx *c)
{
	struct termios t;

	if (c->cfg->serial != SERIAL_STDIO || !isatty(STDIN_FILENO) ||
	    tcgetattr(STDIN_FILENO, &c->saved_tty))
		return;
	t = c->saved_tty;
	cfmakeraw(&t);
	t.c_oflag |= OPOST | ONLCR;
	if (!tcsetattr(STDIN_FILENO, TCSANOW, &t))
		c->tty_raw = true;
}

static int run_loop_setup(struct run_ctx *c)
{
	sigset_t set;
	int ret = loop_init(&c->loop);

	if (ret)
		return ret;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	c->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (c->sig_fd < 0)
		return -errno;
	ret = loop_add(&c->loop, c->sig_fd, EPOLLIN, run_on_signal, c);
	if (!ret)
		ret = loop_add(&c->loop, c->vm.end_eventfd, EPOLLIN, run_on_end, c);
	if (!ret && c->cfg->serial == SERIAL_STDIO) {
		run_tty_raw(c);
		fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
		/* A regular file or /dev/null cannot be polled (EPERM): the
		 * guest then simply gets no console input. */
		int err = loop_add(&c->loop, STDIN_FILENO, EPOLLIN, run_on_stdin, c);

		if (err && err != -EPERM)
			vmm_warn("console input disabled: %s", strerror(-err));
	}
	return ret;
}

static int run_report(struct run_ctx *c)
{
	enum vm_end why = c->vm.end;

	if (why == VM_END_PANIC || why == VM_END_ERROR)
		vmm_err("%s", c->vm.end_msg);
	else
		vmm_info("%s", c->vm.end_msg);
	return vm_end_status(why);
}

/* QMP, the migration controller, and either the vCPUs or the wait for an
 * incoming guest. */
static int run_control(struct run_ctx *c)
{
	const char *in = c->cfg->incoming;
	bool defer = in && !strcmp(in, "defer");
	char err[256];
	int ret;

	if (c->cfg->qmp) {
		ret = qmp_vm_start(&c->qmp, &c->loop, &c->vm, c->cfg->qmp);
		if (ret)
			return ret;
	}
	c->mig = migrate_new(&c->vm);
	if (!c->mig)
		return -ENOMEM;	/* migrate_new() said why */
	if (c->qmp) {
		ret = qmp_migrate_register(c->qmp, c->mig, &c->vm, defer);
		if (ret) {
			vmm_err("cannot add the migration commands: %s", strerror(-ret));
			return ret;
		}
	}
	if (!in)
		return vm_start(&c->vm);
	vm_set_phase(&c->vm, VM_PHASE_INMIGRATE);
	ret = vm_spawn_vcpus(&c->vm);
	if (ret)
		return ret;
	if (defer) {
		vmm_info("waiting for migrate-incoming on the QMP socket");
		return 0;
	}
	ret = migrate_incoming(c->mig, in, err, sizeof(err));
	if (ret)
		vmm_err("--incoming: %s", err);
	else
		vmm_info("waiting for an incoming migration on %s", in);
	return ret;
}

int run_main(struct vmm_config *cfg)
{
	struct run_ctx c = { .cfg = cfg, .serial_fd = -1, .sig_fd = -1 };
	int status = 1;

	c.loop.epfd = c.loop.stop_fd = -1;
	vmm_log_set_quiet(cfg->quiet);
	/* Big buffers (boot images, migration batches) are mapped on their own
	 * and unmapped when freed. glibc's default raises this threshold after
	 * the first big free, so later ones stayed resident in the heap. */
	mallopt(M_MMAP_THRESHOLD, 256 << 10);
	if (run_build(&c) || run_loop_setup(&c))
		goto out;
	if (run_control(&c) == 0 && !privilege_drop() && !privilege_seccomp(THREAD_CONTROL)) {
		notify_ready(cfg->incoming ? "waiting for an incoming migration" : "running");
		loop_run(&c.loop);
	}
	notify_stopping();
	if (vm_ended(&c.vm) == VM_END_NONE)
		vm_end(&c.vm, VM_END_ERROR, "vmm could not start the guest");
	migrate_free(c.mig);
	c.mig = NULL;
	vm_join(&c.vm);
	status = run_report(&c);
out:
	migrate_free(c.mig);
	vm_join(&c.vm);
	devices_destroy();
	qmp_server_destroy(c.qmp);
	if (c.tty_raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &c.saved_tty);
	loop_destroy(&c.loop);
	if (c.sig_fd >= 0)
		close(c.sig_fd);
	vm_destroy(&c.vm);
	if (c.serial_fd >= 0)
		close(c.serial_fd);
	return status;
}
