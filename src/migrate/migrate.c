/* The migration controller: parameters, status and statistics, and the
 * start/cancel/incoming entry points that QMP and the CLI call. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "migrate_int.h"
#include "vmm/cpustate.h"
#include "vmm/vm.h"

static const char *const status_names[] = {
	[MIG_NONE] = "none", [MIG_SETUP] = "setup", [MIG_ACTIVE] = "active",
	[MIG_DEVICE] = "device", [MIG_COMPLETED] = "completed", [MIG_FAILED] = "failed",
	[MIG_CANCELLING] = "cancelling", [MIG_CANCELLED] = "cancelled",
};

const char *migrate_status_name(enum migrate_status st)
{
	return st < ARRAY_SIZE(status_names) ? status_names[st] : "unknown";
}

struct migrate *migrate_new(struct vm *vm)
{
	struct migrate *m = calloc(1, sizeof(*m));

	if (!m) {
		vmm_err("out of memory for the migration controller");
		return NULL;
	}
	m->nmsrs = cpustate_msr_list(vm, m->msrs);
	if (m->nmsrs < 0) {
		vmm_err("cannot read KVM's MSR list: %s", strerror(-m->nmsrs));
		free(m);
		return NULL;
	}
	m->vm = vm;
	pthread_mutex_init(&m->lock, NULL);
	m->params = (struct migrate_params){
		.downtime_limit_ms = 100, .max_bandwidth = 0, .max_passes = 30,
		.switchover_on_stall = true, .multifd_channels = 1,
		.auto_converge = true, .max_cpu_throttle = 99,
	};
	m->chan.fd = -1;
	for (int i = 0; i < RAM_MAX_STREAMS - 1; i++)
		m->xchan[i].fd = -1;
	m->listen_fd = -1;
	return m;
}

void migrate_free(struct migrate *m)
{
	if (!m)
		return;
	if (migrate_cancel(m) == 0)
		vmm_info("outgoing migration cancelled");
	pthread_mutex_lock(&m->lock);
	mig_abort_chans(m);
	if (m->listen_fd >= 0)
		shutdown(m->listen_fd, SHUT_RDWR);
	pthread_mutex_unlock(&m->lock);
	if (m->joinable)
		pthread_join(m->thread, NULL);
	if (m->listen_fd >= 0)
		close(m->listen_fd);
	free(m);
}

void migrate_set_listener(struct migrate *m, const struct migrate_listener *l)
{
	m->listener = *l;
}

void mig_set_status(struct migrate *m, enum migrate_status st, const char *error)
{
	pthread_mutex_lock(&m->lock);
	m->info.status = st;
	if (error)
		snprintf(m->info.error, sizeof(m->info.error), "%s", error);
	pthread_mutex_unlock(&m->lock);
	if (m->listener.status)
		m->listener.status(m->listener.opaque, st);
}

void migrate_get_params(struct migrate *m, struct migrate_params *p)
{
	pthread_mutex_lock(&m->lock);
	*p = m->params;
	pthread_mutex_unlock(&m->lock);
}

int migrate_set_params(struct migrate *m, const struct migrate_params *p, char *err,
		       size_t errlen)
{
	if (p->downtime_limit_ms < 1 || p->downtime_limit_ms > 2000000) {
		snprintf(err, errlen, "downtime-limit must be from 1 to 2000000 ms");
		return -EINVAL;
	}
	if (p->max_passes < 1 || p->max_passes > 1000) {
		snprintf(err, errlen, "the iteration cap must be from 1 to 1000");
		return -EINVAL;
	}
	if (p->max_cpu_throttle < 1 || p->max_cpu_throttle > 99) {
		snprintf(err, errlen, "max-cpu-throttle must be from 1 to 99");
		return -EINVAL;
	}
	if (p->multifd_channels < 1 || p->multifd_channels > RAM_MAX_STREAMS) {
		snprintf(err, errlen, "multifd-channels must be from 1 to %d", RAM_MAX_STREAMS);
		return -EINVAL;
	}
	pthread_mutex_lock(&m->lock);
	m->params = *p;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

void migrate_query(struct migrate *m, struct migrate_info *out)
{
	pthread_mutex_lock(&m->lock);
	*out = m->info;
	if (m->busy && m->start_ns)
		out->total_ms = (vm_now_ns() - m->start_ns) / 1000000;
	pthread_mutex_unlock(&m->lock);
}

/* Claims the controller for a new migration; -EBUSY if one runs. */
static int mig_claim(struct migrate *m, const char *uri, char *err, size_t errlen)
{
	pthread_mutex_lock(&m->lock);
	if (m->busy) {
		pthread_mutex_unlock(&m->lock);
		snprintf(err, errlen, "a migration is already in progress");
		return -EBUSY;
	}
	m->busy = true;
	m->cancel = false;
	m->handoff = false;
	memset(&m->info, 0, sizeof(m->info));
	snprintf(m->uri, sizeof(m->uri), "%s", uri);
	m->start_ns = vm_now_ns();
	pthread_mutex_unlock(&m->lock);
	if (m->joinable) {
		pthread_join(m->thread, NULL);
		m->joinable = false;
	}
	return 0;
}

