//! The DPDK backend (cargo feature `dpdk`): a thin binding of our own to the system DPDK
//! (Debian `libdpdk-dev` 22.11), with a C shim (`net/dpdk/shim.c`) for the `static inline`
//! burst functions.
//!
//! - The EAL is initialised once per process (DPDK cannot re-initialise it) from
//!   `bypass.eal_args`, or [`default_eal_args`]; a later [`DpdkIngress::open`] with the same
//!   arguments reuses it, different arguments are refused. The calling thread's CPU affinity is
//!   restored after `rte_eal_init` (which pins it to the main lcore).
//! - The port (`bypass.dpdk_port`) gets `queues` RX queues, each with its own mempool of
//!   `frames` mbufs and `ring_size` descriptors, and one TX queue for ARP replies; promiscuous
//!   mode is off.
//! - [`DpdkIngress::recv`] busy-polls `rte_eth_rx_burst` on every queue, parses each frame
//!   with [`crate::l2::parse`], copies datagrams for `bind` into the caller's frames, counts
//!   every other frame (malformed, fragments, foreign, oversized), answers ARP requests for
//!   the bind address, and frees all mbufs in bulk. Bursts are never larger than the room left
//!   in `out`, so no received datagram is lost between calls; nothing is allocated per packet.
//! - [`RingPort`] (a port backed by `rte_ring`s) and [`attach_vdev`] exist for tests and
//!   benchmarks; [`rx_bench`] measures the RX path on `net_null`; [`check`] reports what an
//!   operator needs to know.

use crate::ingress::{Backend, Frame, Ingress, IngressConfig, IngressStats, MAX_DATAGRAM, NetError};
use crate::l2::{self, L2, L2Drop, L2Filter};
use std::ffi::{CStr, CString, c_char, c_int};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Mbufs taken from an RX queue per `rte_eth_rx_burst`.
pub const BURST: usize = 32;

/// Bursts taken from one queue in one pass of [`DpdkIngress::poll`].
const MAX_BURSTS_PER_POLL: usize = 8;

mod ffi {
    use std::ffi::{c_char, c_int, c_uint};

    /// `struct rte_mbuf`, only ever behind a pointer.
    #[repr(C)]
    pub struct RteMbuf {
        _opaque: [u8; 0],
    }
    /// `struct rte_mempool`, only ever behind a pointer.
    #[repr(C)]
    pub struct RteMempool {
        _opaque: [u8; 0],
    }
    /// `struct rte_ring`, only ever behind a pointer.
    #[repr(C)]
    pub struct RteRing {
        _opaque: [u8; 0],
    }

    // Declarations of net/dpdk/shim.h. The `safe` ones take only integers and have no
    // precondition (an invalid port id is reported, never dereferenced).
    unsafe extern "C" {
        pub safe fn bn_log_capture() -> c_int;
        pub fn bn_log_tail(out: *mut c_char, cap: usize) -> usize;
        pub fn bn_eal_init(argc: c_int, argv: *mut *mut c_char, err: *mut c_int) -> c_int;
        pub safe fn bn_strerror(err: c_int) -> *const c_char;
        pub safe fn bn_errno() -> c_int;
        pub safe fn bn_port_count() -> u16;
        pub safe fn bn_port_valid(port: u16) -> c_int;
        pub fn bn_port_info(
            port: u16,
            driver: *mut c_char,
            driver_cap: usize,
            mac: *mut u8,
            max_rxq: *mut u16,
            max_txq: *mut u16,
            max_rx_desc: *mut u16,
        ) -> c_int;
        pub fn bn_vdev_attach(name: *const c_char, args: *const c_char, port: *mut u16) -> c_int;
        pub fn bn_pool_create(name: *const c_char, n: c_uint, socket: c_int) -> *mut RteMempool;
        pub fn bn_pool_avail(pool: *const RteMempool) -> c_uint;
        pub fn bn_pool_size(pool: *const RteMempool) -> c_uint;
        pub safe fn bn_port_socket(port: u16) -> c_int;
        pub fn bn_port_setup(
            port: u16,
            nb_rxq: u16,
            nb_rx_desc: u16,
            nb_tx_desc: u16,
            pools: *const *mut RteMempool,
            what: *mut *const c_char,
        ) -> c_int;
        pub safe fn bn_port_stop(port: u16) -> c_int;
        pub fn bn_rx_burst(
            port: u16,
            queue: u16,
            mbufs: *mut *mut RteMbuf,
            data: *mut *const u8,
            len: *mut u32,
            n: u16,
        ) -> u16;
        pub fn bn_free_bulk(mbufs: *mut *mut RteMbuf, n: c_uint);
        pub fn bn_tx_copy(port: u16, queue: u16, pool: *mut RteMempool, data: *const u8, len: u16) -> c_int;
        pub fn bn_ring_create(name: *const c_char, count: c_uint, socket: c_int) -> *mut RteRing;
        pub fn bn_ring_port(name: *const c_char, rx: *mut RteRing, tx: *mut RteRing, port: *mut u16)
        -> c_int;
        pub fn bn_ring_count(ring: *const RteRing) -> c_uint;
        pub fn bn_ring_inject(
            ring: *mut RteRing,
            pool: *mut RteMempool,
            data: *const *const u8,
            len: *const u16,
            n: c_uint,
        ) -> c_uint;
        pub fn bn_ring_take(ring: *mut RteRing, out: *mut u8, cap: usize) -> c_int;
    }
}

