/* The incoming side of a live migration, run as its own thread: accept one
 * connection, check the guest's shape, receive pages and state, validate and
 * load everything into KVM, and only then answer READY; run the guest on GO.
 * A failure ends this VMM with the reason; the source keeps its guest. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>
#include "migrate_int.h"
#include "vmm/cpuid.h"
#include "vmm/cpustate.h"
#include "vmm/device.h"
#include "vmm/devices.h"
#include "vmm/privilege.h"
#include "vmm/ram.h"
#include "vmm/shape.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"
#include "vmm/vmstate.h"

/* An extra page stream (multifd), received on a thread of its own. */
struct dst_lane {
	struct mig_dst *d;
	struct chan *c;
	struct ram_receiver ram;    /* shares the main receiver's map */
	struct stream_buf in;
	pthread_t thread;
	bool started, done;         /* done: its DONE arrived */
	char err[128];
};

struct mig_dst {
	struct migrate *m;
	struct stream_buf buf;
	struct stream_buf in;
	struct ram_receiver ram;
	struct cpu_state *cpus;
	int ncpus;
	struct vm_kvm_state ks;
	bool have_ks;
	bool loaded[DEVICE_MAX];
	bool paused[DEVICE_MAX];    /* device quiesced before its state is loaded */
	uint64_t token;             /* multifd: what the extra connections must show */
	bool multifd;
	struct dst_lane lanes[RAM_MAX_STREAMS - 1];
	int nlanes;
	char err[256];
};

static int dst_fail(struct mig_dst *d, int ret, const char *fmt, ...) VMM_PRINTF(3, 4);
static int dst_fail(struct mig_dst *d, int ret, const char *fmt, ...)
{
	va_list ap;

	if (!d->err[0]) {
		va_start(ap, fmt);
		vsnprintf(d->err, sizeof(d->err), fmt, ap);
		va_end(ap);
	}
	return ret ? ret : -EINVAL;
}

/* One migration per listener: closed once its connections are in. */
static void dst_close_listener(struct migrate *m)
{
	pthread_mutex_lock(&m->lock);
	if (m->listen_fd >= 0)
		close(m->listen_fd);
	m->listen_fd = -1;
	pthread_mutex_unlock(&m->lock);
}

static int dst_accept(struct mig_dst *d)
{
	struct migrate *m = d->m;
	int ret = chan_accept(&m->chan, m->listen_fd, -1);

	if (ret)
		return dst_fail(d, ret, "accepting the migration connection failed: %s",
				strerror(-ret));
	return 0;
}

/* Gives every vCPU the CPUID the guest was started with. */
static int dst_apply_cpuid(struct mig_dst *d, const struct kvm_cpuid2 *base)
{
	struct vm *vm = d->m->vm;

	for (int i = 0; i < vm->nr_vcpus; i++) {
		struct kvm_cpuid2 *c = cpuid_for_vcpu(base, i, vm->nr_vcpus);
		int ret = c && ioctl(vm->vcpus[i]->fd, KVM_SET_CPUID2, c) == 0 ? 0 : -EINVAL;

		free(c);
		if (ret)
			return dst_fail(d, ret, "KVM here refuses the guest's CPUID");
	}
	return 0;
}

/* Times saving and loading the vCPU and in-kernel state of this VM, whose
 * vCPUs have not run: the same ioctls the handoff will make, so the source
 * can count them in its downtime model. Microseconds of this thread's CPU,
 * 0 if it failed: the source's guest runs meanwhile, and on a busy host the
 * wall clock here measured up to ten times the real load (one KVM_SET_PIT2
 * waited 17 ms for the CPU), while in the handoff that guest is paused. */
static uint64_t dst_rehearse(struct mig_dst *d)
{
	struct migrate *m = d->m;
	struct vm *vm = m->vm;
	uint64_t t0 = vm_thread_ns();
	int ret = vmstate_kvm_save(vm, &d->ks) ?: vmstate_kvm_load(vm, &d->ks, d->err,
								   sizeof(d->err));

	/* Cold, like the real thing after a long pre-copy: timing a second,
	 * warm round measured a quarter of the real load under emulation. */
	for (int i = 0; !ret && i < vm->nr_vcpus; i++)
		ret = cpustate_save(vm->vcpus[i], m->msrs, m->nmsrs, &d->cpus[i]) ?:
		      cpustate_load(vm->vcpus[i], &d->cpus[i], d->err, sizeof(d->err));
	d->err[0] = 0;
	if (ret) {
		vmm_warn("cannot time the state load (%s); downtime estimates will be low",
			 strerror(-ret));
		return 0;
	}
	return (vm_thread_ns() - t0) / 1000 + 1;
}

