/* Dirty tracking, KVM's bitmap against its dirty ring, on the same guest
 * load: one vCPU writes one word to every page of a working set, over and
 * over, while the main thread takes the dirty pages every PERIOD ms, as
 * a migration pass does. Bitmap: KVM_GET_DIRTY_LOG, then KVM_CLEAR_DIRTY_LOG
 * (manual protect, in 8 MiB ranges, as vmm does). Ring: KVM_CAP_DIRTY_LOG_RING,
 * harvesting every vCPU ring and KVM_RESET_DIRTY_RINGS; a vCPU whose ring
 * fills exits (KVM_EXIT_DIRTY_RING_FULL) and harvests it itself.
 *
 * Prints, per mode, the pages the guest wrote per second (its speed under
 * tracking), the dirty pages collected, and the collector's CPU time per
 * dirty page; then the ratios ring / bitmap. Needs /dev/kvm (bench/dirtylog.sh
 * runs it in the sandbox where there is none).
 *
 * usage: dirtylog [--mem MIB] [--set MIB] [--period MS] [--secs S] [--ring N] */

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096ULL
#define CODE_GPA 0x1000ULL
#define COUNT_GPA 0x2000ULL	/* sweeps done, written by the guest */
#define SET_GPA (16ULL << 20)	/* the working set starts here */
#define CLEAR_PAGES 2048ULL	/* vmm's RAM_CLEAR_PAGES */

struct opts {
	uint64_t mem_mib, set_mib, period_ms, secs, ring;
};

struct run {
	const struct opts *o;
	bool ring;
	int kvm, vm, vcpu;
	uint8_t *mem;
	uint64_t npages;
	struct kvm_run *kr;
	size_t kr_size;
	struct kvm_dirty_gfn *gfns;	/* the vCPU's ring */
	uint32_t fetch;			/* next ring entry to look at */
	uint64_t *bitmap;
	pthread_mutex_t lock;		/* the ring: collector against vCPU */
	atomic_bool stop;
	uint64_t full_exits, collected, passes;
	double collect_ms;		/* collector thread CPU */
	const char *err;
};

static double thread_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int die(const char *what)
{
	fprintf(stderr, "dirtylog: %s: %s\n", what, strerror(errno));
	return -1;
}

/* 32-bit protected mode, flat segments, no paging: ebx walks the set a page
 * at a time writing eax; after each sweep the counter at COUNT_GPA and eax
 * go up. The set's end is patched in at END_OFF. */
static const uint8_t guest_code[] = {
	0xbb, 0x00, 0x00, 0x00, 0x01,		/* 0:  mov ebx, SET_GPA */
	0x89, 0x03,				/* 5:  mov [ebx], eax */
	0x81, 0xc3, 0x00, 0x10, 0x00, 0x00,	/* 7:  add ebx, 0x1000 */
	0x81, 0xfb, 0x00, 0x00, 0x00, 0x00,	/* 13: cmp ebx, END */
	0x72, 0xf0,				/* 19: jb 5 */
	0xff, 0x05, 0x00, 0x20, 0x00, 0x00,	/* 21: inc dword [COUNT_GPA] */
	0x40,					/* 27: inc eax */
	0xeb, 0xe2,				/* 28: jmp 0 */
};
#define END_OFF 15

