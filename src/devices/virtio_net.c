/* virtio-net (device id 1) on a tap device: TX chains go to the tap with
 * writev (the guest's vnet header first), RX packets are read into a bounce
 * buffer and spread over the guest's (mergeable) buffers. A packet that
 * finds no buffers waits, with the tap unwatched, until the guest posts some. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>
#include "vmm/mem.h"
#include "vmm/device.h"
#include "vmm/virtio_net.h"
#include "vmm/vmstate.h"

#define NET_RXQ 0
#define NET_TXQ 1

static int net_post_load(void *opaque, uint32_t version)
{
	struct virtio_net_state *s = opaque;

	return (s->mac[0] & 1) || (s->link_status & ~VIRTIO_NET_S_LINK_UP) ? -EINVAL : 0;
}

const struct vmstate_desc virtio_net_vmstate = {
	.name = "virtio-net", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct virtio_net_state), .post_load = net_post_load,
	.fields = (const struct vmstate_field[]){
		VMSTATE_STRUCT(struct virtio_net_state, vio, &virtio_vmstate),
		VMSTATE_BUFFER(struct virtio_net_state, mac),
		VMSTATE_U16(struct virtio_net_state, link_status),
		VMSTATE_END,
	},
};

int virtio_net_parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char end;

	if (!s || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
			 &end) != 6 || strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return (mac[0] & 1) ? -EINVAL : 0;
}

void virtio_net_derive_mac(const char *name, uint8_t mac[6])
{
	uint32_t h = 2166136261u;

	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
}

static void net_config_read(struct virtio_dev *vd, uint32_t off, uint8_t *data, uint32_t len)
{
	struct virtio_net *net = vd->priv;
	uint8_t c[VIRTIO_NET_CONFIG_LEN] = { 0 };

	memcpy(c, net->st.mac, 6);
	c[6] = (uint8_t)net->st.link_status;
	c[8] = 1;                          /* max_virtqueue_pairs */
	memcpy(data, c + off, len);
}

static void net_update_watch(struct virtio_net *net)
{
	virtio_watch_fd(&net->vd, net->tap_idx, (net->rx_watch ? EPOLLIN : 0) |
			(net->tx_watch ? EPOLLOUT : 0));
}

/* --- RX --- */

/* Host pointer to byte OFF of ELEM's writable part, or NULL. */
static uint8_t *net_in_byte(const struct virtq_elem *e, size_t off)
{
	for (unsigned i = e->nr_out; i < (unsigned)e->nr_out + e->nr_in; i++) {
		if (off < e->iov[i].iov_len)
			return (uint8_t *)e->iov[i].iov_base + off;
		off -= e->iov[i].iov_len;
	}
	return NULL;
}

/* Spreads the pending packet over RX chains; true if delivered (or dropped),
 * false if the guest has to post more buffers first. */
static bool net_rx_deliver(struct virtio_net *net)
{
	struct virtio_dev *vd = &net->vd;
	struct virtq *vq = &vd->vqs[NET_RXQ];
	bool mrg = virtio_has_feature(vd, VIRTIO_NET_F_MRG_RXBUF);
	size_t off = 0;
	uint16_t used = 0;
	uint8_t *nb_lo = NULL, *nb_hi = NULL;
	struct { uint16_t head; uint32_t len; } chains[64];

	while (off < net->pkt_len) {
		struct virtq_elem e = { .iov = net->rx_iov, .iov_cap = VIRTQ_MAX_SIZE };
		int ret = used < 64 ? virtq_pop(vq, &e) : 0;
		size_t n;

		if (ret < 0)
			return true;   /* broken ring: NEEDS_RESET follows */
		if (ret == 0) {
			virtq_unpop(vq, used);
			net->rx_seen = used;
			if (used == 64) {            /* absurdly small buffers: drop */
				net->rx_dropped++;
				net->pkt_len = 0;
				return true;
			}
			return false;
		}
		if (!used && e.in_len < VIRTIO_NET_HDR_LEN) {
			virtq_push(vq, e.head, 0);   /* cannot even hold the header: drop */
			net->rx_dropped++;
			net->pkt_len = 0;
			return true;
		}
		n = virtq_elem_write(&e, 0, net->pkt + off, net->pkt_len - off);
		virtq_written(vq, e.iov + e.nr_out, e.nr_in, n);
		if (!used) {
			nb_lo = net_in_byte(&e, 10);
			nb_hi = net_in_byte(&e, 11);
		}
		chains[used].head = e.head;
		chains[used].len = (uint32_t)n;
		used++;
		off += n;
		if (off < net->pkt_len && !mrg) {    /* does not fit one buffer: drop */
			virtq_push(vq, e.head, 0);
			net->rx_dropped++;
			net->pkt_len = 0;
			return true;
		}
	}
	*nb_lo = (uint8_t)used;
	*nb_hi = (uint8_t)(used >> 8);
	mem_mark_dirty(vd->mem, nb_lo, 1);
	mem_mark_dirty(vd->mem, nb_hi, 1);
	net->rx_packets++;
	for (uint16_t i = 0; i < used; i++)
		virtq_push(vq, chains[i].head, chains[i].len);
	net->pkt_len = 0;
	return true;
}