static int dst_refuse(struct mig_dst *d, int ret)
{
	if (stream_reason_put(&d->buf, STREAM_REFUSE, d->err) == 0 && mig_flush(d->m, &d->buf))
		vmm_warn("could not tell the source why the guest was refused");
	return ret;
}

/* Reads CHANNEL {token, index, count} from C: 0 with *IDX, or -EPROTO. */
static int dst_channel_frame(struct mig_dst *d, struct chan *c, uint32_t *idx, uint32_t *n)
{
	struct stream_frame f;
	struct stream_reader r;
	uint64_t token;
	int ret = chan_recv_frame(c, &f, &d->in, STREAM_MAX_CONTROL);

	if (ret)
		return ret;
	stream_reader_init(&r, d->in.data, d->in.len);
	if (f.type != STREAM_CHANNEL || stream_get_u64(&r, &token) || stream_get_u32(&r, idx) ||
	    stream_get_u32(&r, n) || token != d->token)
		return -EPROTO;
	return 0;
}

/* Receives one extra stream's pages until its DONE. The wait has no short
 * bound: a stream may be idle for a whole pass, and the main connection's
 * own timeout (or its end) shuts this one down. */
static void *dst_lane_thread(void *arg)
{
	struct dst_lane *l = arg;

	for (;;) {
		struct stream_frame f;
		int ret = chan_recv_header(l->c, &f, STREAM_MAX_PAYLOAD);

		if (!ret && f.type == STREAM_PAGES) {
			ret = ram_recv(&l->ram, l->c, &f, &l->in);
		} else if (!ret) {
			ret = chan_recv_payload(l->c, &f, &l->in) ?:
			      (f.type == STREAM_DONE ? 0 : -EPROTO);
			l->done = !ret;
			if (l->done)
				return NULL;
		}
		if (ret) {
			snprintf(l->err, sizeof(l->err), "page stream %d: %s", l->ram.idx,
				 ret == -EPROTO ? "unexpected frame" : strerror(-ret));
			chan_abort(&l->d->m->chan);   /* the main thread reports it */
			return NULL;
		}
	}
}

/* Waits for the extra streams' threads; 0 if every one got its DONE. */
static int dst_join_lanes(struct mig_dst *d)
{
	int ret = 0;

	for (int i = 0; i < d->nlanes; i++) {
		struct dst_lane *l = &d->lanes[i];

		if (l->started)
			pthread_join(l->thread, NULL);
		l->started = false;
		if (!l->done && !ret)
			ret = dst_fail(d, -EPIPE, "%s", l->err[0] ? l->err :
				       "a page stream ended before its DONE");
	}
	return ret;
}

/* multifd: CHANNEL on the main connection, then the other N-1 connections,
 * each with the token and a distinct index; then ACCEPT, and a thread each. */
