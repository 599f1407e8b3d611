//! The sockets backend: one UDP socket, `poll` for the first datagram, then `recvmmsg` with
//! `MSG_DONTWAIT` straight into the caller's frames (no intermediate copy).

use crate::ingress::{Backend, Frame, Ingress, IngressStats, MAX_DATAGRAM};
use crate::sockaddr;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub(crate) struct SocketIngress {
    socket: UdpSocket,
    batch: usize,
    /// Per-call scratch for `recvmmsg`; the pointers inside are rewritten on every call (to the
    /// caller's frames and to `names`) and never used outside it.
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    stats: IngressStats,
}

// SAFETY: the raw pointers in `hdrs` and `iovs` are scratch, written at the start of each
// `recv` call (on whichever thread owns the ingress) and only read by the kernel during that
// call; nothing is shared between threads.
unsafe impl Send for SocketIngress {}

impl SocketIngress {
    pub(crate) fn new(socket: UdpSocket, batch: usize) -> Self {
        // SAFETY: mmsghdr, iovec and sockaddr_storage are plain C structs for which all-zero
        // bytes are a valid value (null pointers, zero lengths).
        let (hdr, iov, name) = unsafe {
            (
                std::mem::zeroed::<libc::mmsghdr>(),
                std::mem::zeroed::<libc::iovec>(),
                std::mem::zeroed::<libc::sockaddr_storage>(),
            )
        };
        SocketIngress {
            socket,
            batch,
            hdrs: vec![hdr; batch],
            iovs: vec![iov; batch],
            names: vec![name; batch],
            stats: IngressStats::default(),
        }
    }

    /// One non-blocking `recvmmsg` into `out[..n]`; `Ok(None)` when nothing is queued.
    fn recv_batch(&mut self, out: &mut [Frame]) -> io::Result<Option<usize>> {
        let n = out.len().min(self.batch);
        let slots = self.hdrs.iter_mut().zip(self.iovs.iter_mut()).zip(self.names.iter_mut());
        for (((hdr, iov), name), frame) in slots.zip(out.iter_mut()).take(n) {
            *iov = libc::iovec { iov_base: frame.bytes.as_mut_ptr().cast(), iov_len: MAX_DATAGRAM };
            hdr.msg_len = 0;
            hdr.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = std::ptr::null_mut();
            hdr.msg_hdr.msg_controllen = 0;
            hdr.msg_hdr.msg_flags = 0;
        }
        // SAFETY: the fd is open (owned by `self.socket`); `hdrs[..n]` are initialised and each
        // points to one iovec of MAX_DATAGRAM bytes inside a distinct `out[i].bytes` (borrowed
        // mutably for this call) and to a sockaddr_storage in `names` whose size it states; the
        // kernel writes only within those bounds and only during the call.
        let got = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => {
                    self.stats.errors += 1;
                    Err(e)
                }
            };
        }
        // Compact: drop oversized (and unparseable-source) messages, keep order.
        let mut kept = 0;
        for i in 0..(got as usize).min(n) {
            let hdr = &self.hdrs[i];
            let len = hdr.msg_len as usize;
            if len > MAX_DATAGRAM || hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.stats.oversized += 1;
                continue;
            }
            let Some(from) =
                sockaddr::parse(sockaddr::storage_bytes(&self.names[i], hdr.msg_hdr.msg_namelen))
            else {
                self.stats.errors += 1;
                continue;
            };
            if kept != i {
                out.swap(kept, i);
            }
            out[kept].len = len as u16;
            out[kept].from = from;
            kept += 1;
        }
        Ok(Some(kept))
    }

    /// Waits up to `timeout` for the socket to become readable; false on timeout.
    fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let ms = i32::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX);
        let mut pfd = libc::pollfd { fd: self.socket.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one live pollfd for an open fd, count 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(true);
            }
            return Err(e);
        }
        Ok(rc > 0)
    }
}

impl Ingress for SocketIngress {
    fn recv(&mut self, out: &mut [Frame], timeout: Duration) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let deadline = Instant::now() + timeout;
        loop {
            // Try first: under load the socket is rarely empty and the poll is a wasted call.
            if let Some(kept) = self.recv_batch(out)?
                && kept > 0
            {
                self.stats.received += kept as u64;
                self.stats.batches += 1;
                return Ok(kept);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || !self.wait_readable(remaining)? {
                return Ok(0);
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn stats(&self) -> IngressStats {
        self.stats
    }

    fn backend(&self) -> Backend {
        Backend::Sockets
    }
}
