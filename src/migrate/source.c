/* The outgoing side of a live migration, run as its own thread: handshake,
 * pre-copy passes until the rest fits the downtime limit (or stops
 * shrinking, or hits the cap), then pause, final pages, vCPU, KVM and device
 * state, and the READY/GO handoff. Any failure before GO resumes the guest. */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "migrate_int.h"
#include "vmm/cpustate.h"
#include "vmm/device.h"
#include "vmm/devices.h"
#include "vmm/privilege.h"
#include "vmm/ram.h"
#include "vmm/shape.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"
#include "vmm/vmstate.h"

#define MIG_STATE_ESTIMATE (64 << 10)   /* vCPU+device bytes */

struct mig_src {
	struct migrate *m;
	struct stream_buf buf;
	struct stream_buf in;
	struct ram_tracker ram;
	struct chan *chans[RAM_MAX_STREAMS];   /* the main connection, then m->xchan */
	int nchans;
	bool tracking, paused;
	bool unlocked;            /* disk image locks dropped for the handoff */
	bool sum;                 /* the destination takes STREAM_FRAME_SUM */
	bool sync;                /* and answers STREAM_SYNC */
	bool inplace;             /* and takes STREAM_PAGES_INPLACE frames */
	char err[256];
	uint64_t pause_ns;
	double bw;                /* measured bytes/s */
	/* measured costs of the stop-and-copy beyond the pages themselves */
	uint64_t rtt_ns;          /* SHAPE to ACCEPT, less the destination's work */
	uint64_t restore_ns;      /* the destination's state load, rehearsed there */
	uint64_t sync_ns;         /* the last dirty-log sync */
	uint64_t stop_ns;         /* stopping the vCPUs, rehearsed here */
	uint64_t save_ns;         /* saving their state, likewise */
	uint64_t pass_ns, pass_bytes;   /* the last pass */
};

/* Reads the answer to HELLO or SHAPE: ACCEPT (its first u64 in *VAL, a
 * second, if any, in *VAL2), or REFUSE with a reason. */
static int src_expect_accept(struct mig_src *s, const char *what, uint64_t *val,
			     uint64_t *val2)
{
	struct stream_frame f;
	struct stream_reader r;
	char reason[STREAM_REASON_MAX];
	int ret = mig_recv_ctl(s->m, &f, &s->in);

	if (ret) {
		snprintf(s->err, sizeof(s->err), "no answer to %s: %s", what, strerror(-ret));
		return ret;
	}
	stream_reader_init(&r, s->in.data, s->in.len);
	if (f.type == STREAM_ACCEPT && stream_get_u64(&r, val) == 0) {
		if (stream_get_u64(&r, val2))
			*val2 = 0;
		return 0;
	}
	if (f.type == STREAM_REFUSE && stream_reason_parse(&r, reason, sizeof(reason)) == 0) {
		snprintf(s->err, sizeof(s->err), "destination refused the guest: %.200s", reason);
		return -EPERM;
	}
	snprintf(s->err, sizeof(s->err), "unexpected frame %u in answer to %s", f.type, what);
	return -EPROTO;
}

/* Sends CHANNEL {token, I, N} over C. */
static int src_channel_put(struct mig_src *s, struct chan *c, uint64_t token, int i, int n)
{
	size_t fr;

	return stream_frame_begin(&s->buf, STREAM_CHANNEL, 0, &fr) ?:
	       stream_buf_put_u64(&s->buf, token) ?:
	       stream_buf_put_u32(&s->buf, (uint32_t)i) ?:
	       stream_buf_put_u32(&s->buf, (uint32_t)n) ?:
	       stream_frame_end(&s->buf, fr) ?: mig_flush_to(c, &s->buf);
}

/* multifd: connects streams 1..N-1, each opened by CHANNEL {token, index,
 * N}, then announces them on the main connection and waits for ACCEPT. */
