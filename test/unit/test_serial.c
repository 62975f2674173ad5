/*
 * Unit tests for the 16550A UART (src/devices/serial.c), driven through
 * serial_pio the way a guest driver does: Linux's 8250 probe (scratch, IER,
 * loopback, FIFO detection), the divisor latch, interrupt-driven transmit to
 * a pipe and receive from serial_input, and receive FIFO overflow.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/serial.h"

enum { RBR = 0, THR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4,
       LSR = 5, MSR = 6, SCR = 7 };

/* Every level the UART put on its IRQ line, in order. */
struct irqlog {
	int n;
	int levels[256];
};

struct fixture {
	struct serial s;
	int pipe[2];
	struct irqlog irq;
};

static void irq_record(void *opaque, int level)
{
	struct irqlog *l = opaque;

	assert_true(l->n < (int)ARRAY_SIZE(l->levels));
	l->levels[l->n++] = level;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || pipe2(f->pipe, O_NONBLOCK) < 0)
		return -1;
	serial_init(&f->s, f->pipe[1], irq_record, &f->irq);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	serial_destroy(&f->s);
	close(f->pipe[0]);
	close(f->pipe[1]);
	free(f);
	return 0;
}

static void out(struct serial *s, unsigned reg, uint8_t v)
{
	serial_pio(s, reg, &v, 1, true);
}

static uint8_t in(struct serial *s, unsigned reg)
{
	uint8_t v = 0x5C;

	serial_pio(s, reg, &v, 1, false);
	return v;
}

static int last_level(const struct fixture *f)
{
	return f->irq.n ? f->irq.levels[f->irq.n - 1] : 0;
}

static void test_reset_state(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(in(&f->s, IER), 0);
	assert_int_equal(in(&f->s, IIR), 0x01);   /* no interrupt pending */
	assert_int_equal(in(&f->s, LSR), 0x60);   /* THRE | TEMT, no data */
	assert_int_equal(in(&f->s, MSR) & 0xB0, 0xB0);   /* DCD, DSR, CTS */
	assert_int_equal(in(&f->s, RBR), 0);      /* empty FIFO reads 0 */
	assert_int_equal(f->irq.n, 0);
}

static void test_scratch(void **state)
{
	struct fixture *f = *state;

	for (unsigned v = 0; v < 256; v += 0x55) {
		out(&f->s, SCR, (uint8_t)v);
		assert_int_equal(in(&f->s, SCR), v);
	}
	out(&f->s, SCR, 0xA5);
	assert_int_equal(in(&f->s, SCR), 0xA5);
}

static void test_divisor_latch(void **state)
{
	struct fixture *f = *state;

	out(&f->s, IER, 0x05);
	out(&f->s, LCR, 0x80 | 0x03);            /* DLAB, 8N1 */
	assert_int_equal(in(&f->s, LCR), 0x83);
	out(&f->s, DLL, 0x01);                   /* 115200 baud */
	out(&f->s, DLM, 0x00);
	assert_int_equal(in(&f->s, DLL), 0x01);
	assert_int_equal(in(&f->s, DLM), 0x00);
	out(&f->s, DLL, 0x0C);
	out(&f->s, DLM, 0x34);
	assert_int_equal(in(&f->s, DLL), 0x0C);
	assert_int_equal(in(&f->s, DLM), 0x34);
	/* writes under DLAB go to the latch, not the line or IER */
	assert_int_equal(f->irq.n, 0);
	out(&f->s, LCR, 0x03);
	assert_int_equal(in(&f->s, IER), 0x05);
	out(&f->s, THR, 'z');
	out(&f->s, LCR, 0x83);
	assert_int_equal(in(&f->s, DLL), 0x0C);  /* latch kept */
	assert_int_equal(in(&f->s, DLM), 0x34);
	out(&f->s, LCR, 0x03);
	{
		char c[4];

		assert_int_equal(read(f->pipe[0], c, sizeof(c)), 1);   /* only 'z' */
		assert_int_equal(c[0], 'z');
	}
}

/* Linux 8250 autoconfig: IER must read back 0 and 0x0F. */
static void test_ier_probe(void **state)
{
	struct fixture *f = *state;

	out(&f->s, IER, 0x00);
	assert_int_equal(in(&f->s, IER), 0x00);
	out(&f->s, IER, 0x0F);
	assert_int_equal(in(&f->s, IER) & 0x0F, 0x0F);
	out(&f->s, IER, 0xFF);
	assert_int_equal(in(&f->s, IER), 0x0F);   /* high nibble reserved */
	out(&f->s, IER, 0x00);
	assert_int_equal(last_level(f), 0);
}

