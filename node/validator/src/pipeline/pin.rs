//! Pinning a tile's thread to one CPU core.

/// Pins the calling thread to CPU `core` (Linux `sched_setaffinity`); the error names the core
/// and the OS error (a core beyond the machine's CPUs, or outside the process's allowed set).
#[cfg(target_os = "linux")]
pub fn pin_current_thread(core: usize) -> Result<(), String> {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let limit = usize::try_from(libc::CPU_SETSIZE).unwrap_or(1024);
    if core >= limit {
        return Err(format!(
            "pin to core {core}: beyond the {limit} cores an affinity set holds ({cpus} CPUs)"
        ));
    }
    // SAFETY: `cpu_set_t` is a plain bit array, so all-zero is a valid (empty) set; CPU_ZERO and
    // CPU_SET write only inside `set` (core < CPU_SETSIZE was checked above);
    // sched_setaffinity(0, ..) reads `size_of::<cpu_set_t>()` bytes from a live `set` and
    // changes only the calling thread's affinity.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(format!("pin to core {core}: {err} (this machine reports {cpus} CPUs)"));
    }
    Ok(())
}

/// Pinning is only implemented on Linux.
#[cfg(not(target_os = "linux"))]
pub fn pin_current_thread(core: usize) -> Result<(), String> {
    Err(format!("pin to core {core}: thread pinning is only supported on Linux"))
}

/// A core this process may run on (the first one pinning to succeeds), for tests.
#[cfg(test)]
pub(crate) fn allowed_core() -> Option<usize> {
    std::thread::spawn(|| (0..1024).find(|&c| pin_current_thread(c).is_ok())).join().ok().flatten()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn pins_to_an_allowed_core_and_refuses_a_missing_one() {
        let core = allowed_core().expect("some core is allowed");
        std::thread::spawn(move || {
            pin_current_thread(core).unwrap();
            let e = pin_current_thread(100_000).unwrap_err();
            assert!(e.contains("100000"), "{e}");
            let e = pin_current_thread(1000).unwrap_err();
            assert!(e.contains("core 1000"), "{e}");
        })
        .join()
        .unwrap();
    }
}