/// A DPDK mempool; DPDK mempools are thread-safe and live until the process exits (this
/// module never frees one: a stopped port's driver may still hold its mbufs).
#[derive(Clone, Copy)]
struct Pool(*mut ffi::RteMempool);

// SAFETY: a mempool is a process-wide DPDK object whose get/put operations are thread-safe
// (lock-free ring); the pointer is never freed, so it may be used from any thread.
unsafe impl Send for Pool {}

impl Pool {
    /// (available mbufs, pool size).
    fn counts(self) -> (u32, u32) {
        // SAFETY: `self.0` is a live mempool (never freed, see the type); both calls only read.
        unsafe { (ffi::bn_pool_avail(self.0), ffi::bn_pool_size(self.0)) }
    }
}

/// Process-wide DPDK state.
struct State {
    /// The EAL arguments it was initialised with, or why that failed.
    eal: Option<Result<Vec<String>, String>>,
    /// Ports an open [`DpdkIngress`] owns.
    open_ports: Vec<u16>,
    /// Mempools created for (port, queue), with their size; reused when a port is reopened.
    pools: Vec<(u16, u16, u32, Pool)>,
    /// Counter for unique DPDK object names.
    next_name: u32,
}

static STATE: Mutex<State> =
    Mutex::new(State { eal: None, open_ports: Vec::new(), pools: Vec::new(), next_name: 0 });

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

fn unavailable(reason: impl Into<String>) -> NetError {
    NetError::Unavailable { backend: Backend::Dpdk, reason: reason.into() }
}