static int dst_channels(struct mig_dst *d)
{
	struct migrate *m = d->m;
	uint32_t idx, n, seen = 1;
	int ret = dst_channel_frame(d, &m->chan, &idx, &n);

	if (ret || idx != 0 || n < 2 || n > RAM_MAX_STREAMS)
		return dst_refuse(d, dst_fail(d, ret ?: -EPROTO, "bad multifd announcement"));
	for (uint32_t k = 0; k < n - 1; k++) {
		struct dst_lane *l = &d->lanes[k];
		uint32_t i, nn;

		ret = chan_accept(&m->xchan[k], m->listen_fd, MIG_CONNECT_TIMEOUT_MS);
		if (ret)
			return dst_refuse(d, dst_fail(d, ret, "page stream %u of %u did not connect: %s",
						      k + 2, n, strerror(-ret)));
		pthread_mutex_lock(&m->lock);
		m->nxchan = (int)k + 1;
		pthread_mutex_unlock(&m->lock);
		ret = dst_channel_frame(d, &m->xchan[k], &i, &nn);
		if (ret || nn != n || i == 0 || i >= n || (seen & 1u << i))
			return dst_refuse(d, dst_fail(d, ret ?: -EPROTO,
						      "a connection that is not one of the page streams"));
		seen |= 1u << i;
		l->d = d;
		l->c = &m->xchan[k];
		l->c->timeout_ms = 24 * 3600 * 1000;
		ram_recv_stream(&l->ram, &d->ram, (int)i, (int)n);
		stream_buf_init(&l->in);
		d->nlanes = (int)k + 1;
	}
	dst_close_listener(m);
	d->ram.n = (int)n;
	ret = stream_u64_put(&d->buf, STREAM_ACCEPT, 0) ?: mig_flush(m, &d->buf);
	for (int k = 0; !ret && k < d->nlanes; k++) {
		ret = -pthread_create(&d->lanes[k].thread, NULL, dst_lane_thread, &d->lanes[k]);
		d->lanes[k].started = !ret;
	}
	return ret ? dst_fail(d, ret, "cannot start the page streams: %s", strerror(-ret)) : 0;
}

static int dst_handshake(struct mig_dst *d)
{
	struct stream_frame f;
	struct stream_reader r;
	struct shape guest, here;
	uint32_t version;
	uint64_t caps, us, t0;
	size_t fr;
	int ret = mig_recv_ctl(d->m, &f, &d->in);

	stream_reader_init(&r, d->in.data, d->in.len);
	if (ret || f.type != STREAM_HELLO || stream_hello_parse(&r, &version, &caps))
		return dst_fail(d, ret, "the peer is not a vmm migration source");
	if (version != STREAM_VERSION)
		return dst_refuse(d, dst_fail(d, -EPROTO, "stream version %u, this vmm speaks %u",
					      version, STREAM_VERSION));
	d->multifd = caps & STREAM_CAP_MULTIFD;
	if (d->multifd && getrandom(&d->token, sizeof(d->token), 0) != sizeof(d->token))
		d->multifd = false;
	ret = stream_frame_begin(&d->buf, STREAM_ACCEPT, 0, &fr) ?:
	      stream_buf_put_u64(&d->buf, (caps & (STREAM_CAP_SUM | STREAM_CAP_SYNC |
						   STREAM_CAP_INPLACE)) |
					  (d->multifd ? STREAM_CAP_MULTIFD : 0)) ?:
	      stream_buf_put_u64(&d->buf, d->multifd ? d->token : 0) ?:
	      stream_frame_end(&d->buf, fr) ?: mig_flush(d->m, &d->buf) ?:
	      mig_recv_ctl(d->m, &f, &d->in);
	t0 = vm_now_ns();
	stream_reader_init(&r, d->in.data, d->in.len);
	if (ret || f.type != STREAM_SHAPE || shape_parse(&r, &guest))
		return dst_fail(d, ret, "bad or missing guest shape");
	ret = shape_of_vm(d->m->vm, &here);
	if (!ret)
		ret = shape_check(&guest, &here, d->m->vm->cpuid, d->err, sizeof(d->err));
	if (!ret)
		ret = dst_apply_cpuid(d, guest.cpuid);
	shape_free(&guest);
	shape_free(&here);
	if (ret)
		return dst_refuse(d, dst_fail(d, ret, "cannot host this guest"));
	us = dst_rehearse(d);
	pthread_mutex_lock(&d->m->lock);
	d->m->info.restore_rehearsed_us = us;
	pthread_mutex_unlock(&d->m->lock);
	ret = stream_frame_begin(&d->buf, STREAM_ACCEPT, 0, &fr) ?:
	      stream_buf_put_u64(&d->buf, us) ?:
	      stream_buf_put_u64(&d->buf, (vm_now_ns() - t0) / 1000) ?:
	      stream_frame_end(&d->buf, fr) ?: mig_flush(d->m, &d->buf);
	if (!ret && d->multifd)
		ret = dst_channels(d);
	return ret;
}