static void net_rx(struct virtio_net *net)
{
	struct virtio_dev *vd = &net->vd;
	bool pushed = false;

	while (virtio_queue_live(vd, NET_RXQ)) {
		if (!net->pkt_len) {
			ssize_t n = read(net->tap_fd, net->pkt, VIRTIO_NET_MAX_PKT);

			if (n <= 0)
				break;
			if ((size_t)n < VIRTIO_NET_HDR_LEN) {
				net->rx_dropped++;
				continue;
			}
			net->pkt_len = (size_t)n;
			memset(net->pkt + 10, 0, 2);
		}
		if (!net_rx_deliver(net)) {
			/* too few buffers: wait for a kick bringing more */
			if (!virtq_enable_notify_after(&vd->vqs[NET_RXQ], net->rx_seen)) {
				net->rx_watch = false;
				net_update_watch(net);
				break;
			}
			continue;
		}
		pushed = true;
	}
	if (pushed)
		virtio_notify_queue(vd, NET_RXQ);
}

/* --- TX --- */

static void net_tx(struct virtio_net *net)
{
	struct virtio_dev *vd = &net->vd;
	struct virtq *vq = &vd->vqs[NET_TXQ];
	bool pushed = false;

	do {
		struct virtq_elem e = { .iov = net->tx_iov, .iov_cap = VIRTQ_MAX_SIZE };

		virtq_disable_notify(vq);
		while (virtq_pop(vq, &e) == 1) {
			if (e.out_len < VIRTIO_NET_HDR_LEN || e.out_len > VIRTIO_NET_MAX_PKT) {
				net->tx_dropped++;
			} else if (writev(net->tap_fd, e.iov, e.nr_out) < 0) {
				if (errno == EAGAIN) {
					virtq_unpop(vq, 1);
					net->tx_watch = true;
					net_update_watch(net);
					goto out;
				}
				net->tx_dropped++;
			} else {
				net->tx_packets++;
			}
			virtq_push(vq, e.head, 0);
			pushed = true;
		}
	} while (!vq->broken && virtq_enable_notify(vq));
out:
	if (pushed)
		virtio_notify_queue(vd, NET_TXQ);
}

static void net_queue_notify(struct virtio_dev *vd, int q)
{
	struct virtio_net *net = vd->priv;

	if (q == NET_TXQ) {
		net_tx(net);
		return;
	}
	if (!net->rx_watch) {
		net->rx_watch = true;
		net_update_watch(net);
	}
	net_rx(net);
}

static void net_fd_event(struct virtio_dev *vd, int i, uint32_t events)
{
	struct virtio_net *net = vd->priv;

	if (events & EPOLLOUT) {
		net->tx_watch = false;
		net_update_watch(net);
		if (virtio_queue_live(vd, NET_TXQ))
			net_tx(net);
	}
	if (events & EPOLLIN)
		net_rx(net);
	if (!virtio_queue_live(vd, NET_RXQ) && net->rx_watch) {
		net->rx_watch = false;
		net_update_watch(net);
	}
}

static void net_set_offloads(struct virtio_net *net)
{
	struct virtio_dev *vd = &net->vd;
	unsigned off = 0;

	if (virtio_has_feature(vd, VIRTIO_NET_F_GUEST_CSUM)) {
		off |= TUN_F_CSUM;
		if (virtio_has_feature(vd, VIRTIO_NET_F_GUEST_TSO4))
			off |= TUN_F_TSO4;
		if (virtio_has_feature(vd, VIRTIO_NET_F_GUEST_TSO6))
			off |= TUN_F_TSO6;
		if (virtio_has_feature(vd, VIRTIO_NET_F_GUEST_ECN))
			off |= TUN_F_TSO_ECN;
	}
	(void)!ioctl(net->tap_fd, TUNSETOFFLOAD, off);
}

static void net_driver_ok(struct virtio_dev *vd)
{
	struct virtio_net *net = vd->priv;

	net_set_offloads(net);
	net->rx_watch = true;
	net_update_watch(net);
}

static void net_reset(struct virtio_dev *vd)
{
	struct virtio_net *net = vd->priv;

	net->pkt_len = 0;
	net->rx_watch = net->tx_watch = false;
	net_update_watch(net);
	(void)!ioctl(net->tap_fd, TUNSETOFFLOAD, 0);
}

static const struct virtio_dev_ops net_vops = {
	.name = "virtio-net",
	.config_read = net_config_read,
	.queue_notify = net_queue_notify,
	.fd_event = net_fd_event,
	.driver_ok = net_driver_ok,
	.reset = net_reset,
};

static int net_open_tap(const char *name)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	int hdr = VIRTIO_NET_HDR_LEN, fd, err;

	if (strlen(name) >= IFNAMSIZ) {
		vmm_err("tap name %s is too long", name);
		return -EINVAL;
	}
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		vmm_err("cannot open /dev/net/tun: %s", strerror(errno));
		return err;
	}
	memcpy(ifr.ifr_name, name, strlen(name));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
		err = -errno;
		vmm_err("cannot attach to tap %s: %s", name, strerror(errno));
		close(fd);
		return err;
	}
	(void)!ioctl(fd, TUNSETOFFLOAD, 0);
	return fd;
}

