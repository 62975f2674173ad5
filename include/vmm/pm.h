/* Power management and reset: ACPI PM1a event/control registers (poweroff
 * via SLP_TYP=S5|SLP_EN, the power button with SCI), the reset register at
 * 0xCF9, the i8042 reset command (0xFE to port 0x64) and a pvpanic port. */
#ifndef VMM_PM_H
#define VMM_PM_H

#include <pthread.h>
#include <stdint.h>
#include "vmm/device.h"
#include "vmm/log.h"

#define PM_SCI_IRQ       9
#define PM1A_EVT_PORT    0x600   /* 4 bytes: status (2), enable (2) */
#define PM1A_CNT_PORT    0x604   /* 2 bytes */
#define PM_RESET_PORT    0xCF9
#define PM_RESET_VALUE   0x06
#define PM_I8042_PORT    0x64
#define PM_PVPANIC_PORT  0x505
#define PM_S5_TYP        5       /* must match \_S5 in the DSDT */

#define PM1_PWRBTN_STS   (1u << 8)
#define PM1_PWRBTN_EN    (1u << 8)
#define PM1_SLP_EN       (1u << 13)
#define PM1_SCI_EN       (1u << 0)

struct vm;

/* The migratable state. */
struct pm_state {
	uint16_t sts, en, cnt;
};

/* lock guards sts, en, cnt. */
struct pm {
	struct vm *vm;
	pthread_mutex_t lock;
	uint16_t sts;
	uint16_t en;
	uint16_t cnt;
	void (*irq)(void *opaque, int level);   /* SCI line; tests replace it */
	void *irq_opaque;
	struct pm_state saved;   /* copy for migration (sync/apply) */
};

extern const struct device_ops pm_device_ops;

/* Registers the PM ports on VM's PIO bus; 0 or -errno. */
int pm_init(struct pm *pm, struct vm *vm) VMM_MUST_CHECK;
/* Presses the ACPI power button (raises SCI if the guest enabled it). */
void pm_power_button(struct pm *pm);
/* Port handler shared by all PM ports (exposed for unit tests). */
void pm_pio(void *opaque, uint64_t port, uint8_t *data, uint32_t len, bool is_write);

#endif
