/* ACPI power management and reset ports. The guest powers off by writing
 * SLP_TYP=S5|SLP_EN to PM1a_CNT, resets through 0xCF9 or the i8042 reset
 * command, and reports a panic through the pvpanic port. */
#include <string.h>
#include "vmm/pm.h"
#include "vmm/vm.h"
#include "vmm/vmstate.h"

#define PVPANIC_PANICKED   (1u << 0)
#define PVPANIC_CRASHLOADED (1u << 1)

static void pm_update_sci(struct pm *pm)
{
	int level = (pm->sts & pm->en & PM1_PWRBTN_STS) ? 1 : 0;

	if (pm->irq)
		pm->irq(pm->irq_opaque, level);
}

static void pm_vm_irq(void *opaque, int level)
{
	vm_irq_line(opaque, PM_SCI_IRQ, level);
}

static void pm_cnt_write(struct pm *pm, uint16_t v)
{
	pm->cnt = v & (uint16_t)~PM1_SLP_EN;
	if ((v & PM1_SLP_EN) && ((v >> 10) & 7) == PM_S5_TYP && pm->vm)
		vm_end(pm->vm, VM_END_POWEROFF, "guest powered off");
}

static uint32_t pm_read(struct pm *pm, uint64_t port)
{
	switch (port) {
	case PM1A_EVT_PORT:
		return pm->sts | (uint32_t)pm->en << 16;
	case PM1A_EVT_PORT + 2:
		return pm->en;
	case PM1A_CNT_PORT:
		return pm->cnt | PM1_SCI_EN;
	case PM_PVPANIC_PORT:
		return PVPANIC_PANICKED | PVPANIC_CRASHLOADED;
	case PM_I8042_PORT:
		return 0;   /* status: input/output buffers empty */
	default:
		return 0xFFFFFFFF;
	}
}

static void pm_write(struct pm *pm, uint64_t port, uint32_t v, uint32_t len)
{
	switch (port) {
	case PM1A_EVT_PORT:
		pm->sts &= (uint16_t)~v;   /* write 1 to clear */
		if (len == 4)
			pm->en = (uint16_t)(v >> 16);
		break;
	case PM1A_EVT_PORT + 2:
		pm->en = (uint16_t)v;
		break;
	case PM1A_CNT_PORT:
		pm_cnt_write(pm, (uint16_t)v);
		break;
	case PM_RESET_PORT:
		if ((v & 0x04) && pm->vm)
			vm_end(pm->vm, VM_END_RESET, "guest reset (port 0xcf9)");
		break;
	case PM_I8042_PORT:
		if ((v & 0xFF) == 0xFE && pm->vm)
			vm_end(pm->vm, VM_END_RESET, "guest reset (i8042)");
		break;
	case PM_PVPANIC_PORT:
		if ((v & PVPANIC_PANICKED) && pm->vm)
			vm_end(pm->vm, VM_END_PANIC, "guest panicked (pvpanic)");
		break;
	}
}

void pm_pio(void *opaque, uint64_t port, uint8_t *data, uint32_t len, bool is_write)
{
	struct pm *pm = opaque;
	uint32_t v = 0;

	if (len > 4)
		len = 4;
	pthread_mutex_lock(&pm->lock);
	if (is_write) {
		memcpy(&v, data, len);
		pm_write(pm, port, v, len);
	} else {
		v = pm_read(pm, port);
		memcpy(data, &v, len);
	}
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

/* The bus hands out offsets; these wrappers turn them back into ports. */
#define PM_PORT_FN(fn, base)                                                   \
	static void fn(void *o, uint64_t off, uint8_t *d, uint32_t l, bool w) \
	{                                                                      \
		pm_pio(o, (base) + off, d, l, w);                              \
	}
PM_PORT_FN(pm_pio_evt, PM1A_EVT_PORT)
PM_PORT_FN(pm_pio_cnt, PM1A_CNT_PORT)
PM_PORT_FN(pm_pio_reset, PM_RESET_PORT)
PM_PORT_FN(pm_pio_i8042, PM_I8042_PORT)
PM_PORT_FN(pm_pio_pvpanic, PM_PVPANIC_PORT)

int pm_init(struct pm *pm, struct vm *vm)
{
	static const struct {
		uint64_t port, len;
		bus_handler_fn fn;
		const char *name;
	} ports[] = {
		{ PM1A_EVT_PORT, 4, pm_pio_evt, "pm1a-evt" },
		{ PM1A_CNT_PORT, 2, pm_pio_cnt, "pm1a-cnt" },
		{ PM_RESET_PORT, 1, pm_pio_reset, "reset" },
		{ PM_I8042_PORT, 1, pm_pio_i8042, "i8042" },
		{ PM_PVPANIC_PORT, 1, pm_pio_pvpanic, "pvpanic" },
	};
	int err;

	memset(pm, 0, sizeof(*pm));
	pthread_mutex_init(&pm->lock, NULL);
	pm->vm = vm;
	pm->irq = pm_vm_irq;
	pm->irq_opaque = vm;
	for (size_t i = 0; i < ARRAY_SIZE(ports); i++) {
		err = bus_register(&vm->pio, ports[i].port, ports[i].len, ports[i].fn, pm,
				   ports[i].name);
		if (err)
			return err;
	}
	return 0;
}

void pm_power_button(struct pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	pm->sts |= PM1_PWRBTN_STS;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

static const struct vmstate_desc pm_vmsd = {
	.name = "pm", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct pm_state),
	.fields = (const struct vmstate_field[]){
		VMSTATE_U16(struct pm_state, sts),
		VMSTATE_U16(struct pm_state, en),
		VMSTATE_U16(struct pm_state, cnt),
		VMSTATE_END,
	},
};

static void *pm_state(void *opaque)
{
	return &((struct pm *)opaque)->saved;
}

static int pm_sync(void *opaque)
{
	struct pm *pm = opaque;

	pthread_mutex_lock(&pm->lock);
	pm->saved = (struct pm_state){ pm->sts, pm->en, pm->cnt };
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

static int pm_apply(void *opaque)
{
	struct pm *pm = opaque;

	pthread_mutex_lock(&pm->lock);
	pm->sts = pm->saved.sts;
	pm->en = pm->saved.en;
	pm->cnt = pm->saved.cnt & (uint16_t)~PM1_SLP_EN;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

const struct device_ops pm_device_ops = {
	.name = "acpi-pm", .vmsd = &pm_vmsd, .state = pm_state,
	.sync_state = pm_sync, .apply_state = pm_apply,
};