int virtio_net_create_fd(struct virtio_net **out, struct vm *vm, const struct guest_mem *mem,
			 int vm_fd, struct irq_router *router, int fd, const char *name,
			 const char *mac)
{
	struct virtio_net *net = calloc(1, sizeof(*net));
	uint64_t feat = 1ULL << VIRTIO_NET_F_CSUM | 1ULL << VIRTIO_NET_F_GUEST_CSUM |
			1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_GUEST_TSO4 |
			1ULL << VIRTIO_NET_F_GUEST_TSO6 | 1ULL << VIRTIO_NET_F_GUEST_ECN |
			1ULL << VIRTIO_NET_F_HOST_TSO4 | 1ULL << VIRTIO_NET_F_HOST_TSO6 |
			1ULL << VIRTIO_NET_F_HOST_ECN | 1ULL << VIRTIO_NET_F_MRG_RXBUF |
			1ULL << VIRTIO_NET_F_STATUS;
	int err;

	if (!net)
		return -ENOMEM;
	net->pkt = malloc(VIRTIO_NET_MAX_PKT);
	if (!net->pkt) {
		free(net);
		return -ENOMEM;
	}
	net->tap_fd = fd;
	snprintf(net->tap, sizeof(net->tap), "%s", name);
	err = virtio_init(&net->vd, vm, mem, vm_fd, router, &net_vops, net, &net->st.vio,
			  VIRTIO_NET_ID, 0x020000, 2, VIRTIO_NET_QUEUE_SIZE, feat,
			  VIRTIO_NET_CONFIG_LEN);
	if (!err) {
		net->tap_idx = virtio_add_fd(&net->vd, fd, 0);
		err = net->tap_idx < 0 ? net->tap_idx : 0;
	}
	if (!err && mac && virtio_net_parse_mac(mac, net->st.mac)) {
		vmm_err("bad MAC address %s (want aa:bb:cc:dd:ee:ff, unicast)", mac);
		err = -EINVAL;
	}
	if (err) {
		free(net->pkt);
		free(net);
		return err;
	}
	if (!mac)
		virtio_net_derive_mac(name, net->st.mac);
	net->st.link_status = VIRTIO_NET_S_LINK_UP;
	*out = net;
	return 0;
}

int virtio_net_create(struct virtio_net **out, struct vm *vm, const struct guest_mem *mem,
		      int vm_fd, struct irq_router *router, const char *tap, const char *mac)
{
	int fd = net_open_tap(tap), err;

	if (fd < 0)
		return fd;
	err = virtio_net_create_fd(out, vm, mem, vm_fd, router, fd, tap, mac);
	if (err)
		close(fd);
	return err;
}

int virtio_net_announce(struct virtio_net *net)
{
	/* vnet header, then a 60-byte Ethernet frame: broadcast RARP "reverse
	 * request" (RFC 903) with the guest's MAC as sender and target. */
	uint8_t f[VIRTIO_NET_HDR_LEN + 60] = { 0 };
	uint8_t *e = f + VIRTIO_NET_HDR_LEN;
	static const uint8_t rarp[] = { 0x80, 0x35, 0, 1, 0x08, 0x00, 6, 4, 0, 3 };

	pthread_mutex_lock(&net->vd.lock);
	memset(e, 0xff, 6);
	memcpy(e + 6, net->st.mac, 6);
	memcpy(e + 12, rarp, sizeof(rarp));
	memcpy(e + 22, net->st.mac, 6);      /* sender hardware address */
	memcpy(e + 32, net->st.mac, 6);      /* target hardware address */
	pthread_mutex_unlock(&net->vd.lock);
	return write(net->tap_fd, f, sizeof(f)) == (ssize_t)sizeof(f) ? 0 : -errno;
}

void virtio_net_destroy(struct virtio_net *net)
{
	if (!net)
		return;
	virtio_stop(&net->vd);
	close(net->tap_fd);
	free(net->pkt);
	free(net);
}

/* --- registry glue --- */

static void *net_state(void *opaque)
{
	return &((struct virtio_net *)opaque)->st;
}

static int net_apply(void *opaque)
{
	struct virtio_net *net = opaque;
	int err = virtio_apply_state(&net->vd);

	if (!err) {
		pthread_mutex_lock(&net->vd.lock);
		net->pkt_len = 0;
		net->rx_watch = true;
		net_update_watch(net);
		pthread_mutex_unlock(&net->vd.lock);
	}
	return err;
}

static void net_pause(void *opaque)
{
	virtio_pause(&((struct virtio_net *)opaque)->vd);
}

static void net_resume(void *opaque)
{
	virtio_resume(&((struct virtio_net *)opaque)->vd);
}

const struct device_ops virtio_net_device_ops = {
	.name = "virtio-net",
	.vmsd = &virtio_net_vmstate,
	.state = net_state,
	.apply_state = net_apply,
	.pause = net_pause,
	.resume = net_resume,
};