static int src_channels(struct mig_src *s, uint64_t token, int n)
{
	struct migrate *m = s->m;
	uint64_t v, v2;
	int ret = 0;

	for (int i = 1; !ret && i < n; i++) {
		struct chan *c = &m->xchan[i - 1];

		ret = chan_connect(c, m->uri, MIG_CONNECT_TIMEOUT_MS, s->err, sizeof(s->err));
		if (ret)
			return ret;
		pthread_mutex_lock(&m->lock);
		m->nxchan = i;
		pthread_mutex_unlock(&m->lock);
		s->chans[s->nchans++] = c;
		ret = src_channel_put(s, c, token, i, n);
	}
	if (!ret)
		ret = src_channel_put(s, &m->chan, token, 0, n);
	if (ret) {
		snprintf(s->err, sizeof(s->err), "cannot open the page streams: %s", strerror(-ret));
		return ret;
	}
	ret = src_expect_accept(s, "the page streams", &v, &v2);
	if (!ret)
		vmm_info("migration: %d page streams", n);
	return ret;
}

static int src_handshake(struct mig_src *s)
{
	struct migrate_params p;
	struct shape shape;
	uint64_t t0, caps, token = 0, us = 0, busy = 0, want;
	int ret = chan_connect(&s->m->chan, s->m->uri, MIG_CONNECT_TIMEOUT_MS, s->err,
			       sizeof(s->err));

	if (ret)
		return ret;
	s->chans[0] = &s->m->chan;
	s->nchans = 1;
	migrate_get_params(s->m, &p);
	want = STREAM_CAP_SUM | STREAM_CAP_SYNC | STREAM_CAP_INPLACE |
	       (p.multifd_channels > 1 ? STREAM_CAP_MULTIFD : 0);
	ret = stream_hello_put(&s->buf, want) ?: mig_flush(s->m, &s->buf);
	if (!ret)
		ret = src_expect_accept(s, "HELLO", &caps, &token);
	if (ret)
		return ret;
	ret = shape_of_vm(s->m->vm, &shape);
	t0 = vm_now_ns();
	if (!ret)
		ret = shape_put(&s->buf, &shape) ?: mig_flush(s->m, &s->buf);
	shape_free(&shape);
	if (!ret)
		ret = src_expect_accept(s, "the guest's shape", &us, &busy);
	/* the SHAPE round trip, less the destination's work on it */
	s->rtt_ns = vm_now_ns() - t0;
	s->rtt_ns -= busy * 1000 < s->rtt_ns ? busy * 1000 : s->rtt_ns;
	s->restore_ns = us * 1000;
	s->sum = caps & STREAM_CAP_SUM;
	s->sync = caps & STREAM_CAP_SYNC;
	s->inplace = caps & STREAM_CAP_INPLACE;
	if (!ret && (want & STREAM_CAP_MULTIFD) && (caps & STREAM_CAP_MULTIFD))
		ret = src_channels(s, token, (int)p.multifd_channels);
	else if (!ret && (want & STREAM_CAP_MULTIFD))
		vmm_warn("the destination takes one page stream only");
	return ret;
}

/* Bytes sent over all connections. */
static uint64_t src_sent(struct mig_src *s)
{
	return s->m->chan.sent + atomic_load(&s->ram.xsent);
}

static void src_stats(struct mig_src *s, uint32_t pass, uint64_t remaining, uint64_t rate,
		      uint64_t expected_ms)
{
	struct migrate_info *i = &s->m->info;

	pthread_mutex_lock(&s->m->lock);
	i->pass = pass;
	i->transferred = src_sent(s);
	i->remaining = remaining * PAGE_SIZE;
	i->total = s->m->vm->mem.size;
	i->duplicate = s->ram.stats.duplicate;
	i->normal = s->ram.stats.normal;
	i->normal_bytes = s->ram.stats.normal * PAGE_SIZE;
	i->dirty_sync_count = pass;
	i->dirty_pages_rate = rate;
	i->mbps = s->bw * 8 / 1e6;
	i->pages_per_second = (uint64_t)(s->bw / (PAGE_SIZE + 8));
	i->expected_downtime_ms = expected_ms;
	pthread_mutex_unlock(&s->m->lock);
}