/// DPDK's error string for `err` (a positive errno or rte_errno).
fn strerror(err: c_int) -> String {
    let p = ffi::bn_strerror(err.abs());
    if p.is_null() {
        return format!("error {err}");
    }
    // SAFETY: rte_strerror returns a NUL-terminated string in static or thread-local storage
    // that stays valid until the next call on this thread; it is copied at once.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The last lines DPDK logged (errors from the EAL and drivers), for error messages.
fn log_tail(lines: usize) -> String {
    let mut buf = [0u8; 4096];
    // SAFETY: the buffer is writable for its length, which is passed as the capacity.
    let n = unsafe { ffi::bn_log_tail(buf.as_mut_ptr().cast(), buf.len()) };
    let text = String::from_utf8_lossy(&buf[..n.min(buf.len())]);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Free hugepages of every size (`/sys/kernel/mm/hugepages/*/free_hugepages`), with the size
/// directory names.
fn free_hugepages() -> Vec<(String, u64)> {
    let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/hugepages") else { return Vec::new() };
    let mut out: Vec<(String, u64)> = dir
        .flatten()
        .map(|e| {
            let free = std::fs::read_to_string(e.path().join("free_hugepages"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), free)
        })
        .collect();
    out.sort();
    out
}

/// The EAL arguments used when `bypass.eal_args` is empty: main lcore 0, hugepages when some
/// are free (`--in-memory`), else `--no-huge -m 256`; no PCI scan (`--no-pci`: a NIC bound to
/// vfio-pci needs explicit `eal_args` with `-a <pci address>`), no shared config, no
/// telemetry socket, and a `net_af_packet0` device on `bypass.iface` when one is given.
pub fn default_eal_args(cfg: &IngressConfig) -> Vec<String> {
    let mut args: Vec<String> = ["-l", "0"].map(String::from).to_vec();
    if free_hugepages().iter().any(|(_, free)| *free > 0) {
        args.push("--in-memory".into());
    } else {
        args.extend(["--no-huge", "-m", "256", "--no-shconf"].map(String::from));
    }
    args.extend(["--no-pci", "--no-telemetry"].map(String::from));
    if let Some(iface) = &cfg.bypass.iface {
        args.push("--vdev".into());
        args.push(format!("net_af_packet0,iface={iface}"));
    }
    args
}

/// The EAL arguments `cfg` asks for.
pub fn eal_args(cfg: &IngressConfig) -> Vec<String> {
    if cfg.bypass.eal_args.is_empty() { default_eal_args(cfg) } else { cfg.bypass.eal_args.clone() }
}

/// Initialises the EAL with `args` (without the program name) unless it already is: with the
/// same arguments that is a no-op, with others an error (DPDK cannot re-initialise it).
pub fn init_eal(args: &[String]) -> Result<(), NetError> {
    let mut st = state();
    match &st.eal {
        Some(Ok(prev)) if prev.as_slice() == args => return Ok(()),
        Some(Ok(prev)) => {
            return Err(unavailable(format!(
                "the DPDK EAL is already initialised in this process with {prev:?}; DPDK cannot \
                 re-initialise it with {args:?}: use the same bypass.eal_args for every DPDK ingress \
                 of a process"
            )));
        }
        Some(Err(e)) => {
            return Err(unavailable(format!(
                "DPDK EAL initialisation already failed in this process ({e}); DPDK cannot retry it: \
                 fix the cause and restart"
            )));
        }
        None => {}
    }
    let result = eal_init_raw(args);
    st.eal = Some(result.clone().map(|()| args.to_vec()));
    result.map_err(unavailable)
}

fn eal_init_raw(args: &[String]) -> Result<(), String> {
    let mut owned = Vec::with_capacity(args.len() + 1);
    owned.push(CString::from(c"bastion"));
    for a in args {
        owned.push(CString::new(a.as_str()).map_err(|_| format!("EAL argument {a:?} contains a NUL byte"))?);
    }
    // The EAL keeps pointers into argv (device arguments, plugin paths) for the life of the
    // process, and it is initialised once: leak the strings.
    let mut argv: Vec<*mut c_char> = owned.into_iter().map(CString::into_raw).collect();
    let argc = c_int::try_from(argv.len()).map_err(|_| "too many EAL arguments".to_string())?;
    argv.push(std::ptr::null_mut());
    let argv = argv.leak();
    let _ = ffi::bn_log_capture(); // on failure DPDK keeps logging to stderr; messages get no tail
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is a valid (empty) set.
    let mut affinity: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the set is writable and its size is passed.
    let saved = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut affinity) } == 0;
    let mut err: c_int = 0;
    // SAFETY: argv holds argc valid NUL-terminated strings followed by a null pointer, all
    // leaked (valid for the rest of the process, as the EAL requires); `err` is writable.
    let rc = unsafe { ffi::bn_eal_init(argc, argv.as_mut_ptr(), &mut err) };
    if saved {
        // SAFETY: restores the set read above on the calling thread, which rte_eal_init pinned
        // to the main lcore; the set is valid and its size passed.
        unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &affinity) };
    }
    if rc >= 0 {
        return Ok(());
    }
    let mut hint = String::new();
    if !is_root() {
        hint.push_str(
            "; not running as root: DPDK needs root (or CAP_SYS_ADMIN, CAP_IPC_LOCK, CAP_NET_RAW \
             and access to /dev/hugepages and /dev/vfio)",
        );
    }
    if !args.iter().any(|a| a == "--no-huge") && free_hugepages().iter().all(|(_, free)| *free == 0) {
        hint.push_str(
            "; no free hugepages: reserve some (echo 512 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages) \
             or pass --no-huge -m 256 in bypass.eal_args",
        );
    }
    Err(format!(
        "rte_eal_init {args:?} failed: {} (rte_errno {err}); DPDK said: {}{hint}; check bypass.eal_args \
         (--vdev driver names: net_null, net_ring, net_af_packet,iface=<if>; -a <pci> for a NIC bound to vfio-pci)",
        strerror(err),
        log_tail(4),
    ))
}

/// What DPDK knows about one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Port id.
    pub port: u16,
    /// Poll-mode driver name (`net_null`, `net_af_packet`, `net_ice`, ...).
    pub driver: String,
    /// The port's MAC address.
    pub mac: [u8; 6],
    /// Most RX queues the port supports.
    pub max_rx_queues: u16,
    /// Most TX queues the port supports.
    pub max_tx_queues: u16,
    /// Most descriptors per RX queue.
    pub max_rx_desc: u16,
}

/// Information on `port` (the EAL must be initialised).
pub fn port_info(port: u16) -> Result<PortInfo, NetError> {
    if ffi::bn_port_valid(port) == 0 {
        return Err(unavailable(format!(
            "no DPDK port {port}: DPDK sees {} port(s){}; add a device to bypass.eal_args (--vdev \
             net_af_packet0,iface=<if>, or -a <pci address> for a NIC bound to vfio-pci with dpdk-devbind) or \
             set bypass.dpdk_port",
            ffi::bn_port_count(),
            describe_ports(),
        )));
    }
    let mut driver = [0u8; 64];
    let mut mac = [0u8; 6];
    let (mut rxq, mut txq, mut desc) = (0u16, 0u16, 0u16);
    // SAFETY: every out pointer is writable for the size the shim writes (driver: its stated
    // capacity, mac: 6 bytes, three u16s).
    let rc = unsafe {
        ffi::bn_port_info(
            port,
            driver.as_mut_ptr().cast(),
            driver.len(),
            mac.as_mut_ptr(),
            &mut rxq,
            &mut txq,
            &mut desc,
        )
    };
    if rc != 0 {
        return Err(unavailable(format!("reading DPDK port {port}'s info: {}", strerror(rc))));
    }
    let end = driver.iter().position(|&b| b == 0).unwrap_or(driver.len());
    Ok(PortInfo {
        port,
        driver: String::from_utf8_lossy(&driver[..end]).into_owned(),
        mac,
        max_rx_queues: rxq,
        max_tx_queues: txq,
        max_rx_desc: desc,
    })
}

