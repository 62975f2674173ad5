/* Freestanding test guest for exact KVM tests without a Linux boot. vmm
 * enters it in 64-bit mode (identity-mapped first 4 GiB) with RSI pointing
 * at boot_params; the command line picks what it does:
 *   poweroff  print "guest: hello" and power off through ACPI PM1a
 *   reset     reset through port 0xCF9
 *   panic     report a panic through the pvpanic port
 *   idle      print "guest: idle" and halt for good with interrupts off, so
 *             no vCPU ever leaves KVM_RUN on its own
 *   dirty=N   keep incrementing the first byte of each page of N MiB at 16 MiB
 *             (the second byte is a constant, so no page is ever all zero),
 *             printing "guest: pass K" every 64 sweeps (migration tests);
 *             first fill the 4 MiB at 8 MiB with bytes never written again,
 *             so a pass after the first does not send them */
#include <stdint.h>

#define PM1A_CNT 0x604
#define RESET_PORT 0xCF9
#define PVPANIC_PORT 0x505
#define COM1 0x3F8
#define DIRTY_BASE 0x1000000UL
#define STATIC_BASE 0x800000UL
#define STATIC_SIZE 0x400000UL

void _start(void) __attribute__((section(".text.start"), naked, noreturn));
void guest_main(const uint8_t *boot_params) __attribute__((noreturn, used));

uint8_t guest_stack[16384] __attribute__((aligned(16), used));

void _start(void)
{
	__asm__ volatile("lea guest_stack+16384(%%rip), %%rsp\n\t"
			 "mov %%rsi, %%rdi\n\t"
			 "call guest_main\n\t" ::: "memory");
}

static void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }

static void puts_serial(const char *s)
{
	for (; *s; s++)
		outb(COM1, (uint8_t)*s);
}

static void put_dec(uint64_t v)
{
	char buf[24];
	int i = 23;

	buf[i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	puts_serial(&buf[i]);
}

static int starts_with(const char *s, const char *p)
{
	while (*p)
		if (*s++ != *p++)
			return 0;
	return 1;
}

static uint64_t parse_dec(const char *s)
{
	uint64_t v = 0;

	while (*s >= '0' && *s <= '9')
		v = v * 10 + (uint64_t)(*s++ - '0');
	return v;
}

static void __attribute__((noreturn)) halt(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

static void __attribute__((noreturn)) dirty(uint64_t mib)
{
	volatile uint8_t *p = (volatile uint8_t *)DIRTY_BASE;
	volatile uint8_t *q = (volatile uint8_t *)STATIC_BASE;
	uint64_t pages = mib << 8;

	for (uint64_t i = 0; i < STATIC_SIZE; i++)
		q[i] = (uint8_t)(i * 7 + 1) | 1;

	/* a second byte that never changes: no page of the region is ever all
	 * zero, so every pass carries its data (the counter wraps through 0) */
	for (uint64_t i = 0; i < pages; i++)
		p[(i << 12) + 1] = 0x5A;
	for (uint64_t pass = 1;; pass++) {
		for (uint64_t i = 0; i < pages; i++)
			p[i << 12]++;
		if ((pass & 63) == 0) {
			puts_serial("guest: pass ");
			put_dec(pass);
			puts_serial("\n");
		}
	}
}

void guest_main(const uint8_t *bp)
{
	uint32_t cmd_ptr;
	const char *cmd;

	__builtin_memcpy(&cmd_ptr, bp + 0x228, 4);
	cmd = (const char *)(uintptr_t)cmd_ptr;
	puts_serial("guest: hello\n");
	if (starts_with(cmd, "poweroff")) {
		outw(PM1A_CNT, (5 << 10) | (1 << 13));
	} else if (starts_with(cmd, "reset")) {
		outb(RESET_PORT, 0x06);
	} else if (starts_with(cmd, "panic")) {
		outb(PVPANIC_PORT, 1);
	} else if (starts_with(cmd, "dirty=")) {
		dirty(parse_dec(cmd + 6));
	} else if (starts_with(cmd, "idle")) {
		puts_serial("guest: idle\n");
		halt();
	}
	puts_serial("guest: unknown command\n");
	halt();
}