/* Keeps query-migrate's counters live during a pass. */
static void src_progress(void *opaque, uint64_t left)
{
	struct mig_src *s = opaque;
	struct migrate_info *i = &s->m->info;

	pthread_mutex_lock(&s->m->lock);
	i->transferred = src_sent(s);
	i->remaining = left * PAGE_SIZE;
	i->duplicate = s->ram.stats.duplicate;
	i->normal = s->ram.stats.normal;
	i->normal_bytes = s->ram.stats.normal * PAGE_SIZE;
	pthread_mutex_unlock(&s->m->lock);
	vm_throttle_kick(s->m->vm);
}

/* Auto-converge: sets the vCPU throttle (0 = off) and reports it. */
static void src_throttle(struct mig_src *s, uint32_t pct)
{
	vm_set_throttle(s->m->vm, pct);
	pthread_mutex_lock(&s->m->lock);
	s->m->info.throttle_pct = pct;
	pthread_mutex_unlock(&s->m->lock);
}

/* Sends one pass of whatever is dirty; measures the bandwidth. */
static int src_pass(struct mig_src *s, uint32_t pass)
{
	uint64_t t0 = vm_now_ns(), b0 = src_sent(s), dt;
	int ret = stream_u32_put(&s->buf, STREAM_PASS_BEGIN, pass) ?: mig_flush(s->m, &s->buf);

	pthread_mutex_lock(&s->m->lock);
	s->m->info.pass = pass;
	s->m->info.total = s->m->vm->mem.size;
	pthread_mutex_unlock(&s->m->lock);
	if (!ret)
		ret = ram_send_pass(&s->ram, s->chans, s->nchans);
	if (!ret)
		ret = stream_u32_put(&s->buf, STREAM_PASS_END, pass) ?: mig_flush(s->m, &s->buf);
	dt = vm_now_ns() - t0;
	s->pass_ns = dt;
	s->pass_bytes = src_sent(s) - b0;
	if (ret && ret != -ECANCELED)
		snprintf(s->err, sizeof(s->err), "lost the destination in pass %u: %s", pass,
			 strerror(-ret));
	if (!ret && dt > 1000000 && src_sent(s) - b0 > (1 << 20))
		s->bw = (double)(src_sent(s) - b0) * 1e9 / (double)dt;
	return ret;
}

/* The measured bandwidth (bytes/s), or 100 MB/s before there is one. */
static double src_bw(const struct mig_src *s)
{
	return s->bw > 0 ? s->bw : 100e6;
}

/* The pause but for its pages (ns): the state, the vCPUs' stop and save,
 * the last sync, the destination's load and the handoff's round trips. */
static double src_fixed_ns(const struct mig_src *s)
{
	return MIG_STATE_ESTIMATE * 1e9 / src_bw(s) + (double)s->stop_ns + (double)s->save_ns +
	       (double)s->sync_ns + (double)s->restore_ns + 1.5 * (double)s->rtt_ns;
}

/* The downtime if the guest paused now with PAGES dirty: stopping the vCPUs
 * and saving their and the in-kernel state (as rehearsed here), one more
 * dirty-log sync, the pages and the state at the measured bandwidth,
 * loading the state (as the destination timed it), and READY/GO/STARTED,
 * one and a half round trips. */
static uint64_t src_expected_ms(struct mig_src *s, uint64_t pages)
{
	double ns = (double)pages * (PAGE_SIZE + 8) * 1e9 / src_bw(s) + src_fixed_ns(s);

	return (uint64_t)(ns / 1e6 + 0.5);
}

/* Bytes of pages a pause of LIMIT_MS has room for (0 or less: none). */
static double src_fit_bytes(const struct mig_src *s, uint64_t limit_ms)
{
	return ((double)limit_ms * 1e6 - src_fixed_ns(s)) * src_bw(s) / 1e9;
}

bool migrate_pass_slow(uint64_t dirty_bytes, uint64_t sent_bytes, bool new_low)
{
	return !new_low || dirty_bytes > sent_bytes / 2;
}