static int setup(struct run *r)
{
	const struct opts *o = r->o;
	uint64_t size = o->mem_mib << 20, end = SET_GPA + (o->set_mib << 20);
	struct kvm_userspace_memory_region slot = {
		.slot = 0, .flags = KVM_MEM_LOG_DIRTY_PAGES, .guest_phys_addr = 0,
		.memory_size = size,
	};
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = CODE_GPA, .rflags = 2 };
	struct kvm_segment seg = { .base = 0, .limit = 0xffffffff, .present = 1, .dpl = 0,
				   .db = 1, .s = 1, .l = 0, .g = 1 };
	int mmap_size;

	r->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (r->kvm < 0)
		return die("/dev/kvm");
	r->vm = ioctl(r->kvm, KVM_CREATE_VM, 0);
	if (r->vm < 0)
		return die("KVM_CREATE_VM");
	if (r->ring) {
		struct kvm_enable_cap cap = { .cap = KVM_CAP_DIRTY_LOG_RING,
					      .args[0] = o->ring * sizeof(struct kvm_dirty_gfn) };

		if (ioctl(r->vm, KVM_ENABLE_CAP, &cap) < 0)
			return die("KVM_CAP_DIRTY_LOG_RING");
	} else {
		struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
					      .args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE };

		if (ioctl(r->kvm, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) &
		    KVM_DIRTY_LOG_INITIALLY_SET)
			cap.args[0] |= KVM_DIRTY_LOG_INITIALLY_SET;
		if (ioctl(r->vm, KVM_ENABLE_CAP, &cap) < 0)
			return die("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
	}
	r->npages = size / PAGE;
	r->bitmap = calloc(r->npages / 64 + 1, 8);
	r->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!r->bitmap || r->mem == MAP_FAILED)
		return die("memory");
	madvise(r->mem, size, MADV_HUGEPAGE);
	memcpy(r->mem + CODE_GPA, guest_code, sizeof(guest_code));
	memcpy(r->mem + CODE_GPA + END_OFF, &(uint32_t){ (uint32_t)end }, 4);
	memset(r->mem + SET_GPA, 1, o->set_mib << 20);	/* faulted in, not zero */
	slot.userspace_addr = (uint64_t)(uintptr_t)r->mem;
	if (ioctl(r->vm, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
		return die("KVM_SET_USER_MEMORY_REGION");
	r->vcpu = ioctl(r->vm, KVM_CREATE_VCPU, 0);
	mmap_size = ioctl(r->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (r->vcpu < 0 || mmap_size <= 0)
		return die("KVM_CREATE_VCPU");
	r->kr_size = (size_t)mmap_size;
	r->kr = mmap(NULL, r->kr_size, PROT_READ | PROT_WRITE, MAP_SHARED, r->vcpu, 0);
	if (r->kr == MAP_FAILED)
		return die("mmap kvm_run");
	if (r->ring) {
		r->gfns = mmap(NULL, o->ring * sizeof(struct kvm_dirty_gfn), PROT_READ | PROT_WRITE,
			       MAP_SHARED, r->vcpu, KVM_DIRTY_LOG_PAGE_OFFSET * PAGE);
		if (r->gfns == MAP_FAILED)
			return die("mmap dirty ring");
	}
	if (ioctl(r->vcpu, KVM_GET_SREGS, &sregs) < 0)
		return die("KVM_GET_SREGS");
	seg.type = 11, seg.selector = 8;
	sregs.cs = seg;
	seg.type = 3, seg.selector = 16;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = seg;
	sregs.cr0 |= 1;
	if (ioctl(r->vcpu, KVM_SET_SREGS, &sregs) < 0 || ioctl(r->vcpu, KVM_SET_REGS, &regs) < 0)
		return die("KVM_SET_REGS");
	return 0;
}

/* Moves the ring's dirty entries into the bitmap and hands them back to
 * KVM; the caller holds r->lock. */
static void ring_harvest(struct run *r)
{
	uint64_t n = 0;

	for (;;) {
		struct kvm_dirty_gfn *g = &r->gfns[r->fetch % r->o->ring];

		if (!(__atomic_load_n(&g->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY))
			break;
		if (g->slot == 0 && g->offset < r->npages)
			r->bitmap[g->offset / 64] |= 1ULL << (g->offset % 64);
		__atomic_store_n(&g->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		r->fetch++;
		n++;
	}
	if (n && ioctl(r->vm, KVM_RESET_DIRTY_RINGS, 0) < 0)
		r->err = "KVM_RESET_DIRTY_RINGS failed";
}

static void *vcpu_thread(void *arg)
{
	struct run *r = arg;

	while (!atomic_load(&r->stop)) {
		if (ioctl(r->vcpu, KVM_RUN, 0) < 0 && errno != EINTR) {
			r->err = "KVM_RUN failed";
			break;
		}
		if (r->kr->exit_reason == KVM_EXIT_DIRTY_RING_FULL) {
			pthread_mutex_lock(&r->lock);
			r->full_exits++;
			ring_harvest(r);
			pthread_mutex_unlock(&r->lock);
		} else if (r->kr->exit_reason != KVM_EXIT_INTR) {
			r->err = "unexpected vCPU exit";
			fprintf(stderr, "dirtylog: exit reason %u\n", r->kr->exit_reason);
			break;
		}
	}
	atomic_store(&r->stop, true);
	return NULL;
}

/* One pass: takes the pages dirtied since the last one out of KVM (and
 * re-protects them), counts them and clears the bitmap. */
static int collect(struct run *r)
{
	uint64_t words = r->npages / 64, n = 0;

	if (r->ring) {
		pthread_mutex_lock(&r->lock);
		ring_harvest(r);
		pthread_mutex_unlock(&r->lock);
	} else {
		struct kvm_dirty_log log = { .slot = 0, .dirty_bitmap = r->bitmap };

		if (ioctl(r->vm, KVM_GET_DIRTY_LOG, &log) < 0)
			return die("KVM_GET_DIRTY_LOG");
		for (uint64_t p = 0; p < r->npages; p += CLEAR_PAGES) {
			struct kvm_clear_dirty_log c = {
				.slot = 0, .first_page = p,
				.num_pages = (uint32_t)(r->npages - p < CLEAR_PAGES ? r->npages - p
										 : CLEAR_PAGES),
				.dirty_bitmap = &r->bitmap[p / 64],
			};
			bool any = false;

			for (uint64_t w = p / 64; w < (p + c.num_pages) / 64 && !any; w++)
				any = r->bitmap[w] != 0;
			if (any && ioctl(r->vm, KVM_CLEAR_DIRTY_LOG, &c) < 0)
				return die("KVM_CLEAR_DIRTY_LOG");
		}
	}
	pthread_mutex_lock(&r->lock);
	for (uint64_t w = 0; w < words; w++) {
		n += (uint64_t)__builtin_popcountll(r->bitmap[w]);
		r->bitmap[w] = 0;
	}
	pthread_mutex_unlock(&r->lock);
	r->collected += n;
	r->passes++;
	return 0;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec t = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };

	nanosleep(&t, NULL);
}

static void noop(int sig)
{
	(void)sig;
}

/* Runs one mode; fills *SPEED (pages the guest wrote per second). */
static int run_mode(struct run *r, double *speed)
{
	volatile uint32_t *count;
	uint64_t set_pages = (r->o->set_mib << 20) / PAGE;
	uint32_t c0;
	double t0, t1, cpu0;
	pthread_t th;

	pthread_mutex_init(&r->lock, NULL);
	if (setup(r))
		return -1;
	count = (volatile uint32_t *)(r->mem + COUNT_GPA);
	if (pthread_create(&th, NULL, vcpu_thread, r))
		return die("pthread_create");
	sleep_ms(200);		/* the first sweeps fault the set in */
	if (collect(r))
		return -1;
	r->collected = r->passes = 0;
	c0 = *count;
	t0 = now_s();
	cpu0 = thread_ms();
	while (now_s() - t0 < (double)r->o->secs && !atomic_load(&r->stop)) {
		sleep_ms(r->o->period_ms);
		if (collect(r)) {
			r->err = "collecting the dirty pages failed";
			break;
		}
	}
	r->collect_ms = thread_ms() - cpu0;
	t1 = now_s();
	*speed = (double)(uint32_t)(*count - c0) * (double)set_pages / (t1 - t0);
	atomic_store(&r->stop, true);
	r->kr->immediate_exit = 1;	/* a KVM_RUN about to start returns at once */
	pthread_kill(th, SIGUSR1);
	pthread_join(th, NULL);
	if (r->err) {
		fprintf(stderr, "dirtylog: %s\n", r->err);
		return -1;
	}
	/* the next mode starts from nothing */
	if (r->gfns)
		munmap(r->gfns, r->o->ring * sizeof(struct kvm_dirty_gfn));
	munmap(r->mem, r->o->mem_mib << 20);
	munmap(r->kr, r->kr_size);
	free(r->bitmap);
	close(r->vcpu);
	close(r->vm);
	close(r->kvm);
	return 0;
}

static int parse(int argc, char **argv, struct opts *o)
{
	for (int i = 1; i < argc; i++) {
		uint64_t *v = !strcmp(argv[i], "--mem") ? &o->mem_mib :
			      !strcmp(argv[i], "--set") ? &o->set_mib :
			      !strcmp(argv[i], "--period") ? &o->period_ms :
			      !strcmp(argv[i], "--secs") ? &o->secs :
			      !strcmp(argv[i], "--ring") ? &o->ring : NULL;
		char *end;

		if (!v || i + 1 == argc) {
			fprintf(stderr, "dirtylog: bad argument '%s'\nusage: dirtylog [--mem MIB] "
				"[--set MIB] [--period MS] [--secs S] [--ring ENTRIES]\n", argv[i]);
			return -1;
		}
		*v = strtoull(argv[++i], &end, 10);
		if (*end || !*v) {
			fprintf(stderr, "dirtylog: %s wants a positive number\n", argv[i - 1]);
			return -1;
		}
	}
	if (o->set_mib + 16 > o->mem_mib || o->set_mib + 16 > 4096 || (o->ring & (o->ring - 1))) {
		fprintf(stderr, "dirtylog: the set must fit above 16 MiB of --mem and below 4 GiB "
			"(the guest runs in 32-bit mode), and --ring be a power of two\n");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = { .mem_mib = 512, .set_mib = 64, .period_ms = 50, .secs = 3,
			  .ring = 4096 };
	struct run bm = { .o = &o }, rg = { .o = &o, .ring = true };
	double sb, sr;
	int kvm;

	if (parse(argc, argv, &o))
		return 2;
	signal(SIGUSR1, noop);
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		die("/dev/kvm");
		return 1;
	}
	if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING) <= 0) {
		fprintf(stderr, "dirtylog: this KVM has no dirty ring (KVM_CAP_DIRTY_LOG_RING)\n");
		return 1;
	}
	close(kvm);
	printf("dirtylog: %llu MiB guest, one vCPU writing a word to each page of %llu MiB, "
	       "collected every %llu ms for %llu s; ring of %llu entries\n",
	       (unsigned long long)o.mem_mib, (unsigned long long)o.set_mib,
	       (unsigned long long)o.period_ms, (unsigned long long)o.secs,
	       (unsigned long long)o.ring);
	if (run_mode(&bm, &sb) || run_mode(&rg, &sr))
		return 1;
	for (int i = 0; i < 2; i++) {
		struct run *r = i ? &rg : &bm;

		printf("%-7s guest %8.0f pages/s, %8llu dirty pages in %3llu passes, collector "
		       "%7.1f ms CPU = %6.2f us/page, %llu ring-full exits\n", i ? "ring" : "bitmap",
		       i ? sr : sb, (unsigned long long)r->collected, (unsigned long long)r->passes,
		       r->collect_ms, r->collected ? r->collect_ms * 1e3 / (double)r->collected : 0,
		       (unsigned long long)r->full_exits);
	}
	printf("ratio ring/bitmap: guest speed %.2f, collector CPU per dirty page %.2f\n", sr / sb,
	       (rg.collect_ms / (double)(rg.collected ? rg.collected : 1)) /
		       (bm.collect_ms / (double)(bm.collected ? bm.collected : 1)));
	return 0;
}
