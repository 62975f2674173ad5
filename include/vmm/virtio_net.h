/* virtio-net on a tap device (IFF_VNET_HDR): one RX and one TX queue,
 * mergeable RX buffers, checksum and TSO offloads both ways, a stable MAC
 * (given, or derived from the tap name) reported in config space. */
#ifndef VMM_VIRTIO_NET_H
#define VMM_VIRTIO_NET_H

#include "vmm/virtio.h"

struct device_ops;

#define VIRTIO_NET_ID 1
#define VIRTIO_NET_QUEUE_SIZE 256
#define VIRTIO_NET_CONFIG_LEN 12
#define VIRTIO_NET_HDR_LEN 12        /* struct virtio_net_hdr_v1 */
#define VIRTIO_NET_MAX_PKT (65536 + VIRTIO_NET_HDR_LEN + 64)

#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN 9
#define VIRTIO_NET_F_HOST_TSO4 11
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_HOST_ECN 13
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_S_LINK_UP 1

struct virtio_net_state {
	struct virtio_state vio;
	uint8_t mac[6];
	uint16_t link_status;
};
extern const struct vmstate_desc virtio_net_vmstate;
extern const struct device_ops virtio_net_device_ops;

struct virtio_net {
	struct virtio_dev vd;
	struct virtio_net_state st;   /* vd.lock guards all below */
	char tap[16];
	int tap_fd;
	int tap_idx;                  /* extra-fd index of tap_fd */
	bool rx_watch, tx_watch;      /* EPOLLIN / EPOLLOUT wanted on the tap */
	uint8_t *pkt;                 /* one received packet not yet delivered */
	size_t pkt_len;               /* 0: none */
	uint16_t rx_seen;             /* RX buffers too few for it (MRG) */
	struct iovec rx_iov[VIRTQ_MAX_SIZE];
	struct iovec tx_iov[VIRTQ_MAX_SIZE];
	uint64_t rx_packets, tx_packets, rx_dropped, tx_dropped;
};

/* Parses "aa:bb:cc:dd:ee:ff" (unicast) into MAC; 0 or -EINVAL. */
int virtio_net_parse_mac(const char *s, uint8_t mac[6]) VMM_MUST_CHECK;
/* Derives a stable locally administered MAC (52:54:00:..) from NAME. */
void virtio_net_derive_mac(const char *name, uint8_t mac[6]);
/* Opens tap NAME (created if missing) with a vnet header, or uses TAP_FD if
 * >= 0 (tests: any socket/pipe-like fd), and sets up the device (not attached,
 * thread not started). MAC may be NULL (derived). 0 or -errno with a message. */
int virtio_net_create(struct virtio_net **out, struct vm *vm, const struct guest_mem *mem,
		      int vm_fd, struct irq_router *router, const char *tap, const char *mac)
	VMM_MUST_CHECK;
/* Same, on an already open fd that carries vnet-header framed packets. */
int virtio_net_create_fd(struct virtio_net **out, struct vm *vm, const struct guest_mem *mem,
			 int vm_fd, struct irq_router *router, int fd, const char *name,
			 const char *mac) VMM_MUST_CHECK;
/* Stops the thread, closes the tap and frees the device. */
void virtio_net_destroy(struct virtio_net *net);
/* Sends one RARP broadcast from the guest's MAC out of the tap, so switches
 * learn where the guest now is (QEMU's self-announce); 0 or -errno. */
int virtio_net_announce(struct virtio_net *net);

#endif