bool migrate_throttle_now(uint32_t pass, int slow, uint32_t throttle)
{
	return slow >= 2 || (slow == 1 && (pass == 1 || throttle));
}

bool migrate_settle_pass(uint64_t pages, double dirty_pps, double bw, uint64_t expected_ns)
{
	double page_ns = bw > 0 ? (PAGE_SIZE + 8) * 1e9 / bw : 0;
	double next = dirty_pps * (double)pages * page_ns / 1e9;   /* dirtied meanwhile */

	return page_ns > 0 && next <= (double)pages / 2 &&
	       ((double)pages - next) * page_ns >= (double)expected_ns / 10;
}

uint32_t migrate_next_throttle(uint32_t cur, bool slow, double dirty_bps, double bw,
			       double rest, double fit, uint32_t max)
{
	uint32_t next = slow ? (cur ? cur + 10 : 20) : cur;
	double full = dirty_bps / (1.0 - (cur < 99 ? cur : 99) / 100.0);   /* unthrottled */

	if (bw > 0 && full > 0 && fit > 0 && rest > fit) {
		double q = cbrt(fit / rest);	/* what each pass may leave of the last */
		double need = 100.0 * (1.0 - q * bw / full);

		if (need > next)
			next = (uint32_t)need + 1;
	}
	return next < max ? next : max;
}

/* Pre-copy: passes while the guest runs, until the rest fits the downtime
 * limit (and one more pass would not take much of it away:
 * migrate_settle_pass), the dirty set stops shrinking (the Xen rule: two
 * passes in a row without a new low at least 10% under the best so far), or
 * the cap. Auto-converge throttles the vCPUs when the rest would not fit
 * within three more passes at the measured dirty rate and bandwidth, and
 * steps the throttle up after slow passes (migrate_next_throttle,
 * migrate_throttle_now), up to max-cpu-throttle; only a stall at the
 * ceiling switches over. The throttle holds until the pause. */
static int src_precopy(struct mig_src *s, uint32_t *last)
{
	uint64_t best = UINT64_MAX;
	uint32_t throttle = 0;
	int stalls = 0, slow = 0;

	for (uint32_t pass = 1;; pass++) {
		struct migrate_params p;
		uint64_t t_sync, exp, rate;
		int64_t pending;
		int ret;

		migrate_get_params(s->m, &p);
		if (p.max_bandwidth != s->ram.max_bandwidth)
			for (int i = 0; i < s->nchans; i++)
				chan_set_rate(s->chans[i], p.max_bandwidth / (uint64_t)s->nchans);
		s->ram.max_bandwidth = p.max_bandwidth;
		if (s->m->listener.pass)
			s->m->listener.pass(s->m->listener.opaque, pass);
		ret = src_pass(s, pass);
		if (ret)
			return ret;
		t_sync = vm_thread_ns();	/* its cost, as in the pause */
		pending = ram_sync(&s->ram);
		if (pending < 0)
			return (int)pending;
		s->sync_ns = vm_thread_ns() - t_sync;
		rate = s->ram.dirty_rate;
		exp = src_expected_ms(s, (uint64_t)pending);
		src_stats(s, pass, (uint64_t)pending, rate, exp);
		vmm_info("migration: pass %u: %.1f MiB in %llu ms, %lld pages dirty (%llu/s), "
			 "expected downtime %llu ms, throttle %u%%", pass,
			 (double)s->pass_bytes / (1 << 20), (unsigned long long)s->pass_ns / 1000000,
			 (long long)pending, (unsigned long long)rate, (unsigned long long)exp,
			 throttle);
		*last = pass;
		if (exp <= p.downtime_limit_ms) {
			if (pass < p.max_passes &&
			    migrate_settle_pass((uint64_t)pending, (double)rate, s->bw,
						exp * 1000000)) {
				vmm_info("migration: the rest fits the limit; one more pass to take "
					 "its %lld pages out of the pause", (long long)pending);
				continue;
			}
			vmm_info("switching over after pass %u: %lld pages left, expected downtime %llu ms "
				 "(%.0f MB/s, vCPU stop %llu us, state save %llu us, sync %llu us, "
				 "state load %llu us, round trip %llu us)",
				 pass, (long long)pending, (unsigned long long)exp, s->bw / 1e6,
				 (unsigned long long)s->stop_ns / 1000,
				 (unsigned long long)s->save_ns / 1000,
				 (unsigned long long)s->sync_ns / 1000,
				 (unsigned long long)s->restore_ns / 1000,
				 (unsigned long long)s->rtt_ns / 1000);
			return 0;
		}
		if ((uint64_t)pending < best - best / 10) {
			best = (uint64_t)pending;
			stalls = 0;
		} else {
			stalls++;
		}
		slow = migrate_pass_slow((uint64_t)pending * PAGE_SIZE, s->pass_bytes, !stalls) ?
		       slow + 1 : 0;
		if (p.auto_converge && throttle < p.max_cpu_throttle && pass < p.max_passes) {
			uint32_t next = migrate_next_throttle(
				throttle, migrate_throttle_now(pass, slow, throttle),
				(double)rate * PAGE_SIZE, s->bw, (double)pending * (PAGE_SIZE + 8),
				src_fit_bytes(s, p.downtime_limit_ms), p.max_cpu_throttle);

			if (next > throttle) {
				throttle = next;
				src_throttle(s, throttle);
				continue;
			}
		}
		if ((stalls >= 2 || pass >= p.max_passes) && p.switchover_on_stall)
			return 0;
		if (s->m->cancel)
			return -ECANCELED;
	}
}

