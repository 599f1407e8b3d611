//! Bastion's packet ingress: UDP datagrams from clients into fixed-size [`ingress::Frame`]s,
//! through one of two receive backends (sockets with `recvmmsg`, io_uring multishot receive
//! with a provided buffer ring). Oversized datagrams are counted and dropped, never truncated
//! into a frame. [`packet`] reads the client envelope (version, public key, signature, body)
//! without interpreting the body; nothing here panics on any input.

pub mod check;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod ingress;
pub mod l2;
mod mmap;
pub mod packet;
mod sockaddr;
mod sockets;
mod uring;
#[cfg(any(feature = "af_xdp", feature = "dpdk"))]
pub mod veth;
#[cfg(any(feature = "af_xdp", feature = "dpdk"))]
pub mod veth_bench;
#[cfg(feature = "af_xdp")]
pub mod xdp;

pub use ingress::{
    Backend, BypassConfig, Frame, Ingress, IngressConfig, IngressStats, MAX_DATAGRAM, NetError, XdpMode, open,
};
