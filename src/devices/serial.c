/* 8250/16550A UART emulation for the guest console: enough of the register
 * set for Linux's probing (scratch, loopback, FIFO detection) and for
 * interrupt-driven transmit and receive. Transmit is synchronous. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include "vmm/serial.h"
#include "vmm/vmstate.h"

enum {
	UART_RX = 0, UART_TX = 0, UART_DLL = 0, UART_IER = 1, UART_DLM = 1,
	UART_IIR = 2, UART_FCR = 2, UART_LCR = 3, UART_MCR = 4, UART_LSR = 5,
	UART_MSR = 6, UART_SCR = 7,
};

#define IER_RDI   0x01
#define IER_THRI  0x02
#define IER_RLSI  0x04
#define IER_MSI   0x08
#define IIR_NONE  0x01
#define IIR_THRI  0x02
#define IIR_RDI   0x04
#define IIR_FIFO  0xC0
#define FCR_FIFO  0x01
#define FCR_CLRX  0x02
#define LCR_DLAB  0x80
#define MCR_LOOP  0x10
#define LSR_DR    0x01
#define LSR_THRE  0x20
#define LSR_TEMT  0x40
#define MSR_IDLE  0xB0     /* DCD, DSR, CTS */

static void serial_update_irq(struct serial *s)
{
	uint8_t iir = IIR_NONE;
	int level;

	if ((s->ier & IER_RDI) && s->rx_len)
		iir = IIR_RDI;
	else if ((s->ier & IER_THRI) && s->thr_pending)
		iir = IIR_THRI;
	s->iir = iir | ((s->fcr & FCR_FIFO) ? IIR_FIFO : 0);
	level = !(iir & IIR_NONE);
	if (level != s->irq_level) {
		s->irq_level = level;
		if (s->irq)
			s->irq(s->irq_opaque, level);
	}
}

void serial_init(struct serial *s, int out_fd, void (*irq)(void *, int), void *opaque)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->out_fd = out_fd;
	s->irq = irq;
	s->irq_opaque = opaque;
	s->iir = IIR_NONE;
	s->lsr = LSR_THRE | LSR_TEMT;
	s->msr = MSR_IDLE;
	s->mcr = 0x08;     /* OUT2 */
}

void serial_destroy(struct serial *s)
{
	pthread_mutex_destroy(&s->lock);
}

static void serial_rx_push(struct serial *s, uint8_t c)
{
	if (s->rx_len == SERIAL_FIFO_SIZE)
		return;
	s->rx[(s->rx_head + s->rx_len++) % SERIAL_FIFO_SIZE] = c;
}

static void serial_tx(struct serial *s, uint8_t c)
{
	if (s->mcr & MCR_LOOP) {
		serial_rx_push(s, c);
	} else if (s->out_fd >= 0) {
		ssize_t n;

		do {
			n = write(s->out_fd, &c, 1);
		} while (n < 0 && errno == EINTR);
	}
	s->thr_pending = true;
}

/* MSR as the guest sees it: in loopback the modem outputs feed the inputs. */
static uint8_t serial_msr(const struct serial *s)
{
	if (s->mcr & MCR_LOOP) {
		uint8_t m = s->mcr;

		return (uint8_t)(((m & 0x02) << 3) | ((m & 0x01) << 5) |
				 ((m & 0x04) << 4) | ((m & 0x08) << 4));
	}
	return s->msr;
}

static uint8_t serial_read(struct serial *s, unsigned off)
{
	uint8_t v = 0;

	switch (off) {
	case UART_RX:
		if (s->lcr & LCR_DLAB)
			return s->dll;
		if (s->rx_len) {
			v = s->rx[s->rx_head];
			s->rx_head = (s->rx_head + 1) % SERIAL_FIFO_SIZE;
			s->rx_len--;
		}
		return v;
	case UART_IER:
		return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
	case UART_IIR:
		v = s->iir;
		if ((v & 0x0F) == IIR_THRI)
			s->thr_pending = false;
		return v;
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		return (uint8_t)(LSR_THRE | LSR_TEMT | (s->rx_len ? LSR_DR : 0));
	case UART_MSR:
		return serial_msr(s);
	default:
		return s->scr;
	}
}

