//! Attaching the XDP program to an interface through a BPF link (`BPF_LINK_CREATE`, attach
//! type `BPF_XDP`, Linux 5.9+): the program stays attached exactly as long as the link's file
//! descriptor is open, so dropping [`XdpLink`] (or the process dying) detaches it, and a
//! program attached by someone else (netlink or another link) makes the attach fail with
//! `EBUSY` instead of being replaced. There is no netlink (`IFLA_XDP`) fallback: kernels
//! without XDP links (before 5.9) are not supported.

use super::sys::{self, LinkCreateAttr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// Driver (native) or generic (skb) attachment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttachMode {
    Skb,
    Drv,
}

impl AttachMode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            AttachMode::Skb => "skb (generic)",
            AttachMode::Drv => "drv (native)",
        }
    }
}

/// An attached XDP program; detached when dropped.
#[derive(Debug)]
pub(crate) struct XdpLink {
    _fd: OwnedFd,
}

/// Attaches `prog` to `ifindex` in `mode`.
pub(crate) fn attach(prog: &OwnedFd, ifindex: u32, mode: AttachMode) -> io::Result<XdpLink> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: sys::BPF_XDP,
        flags: match mode {
            AttachMode::Skb => sys::XDP_FLAGS_SKB_MODE,
            AttachMode::Drv => sys::XDP_FLAGS_DRV_MODE,
        },
    };
    // A link this process closed a moment ago can outlive the close while a concurrently
    // forked child (any `Command::spawn`) still holds the fd table copy, until it execs; so
    // "busy" is retried for up to ~100 ms before it is reported.
    let mut tries = 0;
    loop {
        match sys::bpf_fd(sys::BPF_LINK_CREATE, &mut attr) {
            Ok(fd) => return Ok(XdpLink { _fd: fd }),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)) && tries < 10 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Says why an attach failed, in words.
pub(crate) fn attach_error(iface: &str, mode: AttachMode, e: &io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::EBUSY) | Some(libc::EEXIST) => {
            " (another XDP program is already attached to this interface: detach it with \
             `ip link set dev IFACE xdp off`, or stop the other program)"
        }
        Some(libc::EOPNOTSUPP) => " (the driver has no native XDP support; use xdp_mode skb)",
        Some(libc::EPERM) => " (needs root, or CAP_BPF and CAP_NET_ADMIN)",
        Some(libc::EINVAL) => {
            " (kernel without BPF_LINK_CREATE for XDP (5.9+), or the MTU is too large for native XDP)"
        }
        _ => "",
    };
    format!("attach XDP program to {iface} in {} mode: {e}{hint}", mode.name())
}