/// Every port DPDK sees.
pub fn ports() -> Vec<PortInfo> {
    (0..u16::MAX).filter(|&p| ffi::bn_port_valid(p) != 0).filter_map(|p| port_info(p).ok()).collect()
}

fn describe_ports() -> String {
    let list: Vec<String> = ports().iter().map(|p| format!("{} = {}", p.port, p.driver)).collect();
    if list.is_empty() { String::new() } else { format!(" ({})", list.join(", ")) }
}

fn fmt_mac(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// Creates a virtual device after EAL initialisation (`spec`: `name[,args]`, e.g.
/// `net_af_packet1,iface=veth0` or `net_null1`) and returns its port id.
pub fn attach_vdev(spec: &str) -> Result<u16, NetError> {
    if !matches!(state().eal, Some(Ok(_))) {
        return Err(unavailable("attach_vdev needs an initialised EAL (init_eal or open first)"));
    }
    let (name, args) = spec.split_once(',').unwrap_or((spec, ""));
    let bad = |_| NetError::Config(format!("vdev spec {spec:?} contains a NUL byte"));
    let (cname, cargs) = (CString::new(name).map_err(bad)?, CString::new(args).map_err(bad)?);
    let mut port = 0u16;
    // SAFETY: both strings are NUL-terminated and outlive the call; `port` is writable.
    let rc = unsafe { ffi::bn_vdev_attach(cname.as_ptr(), cargs.as_ptr(), &mut port) };
    if rc != 0 {
        return Err(unavailable(format!(
            "creating DPDK device {spec:?} failed: {}; DPDK said: {} (known drivers here: net_null, net_ring, \
             net_af_packet,iface=<if>; af_packet needs root or CAP_NET_RAW)",
            strerror(rc),
            log_tail(3)
        )));
    }
    Ok(port)
}

/// Counts of the RX path beyond [`IngressStats`], for benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxCounters {
    /// Frames taken from the port (every one is delivered or counted in one drop counter).
    pub packets: u64,
    /// `rte_eth_rx_burst` calls that returned at least one frame.
    pub bursts: u64,
    /// `rte_eth_rx_burst` calls in all.
    pub polls: u64,
}

/// The DPDK receive backend on one port.
pub struct DpdkIngress {
    port: u16,
    queues: u16,
    pools: Vec<Pool>,
    filter: L2Filter,
    mac: [u8; 6],
    bind: SocketAddr,
    stats: IngressStats,
    rx: RxCounters,
    next_queue: u16,
    /// Frames taken from each RX queue (one entry per queue, allocated at open).
    queue_packets: Vec<u64>,
    /// Scratch of one burst: the mbufs, their data and lengths (valid until freed in the call).
    mbufs: [*mut ffi::RteMbuf; BURST],
    data: [*const u8; BURST],
    lens: [u32; BURST],
}

// SAFETY: the raw pointers are the mempools (thread-safe, never freed) and per-call burst
// scratch, filled and freed within one `recv`/`poll` on whichever thread owns the ingress. DPDK
// RX/TX queues may be used from any one thread at a time, which `&mut self` guarantees.
unsafe impl Send for DpdkIngress {}

