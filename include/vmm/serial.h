/* 8250/16550A UART: the guest console at 0x3F8/IRQ 4. Output goes to a host
 * fd (stdout or a file), input comes from the main loop via serial_input(). */
#ifndef VMM_SERIAL_H
#define VMM_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "vmm/device.h"
#include "vmm/log.h"

#define SERIAL_COM1_BASE 0x3F8
#define SERIAL_COM1_IRQ  4
#define SERIAL_FIFO_SIZE 64

/* The migratable state: registers and the receive FIFO. */
struct serial_state {
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	bool thr_pending;
	uint32_t rx_head, rx_len;
	uint8_t rx[SERIAL_FIFO_SIZE];
};

/* lock guards every register and the receive FIFO. */
struct serial {
	pthread_mutex_t lock;
	uint8_t ier, iir, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	uint8_t rx[SERIAL_FIFO_SIZE];
	unsigned rx_head, rx_len;
	bool thr_pending;       /* THR-empty interrupt pending */
	int out_fd;             /* -1: output dropped */
	int irq_level;
	void (*irq)(void *opaque, int level);
	void *irq_opaque;
	struct serial_state saved;   /* copy for migration (sync/apply) */
};

extern const struct device_ops serial_device_ops;

/* Initialises the UART writing to OUT_FD (may be -1); IRQ is called with the
 * interrupt line level whenever it changes. */
void serial_init(struct serial *s, int out_fd, void (*irq)(void *, int), void *opaque);
/* Port handler for the 8 UART registers (offset 0-7). */
void serial_pio(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);
/* Queues host input for the guest; returns bytes accepted (FIFO may fill). */
size_t serial_input(struct serial *s, const uint8_t *buf, size_t len);
/* Frees nothing today; kept for symmetry with serial_init. */
void serial_destroy(struct serial *s);

#endif