/* Fault injection for the migration tests: VMM_TEST_FAULT=WHERE makes the
 * destination die abruptly at that point (sync: the SYNC that ends pre-copy;
 * cpu: first vCPU state, in stop-and-copy; ready: right after READY, before
 * GO), or with start, fail to start the vCPUs after GO. */
static bool dst_test_is(const char *where)
{
	const char *f = getenv("VMM_TEST_FAULT");

	return f && !strcmp(f, where);
}

static void dst_test_fault(const char *where)
{
	if (dst_test_is(where)) {
		fprintf(stderr, "vmm: test fault '%s': dying now\n", where);
		_exit(3);
	}
}

static int dst_device(struct mig_dst *d, struct stream_reader *r)
{
	char id[32];
	struct device *dev;
	int ret = stream_get_string(r, id, sizeof(id));

	if (ret)
		return dst_fail(d, ret, "malformed device section");
	if (!strcmp(id, "kvm-vm")) {
		ret = vmstate_load(&vm_kvm_state_vmsd, &d->ks, r, vm_kvm_state_vmsd.version_id);
		d->have_ks = !ret;
	} else if ((dev = device_find(d->m->vm, id)) && dev->ops->vmsd) {
		int i = (int)(dev - d->m->vm->devices);

		/* Its I/O thread must not read the state while it is replaced. */
		if (dev->ops->pause && !d->paused[i]) {
			dev->ops->pause(dev->opaque);
			d->paused[i] = true;
		}
		ret = vmstate_load(dev->ops->vmsd, dev->ops->state(dev->opaque), r,
				   dev->ops->vmsd->version_id);
		d->loaded[dev - d->m->vm->devices] = !ret;
	} else {
		return dst_fail(d, -ENOENT, "state for unknown device '%s'", id);
	}
	if (ret)
		return dst_fail(d, ret, "device %s: %s", id, vmstate_last_error());
	return 0;
}

/* Every page's last data passed its check. A page torn on the source (the
 * guest wrote it while it was sent) fails it, and comes again in a later
 * pass; one that never does was corrupted on the way. */
static int dst_check_pages(struct mig_dst *d)
{
	uint64_t torn = d->ram.torn, bad = ram_recv_unverified(&d->ram);

	for (int i = 0; i < d->nlanes; i++)
		torn += d->lanes[i].ram.torn;
	if (bad)
		return dst_fail(d, -EBADMSG, "%" PRIu64 " page%s failed %s check and never came "
				"again: the stream was corrupted", bad, bad == 1 ? "" : "s",
				bad == 1 ? "its" : "their");
	if (torn)
		vmm_info("migration: %" PRIu64 " page%s arrived torn and came again", torn,
			 torn == 1 ? "" : "s");
	return 0;
}

/* Receives frames until DONE. */
static int dst_receive(struct mig_dst *d)
{
	struct migrate *m = d->m;

	for (;;) {
		struct stream_frame f;
		struct stream_reader r;
		int ret = chan_recv_header(&m->chan, &f, STREAM_MAX_PAYLOAD);
		uint32_t pass;

		if (!ret && f.type != STREAM_PAGES)	/* pages: ram_recv() below */
			ret = chan_recv_payload(&m->chan, &f, &d->in);
		if (ret) {
			for (int i = 0; i < d->nlanes; i++)
				if (d->lanes[i].err[0])
					return dst_fail(d, -EBADMSG, "%s", d->lanes[i].err);
			return dst_fail(d, ret, "migration stream broken: %s", strerror(-ret));
		}
		stream_reader_init(&r, d->in.data, d->in.len);
		switch (f.type) {
		case STREAM_PASS_BEGIN:
			if (stream_get_u32(&r, &pass))
				return dst_fail(d, -EBADMSG, "malformed PASS_BEGIN");
			pthread_mutex_lock(&m->lock);
			m->info.pass = pass;
			pthread_mutex_unlock(&m->lock);
			break;
		case STREAM_PASS_END:
			break;
		case STREAM_SYNC:	/* everything before it is in */
			dst_test_fault("sync");
			ret = stream_frame_put(&d->buf, STREAM_SYNC, NULL, 0) ?:
			      mig_flush(m, &d->buf);
			if (ret)
				return dst_fail(d, ret, "source gone: %s", strerror(-ret));
			break;
		case STREAM_PAGES:
			ret = ram_recv(&d->ram, &m->chan, &f, &d->in);
			if (ret == -EBADMSG || ret == -EFAULT)
				return dst_fail(d, ret, "bad page batch: %s", strerror(-ret));
			if (ret)
				return dst_fail(d, ret, "migration stream broken: %s",
						strerror(-ret));
			break;
		case STREAM_CPU:
			dst_test_fault("cpu");
			if (d->ncpus == m->vm->nr_vcpus)
				return dst_fail(d, -EBADMSG, "more vCPU states than vCPUs");
			ret = vmstate_load(&cpu_state_vmsd, &d->cpus[d->ncpus], &r,
					   cpu_state_vmsd.version_id);
			if (ret)
				return dst_fail(d, ret, "vCPU %d: %s", d->ncpus, vmstate_last_error());
			d->ncpus++;
			break;
		case STREAM_DEVICE:
			ret = dst_device(d, &r);
			if (ret)
				return ret;
			break;
		case STREAM_DONE:
			return dst_join_lanes(d) ?: dst_check_pages(d);
		case STREAM_CANCEL:
			return dst_fail(d, -ECANCELED, "the source cancelled the migration");
		default:
			return dst_fail(d, -EPROTO, "unexpected frame type %u", f.type);
		}
	}
}