/* Linux: MCR = LOOP|OUT2|RTS (0x1A) must give MSR & 0xF0 == 0x90. */
static void test_loopback(void **state)
{
	struct fixture *f = *state;
	char c;

	out(&f->s, MCR, 0x1A);
	assert_int_equal(in(&f->s, MCR), 0x1A);
	assert_int_equal(in(&f->s, MSR) & 0xF0, 0x90);
	out(&f->s, MCR, 0x1F);                    /* all outputs -> all inputs */
	assert_int_equal(in(&f->s, MSR) & 0xF0, 0xF0);
	out(&f->s, MCR, 0x10);
	assert_int_equal(in(&f->s, MSR) & 0xF0, 0x00);
	/* transmitted bytes come back on the receive side, not out the fd */
	out(&f->s, THR, 'L');
	assert_int_equal(in(&f->s, LSR) & 0x01, 0x01);
	assert_int_equal(in(&f->s, RBR), 'L');
	assert_int_equal(in(&f->s, LSR) & 0x01, 0x00);
	assert_int_equal(read(f->pipe[0], &c, 1), -1);
	assert_int_equal(errno, EAGAIN);
	/* host input is not accepted in loopback */
	assert_int_equal(serial_input(&f->s, (const uint8_t *)"x", 1), 0);
	out(&f->s, MCR, 0x0B);
	assert_int_equal(in(&f->s, MSR) & 0xB0, 0xB0);
}

static void test_fifo_detect(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(in(&f->s, IIR) & 0xC0, 0x00);
	out(&f->s, FCR, 0x01);                      /* enable FIFO */
	assert_int_equal(in(&f->s, IIR) & 0xC0, 0xC0);   /* 16550A */
	assert_int_equal(in(&f->s, IIR), 0xC1);
	out(&f->s, FCR, 0x00);
	assert_int_equal(in(&f->s, IIR) & 0xC0, 0x00);
}

static void test_tx_to_fd_and_thri(void **state)
{
	struct fixture *f = *state;
	char buf[16];

	out(&f->s, THR, 'a');
	out(&f->s, THR, 'b');
	assert_int_equal(f->irq.n, 0);             /* IER.THRI off: no IRQ */
	assert_int_equal(read(f->pipe[0], buf, sizeof(buf)), 2);
	assert_memory_equal(buf, "ab", 2);

	/* Enabling THRI with an empty THR raises it at once. */
	out(&f->s, IER, 0x02);
	assert_int_equal(last_level(f), 1);
	assert_int_equal(in(&f->s, IIR) & 0x0F, 0x02);
	/* reading IIR acknowledged it */
	assert_int_equal(last_level(f), 0);
	assert_int_equal(in(&f->s, IIR) & 0x0F, 0x01);

	/* each byte raises THRI again; IIR read clears it */
	f->irq.n = 0;
	out(&f->s, THR, 'c');
	assert_int_equal(f->irq.n, 1);
	assert_int_equal(f->irq.levels[0], 1);
	assert_int_equal(in(&f->s, IIR), 0x02);
	assert_int_equal(f->irq.n, 2);
	assert_int_equal(f->irq.levels[1], 0);
	assert_int_equal(in(&f->s, LSR) & 0x60, 0x60);
	assert_int_equal(read(f->pipe[0], buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], 'c');

	/* disabling THRI drops the line */
	out(&f->s, THR, 'd');
	assert_int_equal(last_level(f), 1);
	out(&f->s, IER, 0x00);
	assert_int_equal(last_level(f), 0);
}

/* serial8250_do_startup's THRE test: the THRI must come back each time
 * IER.THRI goes 0 -> 1, or Linux flags UART_BUG_THRE and polls. */
static void test_linux_thre_probe(void **state)
{
	struct fixture *f = *state;

	out(&f->s, IER, 0x02);
	assert_int_equal(in(&f->s, IIR) & 0x0F, 0x02);
	out(&f->s, IER, 0x00);
	out(&f->s, IER, 0x02);
	assert_int_equal(in(&f->s, LSR) & 0x40, 0x40);
	assert_int_equal(in(&f->s, IIR) & 0x01, 0x00);
	out(&f->s, IER, 0x00);
	assert_int_equal(last_level(f), 0);
}

static void test_tx_no_fd(void **state)
{
	struct serial s;

	serial_init(&s, -1, NULL, NULL);
	out(&s, IER, 0x02);
	out(&s, THR, 'x');                         /* dropped, no crash */
	assert_int_equal(in(&s, IIR) & 0x0F, 0x02);
	serial_destroy(&s);
}