/* Frames the state of every vCPU and of KVM's in-kernel devices into B. */
static int src_save_cpus(struct mig_src *s, struct stream_buf *b)
{
	struct vm *vm = s->m->vm;
	struct cpu_state *cs = malloc(sizeof(*cs));
	struct vm_kvm_state ks;
	size_t fr;
	int ret = cs ? 0 : -ENOMEM;

	for (int i = 0; !ret && i < vm->nr_vcpus; i++) {
		ret = cpustate_save(vm->vcpus[i], s->m->msrs, s->m->nmsrs, cs);
		if (!ret)
			ret = stream_frame_begin(b, STREAM_CPU, 0, &fr) ?:
			      vmstate_save(&cpu_state_vmsd, cs, b) ?: stream_frame_end(b, fr);
	}
	free(cs);
	if (!ret)
		ret = vmstate_kvm_save(vm, &ks);
	if (!ret)
		ret = stream_frame_begin(b, STREAM_DEVICE, 0, &fr) ?:
		      stream_buf_put_string(b, "kvm-vm") ?:
		      vmstate_save(&vm_kvm_state_vmsd, &ks, b) ?: stream_frame_end(b, fr);
	return ret;
}

static int src_put_cpus(struct mig_src *s)
{
	int ret = src_save_cpus(s, &s->buf);

	if (ret)
		snprintf(s->err, sizeof(s->err), "cannot read the vCPU state: %s", strerror(-ret));
	return ret ?: mig_flush(s->m, &s->buf);
}

static void src_rehearse_save(void *arg)
{
	struct mig_src *s = arg;
	struct stream_buf b;
	uint64_t t0 = vm_now_ns();

	stream_buf_init(&b);
	b.sum = s->buf.sum;
	if (!src_save_cpus(s, &b))
		s->save_ns = vm_now_ns() - t0;
	stream_buf_free(&b);
}

static uint64_t median3(const uint64_t *v)
{
	uint64_t lo = v[0] < v[1] ? v[0] : v[1], hi = v[0] < v[1] ? v[1] : v[0];

	return v[2] < lo ? lo : v[2] > hi ? hi : v[2];
}

/* The source's part of the pause, rehearsed before the first pass: stopping
 * the vCPUs and saving their state, three times, for the medians. The first
 * run pays for what is cold (under emulation, the code's translation: 15 ms
 * for the save against 0.3-0.7 warm), and on a shared CPU a warm run once
 * took 12 ms for each against the usual 2-4 and 0.3-0.7. The guest stands
 * still that long each time (a few ms under emulation, well under one on
 * hardware), with no STOP event: a host's preemption is longer. Without a
 * rehearsal (the guest ended) both stay 0 and the migration fails at its
 * pause anyway. */