/* Loads everything received into KVM and the devices; nothing runs yet. */
static int dst_apply(struct mig_dst *d)
{
	struct vm *vm = d->m->vm;
	uint64_t t0 = vm_now_ns();
	int ret;

	if (d->ncpus != vm->nr_vcpus || !d->have_ks)
		return dst_fail(d, -EBADMSG, "state incomplete: %d of %d vCPUs%s", d->ncpus,
				vm->nr_vcpus, d->have_ks ? "" : ", no in-kernel device state");
	for (int i = 0; i < device_count(vm); i++) {
		struct device *dev = device_get(vm, i);

		if (dev->ops->vmsd && !d->loaded[i])
			return dst_fail(d, -EBADMSG, "no state for device %s", dev->id);
	}
	ret = vmstate_kvm_load(vm, &d->ks, d->err, sizeof(d->err));
	for (int i = 0; !ret && i < vm->nr_vcpus; i++)
		ret = cpustate_load(vm->vcpus[i], &d->cpus[i], d->err, sizeof(d->err));
	for (int i = 0; !ret && i < device_count(vm); i++) {
		struct device *dev = device_get(vm, i);

		if (dev->ops->apply_state)
			ret = dev->ops->apply_state(dev->opaque);
		if (ret)
			return dst_fail(d, ret, "device %s refused its state", dev->id);
	}
	if (ret)
		return dst_fail(d, ret, "loading state into KVM failed");
	pthread_mutex_lock(&d->m->lock);
	d->m->info.restore_us = (vm_now_ns() - t0) / 1000;
	pthread_mutex_unlock(&d->m->lock);
	return 0;
}

/* After GO: the guest cannot run here, so the source resumes it. */
static int dst_give_back(struct mig_dst *d, int ret, const char *why)
{
	dst_fail(d, ret, "%s: the guest stays on the source", why);
	if (stream_reason_put(&d->buf, STREAM_FAIL, d->err) == 0 && mig_flush(d->m, &d->buf))
		vmm_warn("could not tell the source");
	return ret;
}

