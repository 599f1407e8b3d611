//! An owned `mmap` region, unmapped on drop unless leaked: the anonymous memory that
//! io_uring's provided buffers and AF_XDP's UMEM live in, and AF_XDP's shared ring mappings.

use std::io;
#[cfg(feature = "af_xdp")]
use std::os::fd::{AsRawFd, OwnedFd};

/// One mapping, owned.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: *mut u8,
    len: usize,
    leaked: bool,
}

impl Mmap {
    /// `len` bytes of anonymous, private, pre-faulted, page-aligned, zero-filled memory.
    pub(crate) fn anonymous(len: usize) -> io::Result<Mmap> {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing; no existing
        // memory is affected. The result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap { ptr: ptr.cast(), len, leaked: false })
    }

    /// `len` bytes of `fd`'s mapping at page offset `pgoff`, shared (an AF_XDP ring: one of
    /// `XDP_PGOFF_*` / `XDP_UMEM_PGOFF_*`).
    #[cfg(feature = "af_xdp")]
    pub(crate) fn ring(fd: &OwnedFd, len: usize, pgoff: libc::off_t) -> io::Result<Mmap> {
        // SAFETY: a fresh shared mapping of the socket's ring at an address of the kernel's
        // choosing; the kernel checks `len` against the ring's size and fails otherwise.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap { ptr: ptr.cast(), len, leaked: false })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Only AF_XDP bounds-checks against it; io_uring sizes its regions by construction.
    #[cfg_attr(not(feature = "af_xdp"), allow(dead_code))]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Never unmaps this region: for memory the kernel may still write into after its owner
    /// is gone (an io_uring whose cancellation was not confirmed).
    pub(crate) fn leak(&mut self) {
        self.leaked = true;
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        if !self.leaked {
            // SAFETY: `ptr`/`len` are exactly one mapping made by this value and unmapped only
            // here; every pointer derived from it lives in structs that own (and so drop before
            // or with) it, and owners that cannot be sure the kernel stopped using it leak it.
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
    }
}