static void src_rehearse(struct mig_src *s)
{
	uint64_t stop[3], save[3];

	for (int i = 0; i < 3; i++) {
		s->save_ns = 0;
		if (vm_rehearse_pause(s->m->vm, src_rehearse_save, s, &stop[i])) {
			s->stop_ns = s->save_ns = 0;
			return;
		}
		save[i] = s->save_ns;
	}
	s->stop_ns = median3(stop);
	s->save_ns = median3(save);
}

static int src_put_devices(struct mig_src *s)
{
	struct vm *vm = s->m->vm;
	int ret = 0;

	for (int i = 0; !ret && i < device_count(vm); i++) {
		struct device *d = device_get(vm, i);
		size_t fr;

		if (!d->ops->vmsd)
			continue;
		if (d->ops->sync_state)
			ret = d->ops->sync_state(d->opaque);
		if (!ret)
			ret = stream_frame_begin(&s->buf, STREAM_DEVICE, 0, &fr) ?:
			      stream_buf_put_string(&s->buf, d->id) ?:
			      vmstate_save(d->ops->vmsd, d->ops->state(d->opaque), &s->buf) ?:
			      stream_frame_end(&s->buf, fr);
		if (ret)
			snprintf(s->err, sizeof(s->err), "cannot save device %s: %s", d->id,
				 strerror(-ret));
	}
	return ret ?: mig_flush(s->m, &s->buf);
}

/* Waits for one frame of type WANT; FAIL/CANCEL carry the peer's reason. */
static int src_expect(struct mig_src *s, uint32_t want, const char *what)
{
	struct stream_frame f;
	struct stream_reader r;
	char reason[STREAM_REASON_MAX];
	int ret = mig_recv_ctl(s->m, &f, &s->in);

	if (ret) {
		snprintf(s->err, sizeof(s->err), "destination gone while waiting for %s: %s", what,
			 strerror(-ret));
		return ret;
	}
	if (f.type == want)
		return 0;
	stream_reader_init(&r, s->in.data, s->in.len);
	if ((f.type == STREAM_FAIL || f.type == STREAM_CANCEL) &&
	    stream_reason_parse(&r, reason, sizeof(reason)) == 0) {
		snprintf(s->err, sizeof(s->err), "destination could not take the guest: %.200s", reason);
		return -EPERM;
	}
	snprintf(s->err, sizeof(s->err), "unexpected frame %u while waiting for %s", f.type, what);
	return -EPROTO;
}