impl fmt::Debug for DpdkIngress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpdkIngress")
            .field("port", &self.port)
            .field("queues", &self.queues)
            .field("mac", &fmt_mac(self.mac))
            .field("bind", &self.bind)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl DpdkIngress {
    /// Initialises the EAL (once per process), sets up and starts `bypass.dpdk_port`.
    pub fn open(cfg: &IngressConfig) -> Result<DpdkIngress, NetError> {
        let SocketAddr::V4(bind) = cfg.bind else {
            return Err(NetError::Config(format!("the DPDK backend is IPv4 only; bind is {}", cfg.bind)));
        };
        if bind.port() == 0 || bind.ip().is_unspecified() {
            return Err(NetError::Config(format!(
                "the DPDK backend needs a concrete address and port to receive on (bind is {bind}): DPDK owns the \
                 port, so there is no kernel to pick a port or address; set e.g. 10.0.0.5:8001"
            )));
        }
        let b = &cfg.bypass;
        if b.queues == 0 {
            return Err(NetError::Config("bypass.queues must be at least 1".into()));
        }
        let ring = u16::try_from(b.ring_size).ok().filter(|r| *r >= 64).ok_or_else(|| {
            NetError::Config(format!("bypass.ring_size {} must be 64..=65535", b.ring_size))
        })?;
        let min_frames = b.ring_size + 2 * BURST as u32;
        if b.frames < min_frames {
            return Err(NetError::Config(format!(
                "bypass.frames ({}) must be at least ring_size + {} = {min_frames} (a NIC fills every RX \
                 descriptor with an mbuf)",
                b.frames,
                2 * BURST
            )));
        }
        init_eal(&eal_args(cfg))?;
        let port = b.dpdk_port;
        let info = port_info(port)?;
        if b.queues > info.max_rx_queues {
            return Err(unavailable(format!(
                "DPDK port {port} ({}) supports at most {} RX queues, bypass.queues is {}: lower it",
                info.driver, info.max_rx_queues, b.queues
            )));
        }
        if info.max_tx_queues == 0 {
            return Err(unavailable(format!(
                "DPDK port {port} ({}) has no TX queue for ARP replies",
                info.driver
            )));
        }
        let mut st = state();
        if st.open_ports.contains(&port) {
            return Err(unavailable(format!("DPDK port {port} is already open in this process")));
        }
        let socket = ffi::bn_port_socket(port);
        let mut pools = Vec::with_capacity(usize::from(b.queues));
        for q in 0..b.queues {
            if let Some(&(_, _, _, pool)) =
                st.pools.iter().find(|e| e.0 == port && e.1 == q && e.2 == b.frames)
            {
                pools.push(pool);
                continue;
            }
            let name = format!("bn_p{port}_q{q}_{}", st.next_name);
            st.next_name += 1;
            let cname = CString::new(name.as_str()).map_err(|_| NetError::Config("pool name".into()))?;
            // SAFETY: the name is NUL-terminated and outlives the call (DPDK copies it).
            let pool = unsafe { ffi::bn_pool_create(cname.as_ptr(), b.frames, socket) };
            if pool.is_null() {
                return Err(unavailable(format!(
                    "creating mempool {name} of {} mbufs failed: {}; DPDK said: {} (raise -m in bypass.eal_args or \
                     reserve more hugepages, or lower bypass.frames)",
                    b.frames,
                    strerror(ffi_errno()),
                    log_tail(2)
                )));
            }
            st.pools.push((port, q, b.frames, Pool(pool)));
            pools.push(Pool(pool));
        }
        let raw: Vec<*mut ffi::RteMempool> = pools.iter().map(|p| p.0).collect();
        let mut what: *const c_char = std::ptr::null();
        // SAFETY: `raw` holds `queues` live mempools and outlives the call; `what` is writable
        // and set to a static string by the shim.
        let rc = unsafe { ffi::bn_port_setup(port, b.queues, ring, ring, raw.as_ptr(), &mut what) };
        if rc != 0 {
            let step = if what.is_null() {
                "port setup".to_string()
            } else {
                // SAFETY: the shim only stores pointers to string literals in `what`.
                unsafe { CStr::from_ptr(what) }.to_string_lossy().into_owned()
            };
            let _ = ffi::bn_port_stop(port);
            return Err(unavailable(format!(
                "setting up DPDK port {port} ({}): {step} failed: {}; DPDK said: {}",
                info.driver,
                strerror(rc),
                log_tail(2)
            )));
        }
        st.open_ports.push(port);
        Ok(DpdkIngress {
            port,
            queues: b.queues,
            pools,
            filter: L2Filter { ip: *bind.ip(), port: bind.port() },
            mac: b.mac.unwrap_or(info.mac),
            bind: cfg.bind,
            stats: IngressStats::default(),
            rx: RxCounters::default(),
            next_queue: 0,
            queue_packets: vec![0; usize::from(b.queues)],
            mbufs: [std::ptr::null_mut(); BURST],
            data: [std::ptr::null(); BURST],
            lens: [0; BURST],
        })
    }

    /// The port id.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The MAC address ARP requests are answered with.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// RX-path counters (packets, bursts, polls).
    pub fn rx_counters(&self) -> RxCounters {
        self.rx
    }

    /// Frames taken from each RX queue so far (index = queue id): how the NIC's RSS, or the
    /// PMD's fanout, spread the traffic.
    pub fn queue_packets(&self) -> &[u64] {
        &self.queue_packets
    }

    /// (available, total) mbufs of this ingress's mempools; equal when no mbuf is held
    /// (after traffic has stopped, on drivers that keep no mbufs in their RX descriptors).
    pub fn mempool_available(&self) -> (u32, u32) {
        self.pools.iter().map(|p| p.counts()).fold((0, 0), |(a, t), (pa, pt)| (a + pa, t + pt))
    }

    /// One pass over every RX queue: takes bursts until each queue is empty, `out` is full, or
    /// 8 bursts were taken from it. Returns the frames filled.
    pub fn poll(&mut self, out: &mut [Frame]) -> usize {
        let mut filled = 0;
        for _ in 0..self.queues {
            let q = self.next_queue;
            self.next_queue = if q + 1 >= self.queues { 0 } else { q + 1 };
            // At most MAX_BURSTS_PER_POLL bursts per queue per pass, so that a flood of
            // frames that are not ours (never filling `out`) cannot keep a pass from ending.
            for _ in 0..MAX_BURSTS_PER_POLL {
                if filled >= out.len() {
                    break;
                }
                let want = (out.len() - filled).min(BURST);
                let got = self.burst(q, want, &mut out[filled..]);
                filled += got.1;
                if got.0 < want {
                    break;
                }
            }
            if filled == out.len() {
                break;
            }
        }
        filled
    }

    /// One `rte_eth_rx_burst` of up to `want` (<= BURST, <= out.len()) frames on `queue`;
    /// returns (frames taken, frames delivered into `out`).
    fn burst(&mut self, queue: u16, want: usize, out: &mut [Frame]) -> (usize, usize) {
        // SAFETY: the three scratch arrays hold BURST entries and `want` <= BURST; the shim
        // writes at most `want` of each.
        let got = usize::from(unsafe {
            ffi::bn_rx_burst(
                self.port,
                queue,
                self.mbufs.as_mut_ptr(),
                self.data.as_mut_ptr(),
                self.lens.as_mut_ptr(),
                want as u16,
            )
        });
        self.rx.polls += 1;
        if got == 0 {
            return (0, 0);
        }
        self.rx.bursts += 1;
        self.rx.packets += got as u64;
        if let Some(n) = self.queue_packets.get_mut(usize::from(queue)) {
            *n += got as u64;
        }
        let mut delivered = 0;
        for i in 0..got.min(BURST) {
            let len = self.lens[i];
            if len == u32::MAX {
                // A chained mbuf: longer than one 2 KiB buffer, so over MAX_DATAGRAM.
                self.stats.oversized += 1;
                continue;
            }
            // SAFETY: data[i] points to the first segment's data of mbufs[i], `len` bytes long
            // (data_len), valid until the mbuf is freed below; nothing writes it meanwhile.
            let bytes = unsafe { std::slice::from_raw_parts(self.data[i], len as usize) };
            match l2::parse(bytes, &self.filter) {
                L2::Udp { from, payload } => {
                    if payload.len() > MAX_DATAGRAM {
                        self.stats.oversized += 1;
                    } else if let Some(frame) = out.get_mut(delivered) {
                        frame.bytes[..payload.len()].copy_from_slice(payload);
                        frame.len = payload.len() as u16;
                        frame.from = SocketAddr::V4(from);
                        delivered += 1;
                    } else {
                        // Unreachable: bursts are never larger than the room left in `out`.
                        self.stats.errors += 1;
                    }
                }
                L2::ArpRequest { .. } => match l2::arp_reply(bytes, self.mac, self.filter.ip) {
                    Some(reply) => {
                        // SAFETY: pools[0] is a live mempool; `reply` outlives the call,
                        // which copies its 42 bytes into a fresh mbuf.
                        let sent = unsafe {
                            ffi::bn_tx_copy(self.port, 0, self.pools[0].0, reply.as_ptr(), reply.len() as u16)
                        };
                        if sent == 1 {
                            self.stats.arp_replies += 1;
                        } else {
                            self.stats.errors += 1;
                        }
                    }
                    // A VLAN-tagged request: the reply has no room for the tag.
                    None => self.stats.foreign += 1,
                },
                L2::Drop(L2Drop::Fragment) => self.stats.fragments += 1,
                L2::Drop(d) if d.is_foreign() => self.stats.foreign += 1,
                L2::Drop(_) => self.stats.malformed += 1,
            }
        }
        // SAFETY: mbufs[..got] were returned by this burst, are owned by us, and none is used
        // after this (the payloads were copied out, `bytes` is dead).
        unsafe { ffi::bn_free_bulk(self.mbufs.as_mut_ptr(), got as u32) };
        (got, delivered)
    }

    /// Runs the RX path flat out for `duration` (frames are parsed, counted and delivered
    /// into a scratch array) and returns what it took.
    pub fn rx_bench(&mut self, duration: Duration) -> RxCounters {
        let start = self.rx;
        let mut out = vec![Frame::empty(); BURST * 2];
        let deadline = Instant::now() + duration;
        'outer: loop {
            for _ in 0..64 {
                let n = self.poll(&mut out);
                self.stats.received += n as u64;
                if n > 0 {
                    self.stats.batches += 1;
                }
            }
            if Instant::now() >= deadline {
                break 'outer;
            }
        }
        RxCounters {
            packets: self.rx.packets - start.packets,
            bursts: self.rx.bursts - start.bursts,
            polls: self.rx.polls - start.polls,
        }
    }
}