static void serial_write(struct serial *s, unsigned off, uint8_t v)
{
	switch (off) {
	case UART_TX:
		if (s->lcr & LCR_DLAB)
			s->dll = v;
		else
			serial_tx(s, v);
		break;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			break;
		}
		if (!(s->ier & IER_THRI) && (v & IER_THRI))
			s->thr_pending = true;   /* THR is always empty */
		s->ier = v & 0x0F;
		break;
	case UART_FCR:
		s->fcr = v & (FCR_FIFO | 0xC0);
		if (v & FCR_CLRX)
			s->rx_len = 0;
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR:
		s->mcr = v & 0x1F;
		break;
	case UART_SCR:
		s->scr = v;
		break;
	default:
		break;   /* LSR and MSR are read-only */
	}
}

void serial_pio(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct serial *s = opaque;

	if (offset > 7)
		return;
	pthread_mutex_lock(&s->lock);
	if (is_write)
		serial_write(s, (unsigned)offset, data[0]);
	else
		data[0] = serial_read(s, (unsigned)offset);
	for (uint32_t i = 1; !is_write && i < len; i++)
		data[i] = 0;
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

size_t serial_input(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	while (n < len && s->rx_len < SERIAL_FIFO_SIZE && !(s->mcr & MCR_LOOP))
		serial_rx_push(s, buf[n++]);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

static int serial_post_load(void *opaque, uint32_t version_id)
{
	const struct serial_state *st = opaque;

	return st->rx_head < SERIAL_FIFO_SIZE && st->rx_len <= SERIAL_FIFO_SIZE ? 0 : -EINVAL;
}

static const struct vmstate_desc serial_vmsd = {
	.name = "serial", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct serial_state), .post_load = serial_post_load,
	.fields = (const struct vmstate_field[]){
		VMSTATE_U8(struct serial_state, ier),
		VMSTATE_U8(struct serial_state, lcr),
		VMSTATE_U8(struct serial_state, mcr),
		VMSTATE_U8(struct serial_state, scr),
		VMSTATE_U8(struct serial_state, dll),
		VMSTATE_U8(struct serial_state, dlm),
		VMSTATE_U8(struct serial_state, fcr),
		VMSTATE_BOOL(struct serial_state, thr_pending),
		VMSTATE_U32(struct serial_state, rx_head),
		VMSTATE_U32(struct serial_state, rx_len),
		VMSTATE_ARRAY(struct serial_state, rx, uint8_t),
		VMSTATE_END,
	},
};

static void *serial_state(void *opaque)
{
	return &((struct serial *)opaque)->saved;
}

static int serial_sync(void *opaque)
{
	struct serial *s = opaque;
	struct serial_state *st = &s->saved;

	pthread_mutex_lock(&s->lock);
	st->ier = s->ier;
	st->lcr = s->lcr;
	st->mcr = s->mcr;
	st->scr = s->scr;
	st->dll = s->dll;
	st->dlm = s->dlm;
	st->fcr = s->fcr;
	st->thr_pending = s->thr_pending;
	st->rx_head = s->rx_head;
	st->rx_len = s->rx_len;
	memcpy(st->rx, s->rx, sizeof(st->rx));
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int serial_apply(void *opaque)
{
	struct serial *s = opaque;
	const struct serial_state *st = &s->saved;

	pthread_mutex_lock(&s->lock);
	s->ier = st->ier;
	s->lcr = st->lcr;
	s->mcr = st->mcr;
	s->scr = st->scr;
	s->dll = st->dll;
	s->dlm = st->dlm;
	s->fcr = st->fcr;
	s->thr_pending = st->thr_pending;
	s->rx_head = st->rx_head;
	s->rx_len = st->rx_len;
	memcpy(s->rx, st->rx, sizeof(s->rx));
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

const struct device_ops serial_device_ops = {
	.name = "serial", .vmsd = &serial_vmsd, .state = serial_state,
	.sync_state = serial_sync, .apply_state = serial_apply,
};