/* Stop-and-copy: pause, last pages, vCPU/KVM state, device state, DONE. */
static int src_final(struct mig_src *s, uint32_t pass)
{
	struct migrate_info *i = &s->m->info;
	uint64_t t_ram, t_cpu;
	int64_t pending;
	int ret = 0;

	/* Wait until the destination has taken in the last pass: on a shared
	 * CPU its work on those pages would otherwise run in the pause, ahead
	 * of the vCPUs that must stop (measured under emulation: the pause took
	 * 12-41 ms without this wait; with it the pause and the final pass
	 * together took 3-5 ms). The guest runs on meanwhile, and what it
	 * dirtied lands in the pause (a bench round under emulation: expected
	 * 13 ms, the pause's pages took 94). So the dirty log is read again;
	 * should the rest no longer fit the limit, a pass goes first (twice at
	 * most). */
	for (int more = 0; s->sync; more++) {
		struct migrate_params p;
		uint64_t exp;

		ret = stream_frame_put(&s->buf, STREAM_SYNC, NULL, 0) ?: mig_flush(s->m, &s->buf) ?:
		      src_expect(s, STREAM_SYNC, "SYNC");
		if (ret || more == 2)
			break;
		pending = ram_sync(&s->ram);
		if (pending < 0) {
			snprintf(s->err, sizeof(s->err), "cannot read the dirty log: %s",
				 strerror((int)-pending));
			return (int)pending;
		}
		migrate_get_params(s->m, &p);
		exp = src_expected_ms(s, (uint64_t)pending);
		src_stats(s, pass, (uint64_t)pending, i->dirty_pages_rate, exp);
		if (exp <= p.downtime_limit_ms)
			break;
		vmm_info("migration: %lld pages dirty after the wait for the destination, expected "
			 "downtime %llu ms: pass %u before the pause", (long long)pending,
			 (unsigned long long)exp, pass);
		if (s->m->listener.pass)
			s->m->listener.pass(s->m->listener.opaque, pass);
		ret = src_pass(s, pass++);
		if (ret)
			return ret;
	}
	if (ret)
		return ret;
	mig_set_status(s->m, MIG_DEVICE, NULL);
	s->pause_ns = vm_now_ns();
	ret = vm_pause(s->m->vm);
	if (ret) {
		snprintf(s->err, sizeof(s->err), "the guest ended during migration");
		return ret;
	}
	s->paused = true;
	pending = ram_sync(&s->ram);
	ret = pending < 0 ? -EIO : src_pass(s, pass);
	/* the extra streams end here; the destination waits for each DONE */
	for (int i = 1; !ret && i < s->nchans; i++)
		ret = stream_frame_put(&s->buf, STREAM_DONE, NULL, 0) ?:
		      mig_flush_to(s->chans[i], &s->buf);
	t_ram = vm_now_ns();
	if (!ret)
		ret = src_put_cpus(s);
	t_cpu = vm_now_ns();
	if (!ret)
		ret = src_put_devices(s);
	if (!ret)
		ret = stream_frame_put(&s->buf, STREAM_DONE, NULL, 0) ?: mig_flush(s->m, &s->buf);
	pthread_mutex_lock(&s->m->lock);
	i->down_ram_ms = (t_ram - s->pause_ns) / 1000000;
	i->down_cpu_ms = (t_cpu - t_ram) / 1000000;
	i->down_dev_ms = (vm_now_ns() - t_cpu) / 1000000;
	pthread_mutex_unlock(&s->m->lock);
	src_stats(s, pass, 0, 0, i->expected_downtime_ms);
	if (!ret)
		vmm_info("migration: stop-and-copy: %lld pages in %llu ms, vCPU state %llu ms, "
			 "device state %llu ms", (long long)pending,
			 (unsigned long long)i->down_ram_ms, (unsigned long long)i->down_cpu_ms,
			 (unsigned long long)i->down_dev_ms);
	if (ret && !s->err[0])
		snprintf(s->err, sizeof(s->err), "lost the destination in stop-and-copy: %s",
			 strerror(-ret));
	return ret;
}

/* READY/GO/STARTED. Returns 0 when the destination runs the guest, 1 when
 * the outcome is unknown (keep the guest paused here), -errno when the
 * guest must resume here. */
static int src_handoff(struct mig_src *s)
{
	struct migrate *m = s->m;
	int ret;

	m->chan.timeout_ms = MIG_READY_TIMEOUT_MS;
	ret = src_expect(s, STREAM_READY, "READY");
	if (ret)
		return ret;
	pthread_mutex_lock(&m->lock);
	m->handoff = !m->cancel;
	pthread_mutex_unlock(&m->lock);
	if (!m->handoff)
		return -ECANCELED;
	/* From here on the guest must not run in two places. The disks are on
	 * shared storage: the destination takes their locks on GO. */
	vm_set_phase(m->vm, VM_PHASE_POSTMIGRATE);
	devices_unlock_images();
	s->unlocked = true;
	ret = stream_frame_put(&s->buf, STREAM_GO, NULL, 0) ?: mig_flush(m, &s->buf);
	if (!ret)
		ret = src_expect(s, STREAM_STARTED, "STARTED");
	if (!ret)
		return 0;
	if (ret == -ETIMEDOUT) {
		snprintf(s->err, sizeof(s->err), "no word from the destination after GO: the guest "
			 "may be running there, so it stays paused here ('cont' resumes it)");
		vm_set_phase(m->vm, VM_PHASE_NORMAL);
		return 1;
	}
	/* The connection broke before STARTED: the destination died before it
	 * could run the guest, which therefore resumes here. */
	vm_set_phase(m->vm, VM_PHASE_NORMAL);
	return ret;
}