/// rte_errno of this thread, set by the failed call just before.
fn ffi_errno() -> c_int {
    ffi::bn_errno()
}

impl Ingress for DpdkIngress {
    fn recv(&mut self, out: &mut [Frame], timeout: Duration) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let start = Instant::now();
        let mut idle: u32 = 0;
        loop {
            let n = self.poll(out);
            if n > 0 {
                self.stats.received += n as u64;
                self.stats.batches += 1;
                return Ok(n);
            }
            if start.elapsed() >= timeout {
                return Ok(0);
            }
            idle = idle.saturating_add(1);
            if idle < 256 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.bind)
    }

    fn stats(&self) -> IngressStats {
        self.stats
    }

    fn backend(&self) -> Backend {
        Backend::Dpdk
    }
}

impl Drop for DpdkIngress {
    fn drop(&mut self) {
        // Stopped, not closed: a virtual device cannot be re-created after close, and the
        // same port may be opened again. The mempools stay (see `Pool`).
        let _ = ffi::bn_port_stop(self.port);
        state().open_ports.retain(|&p| p != self.port);
    }
}

/// What [`rx_bench`] measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RxBench {
    /// Frames the RX path took, parsed, counted and freed.
    pub packets: u64,
    /// Non-empty bursts.
    pub bursts: u64,
    /// Time measured.
    pub elapsed: Duration,
}