static void test_rx(void **state)
{
	struct fixture *f = *state;
	const uint8_t msg[] = "hello";

	assert_int_equal(serial_input(&f->s, msg, 5), 5);
	assert_int_equal(in(&f->s, LSR) & 0x01, 0x01);
	assert_int_equal(f->irq.n, 0);             /* IER.RDI off */
	out(&f->s, IER, 0x01);
	assert_int_equal(last_level(f), 1);
	assert_int_equal(in(&f->s, IIR) & 0x0F, 0x04);
	assert_int_equal(last_level(f), 1);        /* IIR read does not ack RDI */
	for (int i = 0; i < 4; i++)
		assert_int_equal(in(&f->s, RBR), msg[i]);
	assert_int_equal(last_level(f), 1);
	assert_int_equal(in(&f->s, RBR), 'o');
	assert_int_equal(last_level(f), 0);        /* drained */
	assert_int_equal(in(&f->s, LSR) & 0x01, 0x00);
	assert_int_equal(in(&f->s, IIR) & 0x0F, 0x01);

	/* new input raises RDI straight away */
	assert_int_equal(serial_input(&f->s, (const uint8_t *)"!", 1), 1);
	assert_int_equal(last_level(f), 1);
	assert_int_equal(in(&f->s, RBR), '!');
	assert_int_equal(last_level(f), 0);
}

/* RDI has priority over THRI; both share the one line. */
static void test_rx_tx_priority(void **state)
{
	struct fixture *f = *state;

	out(&f->s, IER, 0x03);
	assert_int_equal(last_level(f), 1);
	assert_int_equal(serial_input(&f->s, (const uint8_t *)"q", 1), 1);
	assert_int_equal(in(&f->s, IIR) & 0x0F, 0x04);
	assert_int_equal(in(&f->s, RBR), 'q');
	assert_int_equal(in(&f->s, IIR) & 0x0F, 0x02);
	assert_int_equal(in(&f->s, IIR) & 0x0F, 0x01);
	assert_int_equal(last_level(f), 0);
}

static void test_rx_overflow(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[100];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i + 1);
	assert_int_equal(serial_input(&f->s, buf, sizeof(buf)), SERIAL_FIFO_SIZE);
	assert_int_equal(serial_input(&f->s, buf, 1), 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(in(&f->s, RBR), buf[i]);
	/* room for 10 more; the rest is refused */
	assert_int_equal(serial_input(&f->s, buf + 64, 36), 10);
	for (int i = 10; i < 74; i++)
		assert_int_equal(in(&f->s, RBR), buf[i]);
	assert_int_equal(in(&f->s, LSR) & 0x01, 0);
	assert_int_equal(in(&f->s, RBR), 0);
}

static void test_fifo_clear(void **state)
{
	struct fixture *f = *state;

	out(&f->s, IER, 0x01);
	assert_int_equal(serial_input(&f->s, (const uint8_t *)"abc", 3), 3);
	assert_int_equal(last_level(f), 1);
	out(&f->s, FCR, 0x03);                     /* enable + clear receive FIFO */
	assert_int_equal(in(&f->s, LSR) & 0x01, 0);
	assert_int_equal(last_level(f), 0);
	assert_int_equal(serial_input(&f->s, (const uint8_t *)"d", 1), 1);
	assert_int_equal(in(&f->s, RBR), 'd');
}

/* Wider reads fill the extra bytes with zeros; offsets past 7 are ignored. */
static void test_access_width(void **state)
{
	struct fixture *f = *state;
	uint8_t d[4] = { 0xEE, 0xEE, 0xEE, 0xEE };

	out(&f->s, SCR, 0x77);
	serial_pio(&f->s, SCR, d, 4, false);
	assert_memory_equal(d, "\x77\0\0\0", 4);
	d[0] = 0x99;
	serial_pio(&f->s, 8, d, 1, true);
	assert_int_equal(in(&f->s, SCR), 0x77);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_reset_state),
		T(test_scratch),
		T(test_divisor_latch),
		T(test_ier_probe),
		T(test_loopback),
		T(test_fifo_detect),
		T(test_tx_to_fd_and_thri),
		T(test_linux_thre_probe),
		cmocka_unit_test(test_tx_no_fd),
		T(test_rx),
		T(test_rx_tx_priority),
		T(test_rx_overflow),
		T(test_fifo_clear),
		T(test_access_width),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
#undef T
}