/* READY, then GO from the source, then the guest runs here. */
static int dst_handoff(struct mig_dst *d)
{
	struct migrate *m = d->m;
	struct kvm_clock_data clock = { .clock = m->vm->clock_ns };
	struct stream_frame f;
	int ret = stream_frame_put(&d->buf, STREAM_READY, NULL, 0) ?: mig_flush(m, &d->buf);

	if (ret)
		return dst_fail(d, ret, "source gone before READY: %s", strerror(-ret));
	dst_test_fault("ready");
	m->chan.timeout_ms = MIG_READY_TIMEOUT_MS;
	ret = mig_recv_ctl(m, &f, &d->in);
	if (ret || f.type != STREAM_GO)
		return dst_fail(d, ret, "no GO from the source (%s): the guest stays there",
				ret ? strerror(-ret) : "unexpected frame");
	/* Shared storage: the source dropped its image locks before GO. */
	ret = devices_lock_images();
	if (ret)
		return dst_give_back(d, ret, "cannot lock the disk images");
	if (clock.clock && ioctl(m->vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		vmm_warn("KVM_SET_CLOCK failed: %s", strerror(errno));
	vm_set_phase(m->vm, VM_PHASE_NORMAL);
	/* The vCPU threads wait since the VMM started (vm_spawn_vcpus): once
	 * they exist nothing can keep the guest from running here, so STARTED
	 * goes out before they are let go, not after the first of them has
	 * taken a shared CPU. Under emulation, GO to STARTED took 1.4-1.6 ms
	 * this way, 9-10 ms with the vCPUs let go first, and 3.9-4.4 ms when
	 * their threads were created here. */
	ret = dst_test_is("start") ? -EIO : vm_spawn_vcpus(m->vm);
	if (ret) {
		devices_unlock_images();
		return dst_give_back(d, ret, "cannot start the vCPUs");
	}
	for (int i = 0; i < device_count(m->vm); i++) {
		struct device *dev = device_get(m->vm, i);

		if (d->paused[i] && dev->ops->resume)
			dev->ops->resume(dev->opaque);
	}
	ret = stream_frame_put(&d->buf, STREAM_STARTED, NULL, 0) ?: mig_flush(m, &d->buf);
	if (ret)
		vmm_warn("could not confirm the start to the source: %s", strerror(-ret));
	if (vm_start(m->vm))	/* cannot fail: the threads exist */
		vmm_warn("the vCPUs did not start");
	return 0;
}

void *mig_dest_thread(void *arg)
{
	struct migrate *m = arg;
	struct mig_dst *d = calloc(1, sizeof(*d));
	int ret = -ENOMEM;

	privilege_seccomp(THREAD_MIGRATION);
	if (d) {
		d->m = m;
		stream_buf_init(&d->buf);
		stream_buf_init(&d->in);
		d->cpus = calloc((size_t)m->vm->nr_vcpus, sizeof(*d->cpus));
		ret = d->cpus ? ram_recv_init(&d->ram, m->vm) : -ENOMEM;
	}
	if (!ret)
		ret = dst_accept(d);
	if (!ret) {
		mig_set_status(m, MIG_ACTIVE, NULL);
		ret = dst_handshake(d);
		dst_close_listener(m);
		if (!ret)
			ret = dst_receive(d) ?: dst_apply(d);
		if (ret && stream_reason_put(&d->buf, STREAM_FAIL, d->err) == 0 &&
		    mig_flush(m, &d->buf))
			vmm_warn("could not tell the source why the migration failed");
	}
	if (ret && d && d->nlanes) {	/* they may still be reading */
		pthread_mutex_lock(&m->lock);
		mig_abort_chans(m);
		pthread_mutex_unlock(&m->lock);
		dst_join_lanes(d);
	}
	if (!ret)
		ret = dst_handoff(d);
	dst_close_listener(m);
	pthread_mutex_lock(&m->lock);
	chan_close(&m->chan);
	mig_close_xchans(m);
	m->busy = false;
	m->info.total_ms = (vm_now_ns() - m->start_ns) / 1000000;
	pthread_mutex_unlock(&m->lock);
	mig_set_status(m, ret ? MIG_FAILED : MIG_COMPLETED, ret ? (d ? d->err : "out of memory") : NULL);
	if (ret)
		vm_end(m->vm, VM_END_ERROR, "incoming migration failed: %s",
		       d && d->err[0] ? d->err : strerror(-ret));
	else
		vmm_info("incoming migration completed; the guest runs here");
	if (!ret)
		devices_announce(MIG_ANNOUNCE_ROUNDS);
	if (d) {
		ram_recv_destroy(&d->ram);
		for (int i = 0; i < d->nlanes; i++)
			stream_buf_free(&d->lanes[i].in);
		free(d->cpus);
		stream_buf_free(&d->buf);
		stream_buf_free(&d->in);
	}
	free(d);
	return NULL;
}