impl RxBench {
    /// Frames per second.
    pub fn packets_per_sec(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The EAL arguments of the benchmarks (`rx_bench` and the veth runs, which must agree: the
/// EAL starts once per process): main lcore 0, no hugepages, no PCI scan, no shared config, no
/// telemetry, and one `net_null0` device (port 0). Other devices are hot-plugged with
/// [`attach_vdev`].
pub fn bench_eal_args() -> Vec<String> {
    ["-l", "0", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--no-telemetry", "--vdev", "net_null0"]
        .into_iter()
        .map(String::from)
        .collect()
}

/// Measures the RX path on one core: opens `cfg` (typically EAL args with `--vdev net_null0`
/// and `dpdk_port` 0; an empty `eal_args` here means exactly that) and polls it flat out for
/// `duration`. For the perf harness's `ingress` suite ("DPDK RX path packets/s on net_null").
pub fn rx_bench(cfg: &IngressConfig, duration: Duration) -> Result<RxBench, NetError> {
    let mut cfg = cfg.clone();
    if cfg.bypass.eal_args.is_empty() && cfg.bypass.iface.is_none() {
        cfg.bypass.eal_args = bench_eal_args();
    }
    let mut ingress = DpdkIngress::open(&cfg)?;
    let start = Instant::now();
    let c = ingress.rx_bench(duration);
    Ok(RxBench { packets: c.packets, bursts: c.bursts, elapsed: start.elapsed() })
}

/// What an operator needs to know before using the DPDK backend: privileges, hugepages,
/// vfio/uio modules, whether the EAL starts with `cfg`'s arguments, and every port DPDK sees
/// (driver, MAC, max RX queues). Err (with the same report) when the configured port cannot
/// be used. Initialises the EAL of this process.
pub fn check(cfg: &IngressConfig) -> Result<String, String> {
    let mut r = String::new();
    let mut ok = true;
    if is_root() {
        r.push_str("privileges: root\n");
    } else {
        r.push_str("privileges: not root (DPDK needs root, or CAP_SYS_ADMIN + CAP_IPC_LOCK + CAP_NET_RAW)\n");
    }
    let huge = free_hugepages();
    if huge.is_empty() {
        r.push_str("hugepages: none configured (use --no-huge -m 256, or reserve hugepages for speed)\n");
    } else {
        let list: Vec<String> = huge.iter().map(|(size, free)| format!("{size}: {free} free")).collect();
        r.push_str(&format!("hugepages: {}\n", list.join(", ")));
    }
    let modules: Vec<&str> = ["vfio_pci", "vfio", "uio_pci_generic", "igb_uio"]
        .into_iter()
        .filter(|m| std::path::Path::new("/sys/module").join(m).exists())
        .collect();
    if modules.is_empty() {
        r.push_str(
            "kernel modules: no vfio_pci/uio loaded (only needed for physical NICs: modprobe vfio-pci, then \
             dpdk-devbind.py -b vfio-pci <pci>)\n",
        );
    } else {
        r.push_str(&format!("kernel modules: {}\n", modules.join(", ")));
    }
    let pmd_dir = env!("BASTION_DPDK_PMD_DIR");
    let pmds: Vec<&str> = ["net_null", "net_ring", "net_af_packet"]
        .into_iter()
        .filter(|d| std::path::Path::new(pmd_dir).join(format!("librte_{d}.so")).exists())
        .collect();
    r.push_str(&format!("driver plugin directory: {pmd_dir} (of the test drivers: {})\n", pmds.join(", ")));
    let args = eal_args(cfg);
    r.push_str(&format!("EAL arguments: {}\n", args.join(" ")));
    match init_eal(&args) {
        Ok(()) => r.push_str("EAL: initialised\n"),
        Err(e) => {
            r.push_str(&format!("EAL: {e}\n"));
            return Err(r);
        }
    }
    let ports = ports();
    r.push_str(&format!("ports: {}\n", ports.len()));
    for p in &ports {
        r.push_str(&format!(
            "  port {}: driver {}, MAC {}, max RX queues {}, max RX descriptors {}\n",
            p.port,
            p.driver,
            fmt_mac(p.mac),
            p.max_rx_queues,
            p.max_rx_desc
        ));
    }
    match ports.iter().find(|p| p.port == cfg.bypass.dpdk_port) {
        None => {
            ok = false;
            r.push_str(&format!(
                "configured port {}: missing (add a device to bypass.eal_args or change bypass.dpdk_port)\n",
                cfg.bypass.dpdk_port
            ));
        }
        Some(p) if p.max_rx_queues < cfg.bypass.queues => {
            ok = false;
            r.push_str(&format!(
                "configured port {}: {} RX queues asked, at most {} supported\n",
                p.port, cfg.bypass.queues, p.max_rx_queues
            ));
        }
        Some(p) => r.push_str(&format!("configured port {}: usable ({})\n", p.port, p.driver)),
    }
    if ok { Ok(r) } else { Err(r) }
}

/// A port backed by two `rte_ring`s (`rte_eth_from_rings`), for tests and benchmarks: frames
/// injected into its RX ring are what the port receives; what the port sends (ARP replies)
/// lands in its TX ring. The EAL must be initialised.
pub struct RingPort {
    port: u16,
    rx: *mut ffi::RteRing,
    tx: *mut ffi::RteRing,
    pool: Pool,
}

// SAFETY: rings and mempools are thread-safe DPDK objects (multi-producer/consumer rings) that
// are never freed.
unsafe impl Send for RingPort {}

impl fmt::Debug for RingPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingPort").field("port", &self.port).finish_non_exhaustive()
    }
}

impl RingPort {
    /// Creates the rings (`ring_size` slots each) and the port, and a mempool of `frames`
    /// mbufs to inject from. Ring and pool memory is never freed.
    pub fn create(ring_size: u32, frames: u32) -> Result<RingPort, NetError> {
        if !matches!(state().eal, Some(Ok(_))) {
            return Err(unavailable("RingPort::create needs an initialised EAL (init_eal first)"));
        }
        let id = {
            let mut st = state();
            st.next_name += 1;
            st.next_name
        };
        let name =
            |what: &str| CString::new(format!("bn_{what}{id}")).map_err(|_| NetError::Config("name".into()));
        let (rx_name, tx_name, pool_name, port_name) =
            (name("rx")?, name("tx")?, name("rp")?, name("rport")?);
        // SAFETY: the names are NUL-terminated and outlive the calls (DPDK copies them).
        let (rx, tx, pool) = unsafe {
            (
                ffi::bn_ring_create(rx_name.as_ptr(), ring_size, -1),
                ffi::bn_ring_create(tx_name.as_ptr(), ring_size, -1),
                ffi::bn_pool_create(pool_name.as_ptr(), frames, -1),
            )
        };
        if rx.is_null() || tx.is_null() || pool.is_null() {
            return Err(unavailable(format!(
                "creating rings/mempool for a ring port: DPDK said: {}",
                log_tail(2)
            )));
        }
        let mut port = 0u16;
        // SAFETY: the rings are live; the name outlives the call; `port` is writable.
        let rc = unsafe { ffi::bn_ring_port(port_name.as_ptr(), rx, tx, &mut port) };
        if rc != 0 {
            return Err(unavailable(format!("rte_eth_from_rings failed: {}", strerror(rc))));
        }
        Ok(RingPort { port, rx, tx, pool: Pool(pool) })
    }

    /// The port id.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Copies each frame into an mbuf and enqueues it on the RX ring; returns how many were
    /// enqueued (the rest did not fit: the ring or the injection mempool is full).
    pub fn inject(&self, frames: &[&[u8]]) -> usize {
        let mut done = 0;
        for chunk in frames.chunks(64) {
            let mut ptrs = [std::ptr::null::<u8>(); 64];
            let mut lens = [0u16; 64];
            for (i, f) in chunk.iter().enumerate() {
                ptrs[i] = f.as_ptr();
                lens[i] = u16::try_from(f.len()).unwrap_or(u16::MAX);
            }
            let n = chunk.len();
            // SAFETY: ptrs[..n]/lens[..n] describe live slices (a length is the slice's, or
            // 65535 for a longer slice, never more than it holds); ring and pool are live.
            let put =
                unsafe { ffi::bn_ring_inject(self.rx, self.pool.0, ptrs.as_ptr(), lens.as_ptr(), n as u32) }
                    as usize;
            done += put;
            if put < n {
                break;
            }
        }
        done
    }

    /// Frames waiting in the RX ring.
    pub fn rx_pending(&self) -> u32 {
        // SAFETY: the ring is live; counting only reads.
        unsafe { ffi::bn_ring_count(self.rx) }
    }

    /// Takes one frame the port sent (from its TX ring) into `out`; its full length, or None
    /// when none is waiting.
    pub fn take_sent(&self, out: &mut [u8]) -> Option<usize> {
        // SAFETY: `out` is writable for its length, passed as the capacity; the ring is live.
        let n = unsafe { ffi::bn_ring_take(self.tx, out.as_mut_ptr(), out.len()) };
        usize::try_from(n).ok()
    }

    /// (available, total) mbufs of the injection mempool.
    pub fn mempool_available(&self) -> (u32, u32) {
        self.pool.counts()
    }
}