static void src_finish(struct mig_src *s, int ret)
{
	struct migrate *m = s->m;
	struct migrate_info *i = &m->info;
	enum migrate_status st = MIG_COMPLETED;
	uint64_t end = vm_now_ns();

	/* The guest runs again (there, or here after a failure) before dirty
	 * logging goes off: with huge pages KVM then rebuilds its large
	 * mappings, which takes a while and is no part of the downtime. */
	if (ret < 0 && s->unlocked && devices_lock_images())
		vmm_warn("could not take the disk image locks back");
	if (ret < 0 && s->paused && vm_resume(m->vm))
		vmm_warn("could not resume the guest after a failed migration");
	if (s->tracking)
		ram_track_stop(&s->ram);
	pthread_mutex_lock(&m->lock);
	i->total_ms = (end - m->start_ns) / 1000000;
	if (ret == 0) {
		i->downtime_ms = (end - s->pause_ns) / 1000000;
		i->down_handoff_ms = i->downtime_ms - i->down_ram_ms - i->down_cpu_ms - i->down_dev_ms;
		i->remaining = 0;
	}
	if (m->cancel && ret < 0) {
		st = MIG_CANCELLED;
		snprintf(s->err, sizeof(s->err), "migration cancelled");
	} else if (ret) {
		st = MIG_FAILED;
	}
	chan_close(&m->chan);
	mig_close_xchans(m);
	m->busy = false;
	m->handoff = false;
	pthread_mutex_unlock(&m->lock);
	stream_buf_free(&s->buf);
	stream_buf_free(&s->in);
	if (ret == 0)
		vmm_info("migration completed: downtime %llu ms, total %llu ms, %llu MiB sent",
			 (unsigned long long)i->downtime_ms, (unsigned long long)i->total_ms,
			 (unsigned long long)(i->transferred >> 20));
	else
		vmm_warn("migration %s: %s", st == MIG_CANCELLED ? "cancelled" : "failed", s->err);
	mig_set_status(m, st, ret ? s->err : NULL);
}

void *mig_source_thread(void *arg)
{
	struct mig_src *s = calloc(1, sizeof(*s));
	struct migrate *m = arg;
	uint32_t pass = 0;
	int ret;

	privilege_seccomp(THREAD_MIGRATION);
	if (!s) {
		pthread_mutex_lock(&m->lock);
		m->busy = false;
		pthread_mutex_unlock(&m->lock);
		mig_set_status(m, MIG_FAILED, "out of memory");
		return NULL;
	}
	s->m = m;
	stream_buf_init(&s->buf);
	stream_buf_init(&s->in);
	ret = src_handshake(s);
	if (!ret) {
		ret = ram_track_start(&s->ram, m->vm);
		s->tracking = !ret;
		s->ram.sum = s->sum;
		s->ram.inplace = s->inplace;
		s->ram.cancel = &m->cancel;
		s->ram.progress = src_progress;
		s->ram.progress_opaque = s;
		pthread_mutex_lock(&m->lock);
		m->info.setup_ms = (vm_now_ns() - m->start_ns) / 1000000;
		pthread_mutex_unlock(&m->lock);
		if (ret)
			snprintf(s->err, sizeof(s->err), "cannot start dirty tracking: %s",
				 strerror(-ret));
	}
	if (!ret) {
		src_rehearse(s);
		mig_set_status(m, MIG_ACTIVE, NULL);
		ret = src_precopy(s, &pass);
	}
	if (!ret)
		ret = src_final(s, pass + 1);
	src_throttle(s, 0);	/* only now: the guest ran until the pause */
	if (!ret)
		ret = src_handoff(s);
	if (ret < 0 && !s->err[0])
		snprintf(s->err, sizeof(s->err), "%s", strerror(-ret));
	src_finish(s, ret);
	free(s);
	return NULL;
}
