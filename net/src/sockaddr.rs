//! Conversions between the kernel's socket addresses and `std`'s, and socket options.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

/// The sender address in `bytes` (a `sockaddr_in` or `sockaddr_in6` as the kernel wrote it,
/// `bytes.len()` being the length it reported), or `None` for any other family or a short one.
pub(crate) fn parse(bytes: &[u8]) -> Option<SocketAddr> {
    let family = libc::sa_family_t::from_ne_bytes(bytes.get(0..2)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET if bytes.len() >= size_of::<libc::sockaddr_in>() => {
            // sockaddr_in: family (2), port (2, network order), addr (4, network order).
            let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
            let ip: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 if bytes.len() >= size_of::<libc::sockaddr_in6>() => {
            // sockaddr_in6: family (2), port (2, BE), flowinfo (4, BE), addr (16), scope_id (4, host).
            let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
            let flowinfo = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(bytes.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flowinfo, scope)))
        }
        _ => None,
    }
}

/// The first `len` bytes of `storage`, as a byte slice (bounded by its size).
pub(crate) fn storage_bytes(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> &[u8] {
    let n = (len as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: `storage` is a valid, initialised (plain-old-data) sockaddr_storage borrowed for
    // the returned lifetime, and `n` does not exceed its size.
    unsafe { std::slice::from_raw_parts((storage as *const libc::sockaddr_storage).cast::<u8>(), n) }
}

/// Sets `SO_RCVBUF` on `socket`.
pub(crate) fn set_recv_buffer(socket: &std::net::UdpSocket, bytes: usize) -> std::io::Result<()> {
    let value = libc::c_int::try_from(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "larger than i32::MAX"))?;
    // SAFETY: the fd is open for the duration of the call (borrowed from `socket`), and the
    // option value points to a live c_int whose size is passed alongside.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_short_and_unknown() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0; 16]), None);
        let mut v4 = [0u8; 16];
        v4[0..2].copy_from_slice(&(libc::AF_INET as libc::sa_family_t).to_ne_bytes());
        assert!(parse(&v4[..8]).is_none());
        v4[2..4].copy_from_slice(&9000u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(parse(&v4), Some("127.0.0.1:9000".parse().unwrap()));
    }
}