static int mig_spawn(struct migrate *m, void *(*fn)(void *), char *err, size_t errlen)
{
	int ret = pthread_create(&m->thread, NULL, fn, m);

	if (ret) {
		snprintf(err, errlen, "cannot start the migration thread: %s", strerror(ret));
		pthread_mutex_lock(&m->lock);
		m->busy = false;
		pthread_mutex_unlock(&m->lock);
		return -ret;
	}
	m->joinable = true;
	return 0;
}

int migrate_start(struct migrate *m, const char *uri, char *err, size_t errlen)
{
	int ret;

	if (strncmp(uri, "tcp:", 4) && strncmp(uri, "unix:", 5)) {
		snprintf(err, errlen, "unsupported migration URI '%s' (want tcp:HOST:PORT or unix:PATH)",
			 uri);
		return -EINVAL;
	}
	if (vm_phase(m->vm) != VM_PHASE_NORMAL || vm_ended(m->vm) != VM_END_NONE) {
		snprintf(err, errlen, "the guest is not in a state that can migrate");
		return -EINVAL;
	}
	ret = mig_claim(m, uri, err, errlen);
	if (ret)
		return ret;
	mig_set_status(m, MIG_SETUP, NULL);
	return mig_spawn(m, mig_source_thread, err, errlen);
}

int migrate_cancel(struct migrate *m)
{
	int ret = 0;

	pthread_mutex_lock(&m->lock);
	if (!m->busy || m->listen_fd >= 0 || vm_phase(m->vm) == VM_PHASE_INMIGRATE)
		ret = -ENOENT;
	else if (m->handoff)
		ret = -EPERM;
	else {
		m->cancel = true;
		m->info.status = MIG_CANCELLING;
		mig_abort_chans(m);
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

int migrate_incoming(struct migrate *m, const char *uri, char *err, size_t errlen)
{
	int fd, ret;

	fd = chan_listen(uri, err, errlen);
	if (fd < 0)
		return fd;
	ret = mig_claim(m, uri, err, errlen);
	if (ret) {
		close(fd);
		return ret;
	}
	m->listen_fd = fd;
	vm_set_phase(m->vm, VM_PHASE_INMIGRATE);
	mig_set_status(m, MIG_SETUP, NULL);
	return mig_spawn(m, mig_dest_thread, err, errlen);
}

void mig_abort_chans(struct migrate *m)
{
	if (m->chan.fd >= 0)
		chan_abort(&m->chan);
	for (int i = 0; i < m->nxchan; i++)
		chan_abort(&m->xchan[i]);
}

void mig_close_xchans(struct migrate *m)
{
	for (int i = 0; i < m->nxchan; i++)
		chan_close(&m->xchan[i]);
	m->nxchan = 0;
}

int mig_flush_to(struct chan *c, struct stream_buf *b)
{
	int ret = stream_buf_error(b);

	if (!ret && b->len)
		ret = chan_send(c, b->data, b->len);
	stream_buf_reset(b);
	return ret;
}

int mig_flush(struct migrate *m, struct stream_buf *b)
{
	return mig_flush_to(&m->chan, b);
}

int mig_recv_ctl(struct migrate *m, struct stream_frame *f, struct stream_buf *payload)
{
	return chan_recv_frame(&m->chan, f, payload, STREAM_MAX_CONTROL);
}
