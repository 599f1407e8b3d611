//! The XDP program that steers the validator's UDP port to the AF_XDP sockets, hand-assembled
//! from eBPF instructions, and the `XSKMAP` it redirects through.
//!
//! ```text
//!        r6 = r1                        ; keep the context (struct xdp_md *)
//!        r2 = *(u32 *)(r6 + 0)          ; data
//!        r3 = *(u32 *)(r6 + 4)          ; data_end
//!        r4 = r2
//!        r4 += 14
//!        if r4 > r3 goto pass           ; Ethernet header in bounds?
//!        r5 = *(u16 *)(r2 + 12)         ; EtherType (network order)
//!        r2 += 14                       ; r2 = start of the L3 header
//!        if r5 == 0x8100 goto tag1      ; 802.1Q tag?
//!        if r5 != 0x88a8 goto novlan    ; 802.1ad (QinQ outer) tag?
//! tag1:  r4 = r2
//!        r4 += 4
//!        if r4 > r3 goto pass           ; tag in bounds?
//!        r5 = *(u16 *)(r2 + 2)          ; the EtherType after the tag
//!        r2 += 4
//!        if r5 == 0x8100 goto tag2      ; a second tag (same five lines again)
//!        if r5 != 0x88a8 goto novlan
//! tag2:  r4 = r2
//!        r4 += 4
//!        if r4 > r3 goto pass
//!        r5 = *(u16 *)(r2 + 2)
//!        r2 += 4                        ; (a third tag fails the IPv4 test: kernel's)
//! novlan:
//!        if r5 != 0x0800 goto pass      ; IPv4?
//!        r4 = r2
//!        r4 += 20
//!        if r4 > r3 goto pass           ; fixed IPv4 header in bounds?
//!        r5 = *(u8 *)(r2 + 9)           ; protocol
//!        if r5 != 17 goto pass          ; UDP?
//!        r5 = *(u16 *)(r2 + 6)          ; flags + fragment offset
//!        r5 &= 0x1fff                   ; fragment offset (network order mask)
//!        if r5 != 0 goto pass           ; a later fragment has no UDP header: kernel's
//!        r5 = *(u32 *)(r2 + 16)         ; destination address      } only when the bind
//!        if w5 != IP goto pass          ; (32-bit compare)          } address is set
//!        r5 = *(u8 *)(r2 + 0)           ; version + IHL
//!        r5 &= 0x0f                     ; IHL (words)
//!        r5 <<= 2                       ; header length in bytes, 0..=60
//!        r2 += r5                       ; r2 = start of the UDP header
//!        r4 = r2
//!        r4 += 8
//!        if r4 > r3 goto pass           ; UDP header in bounds?
//!        r5 = *(u16 *)(r2 + 2)          ; destination port
//!        if r5 != PORT goto pass        ; the validator's port?
//!        r1 = map[xsks_map]             ; ld_imm64, BPF_PSEUDO_MAP_FD
//!        r2 = *(u32 *)(r6 + 16)         ; rx_queue_index
//!        r3 = 2                         ; XDP_PASS when no socket sits at that index
//!        call bpf_redirect_map
//!        exit                           ; XDP_REDIRECT, or XDP_PASS
//! pass:
//!        r0 = 2                         ; XDP_PASS: everything else goes to the kernel
//!        exit
//! ```
//!
//! Packet loads are host-endian, so the network-order constants (EtherTypes, the fragment
//! mask, the address, the port) are converted with `from_ne_bytes(x.to_be_bytes())`.

use super::sys::{self, MapCreateAttr, MapUpdateAttr, ProgLoadAttr};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

// Instruction classes, sizes, modes, operations (<linux/bpf_common.h>, <linux/bpf.h>).
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_H: u8 = 0x08;
const BPF_B: u8 = 0x10;
const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_ADD: u8 = 0x00;
const BPF_AND: u8 = 0x50;
const BPF_LSH: u8 = 0x60;
const BPF_MOV: u8 = 0xb0;
const BPF_JEQ: u8 = 0x10;
const BPF_JGT: u8 = 0x20;
const BPF_JNE: u8 = 0x50;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;

/// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;

/// One `struct bpf_insn` (opcode, dst:4/src:4 bitfield, off, imm) as the u64 the kernel reads,
/// laid out in host byte order (the bitfield's nibble order follows the byte order, as in the
/// kernel's UAPI header).
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    let regs =
        if cfg!(target_endian = "little") { (dst & 0x0f) | (src << 4) } else { (dst << 4) | (src & 0x0f) };
    let o = off.to_ne_bytes();
    let i = imm.to_ne_bytes();
    u64::from_ne_bytes([code, regs, o[0], o[1], i[0], i[1], i[2], i[3]])
}

/// A network-order 16-bit constant as a host-endian load sees it.
fn be16(v: u16) -> i32 {
    i32::from(u16::from_ne_bytes(v.to_be_bytes()))
}

/// A forward jump target.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Label {
    Pass,
    NoVlan,
    Tag1,
    Tag2,
}

/// A tiny assembler: instructions plus forward jumps patched once labels are placed.
#[derive(Default, Debug)]
struct Asm {
    insns: Vec<u64>,
    fixups: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Asm {
    fn emit(&mut self, i: u64) {
        self.insns.push(i);
    }
    /// `dst = src` (64-bit).
    fn mov_reg(&mut self, dst: u8, src: u8) {
        self.emit(insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0));
    }
    /// `dst = imm` (64-bit).
    fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.emit(insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm));
    }
    /// `dst += imm`.
    fn add_imm(&mut self, dst: u8, imm: i32) {
        self.emit(insn(BPF_ALU64 | BPF_ADD | BPF_K, dst, 0, 0, imm));
    }
    /// `dst += src`.
    fn add_reg(&mut self, dst: u8, src: u8) {
        self.emit(insn(BPF_ALU64 | BPF_ADD | BPF_X, dst, src, 0, 0));
    }
    /// `dst &= imm`.
    fn and_imm(&mut self, dst: u8, imm: i32) {
        self.emit(insn(BPF_ALU64 | BPF_AND | BPF_K, dst, 0, 0, imm));
    }
    /// `dst <<= imm`.
    fn lsh_imm(&mut self, dst: u8, imm: i32) {
        self.emit(insn(BPF_ALU64 | BPF_LSH | BPF_K, dst, 0, 0, imm));
    }
    /// `dst = *(size *)(src + off)`.
    fn load(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.emit(insn(BPF_LDX | size | BPF_MEM, dst, src, off, 0));
    }
    /// `if dst > src goto label` (unsigned, 64-bit).
    fn jgt_reg(&mut self, dst: u8, src: u8, label: Label) {
        self.fixups.push((self.insns.len(), label));
        self.emit(insn(BPF_JMP | BPF_JGT | BPF_X, dst, src, 0, 0));
    }
    /// `if dst != imm goto label` (64-bit, imm sign-extended).
    fn jne_imm(&mut self, dst: u8, imm: i32, label: Label) {
        self.fixups.push((self.insns.len(), label));
        self.emit(insn(BPF_JMP | BPF_JNE | BPF_K, dst, 0, 0, imm));
    }
    /// `if dst == imm goto label` (64-bit, imm sign-extended).
    fn jeq_imm(&mut self, dst: u8, imm: i32, label: Label) {
        self.fixups.push((self.insns.len(), label));
        self.emit(insn(BPF_JMP | BPF_JEQ | BPF_K, dst, 0, 0, imm));
    }
    /// `if (u32)dst != (u32)imm goto label`.
    fn jne32_imm(&mut self, dst: u8, imm: i32, label: Label) {
        self.fixups.push((self.insns.len(), label));
        self.emit(insn(BPF_JMP32 | BPF_JNE | BPF_K, dst, 0, 0, imm));
    }
    /// `dst = map` (`ld_imm64` with `BPF_PSEUDO_MAP_FD`: the kernel swaps the fd for the map).
    fn ld_map_fd(&mut self, dst: u8, fd: i32) {
        self.emit(insn(BPF_LD | BPF_DW | BPF_IMM, dst, sys::BPF_PSEUDO_MAP_FD, 0, fd));
        self.emit(insn(0, 0, 0, 0, 0));
    }
    fn call(&mut self, helper: i32) {
        self.emit(insn(BPF_JMP | BPF_CALL, 0, 0, 0, helper));
    }
    fn exit(&mut self) {
        self.emit(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    }
    fn label(&mut self, l: Label) {
        self.labels.push((l, self.insns.len()));
    }
    /// Resolves the jumps (offsets count from the next instruction).
    fn finish(mut self) -> Result<Vec<u64>, String> {
        for &(at, l) in &self.fixups {
            let target = self.labels.iter().find(|(x, _)| *x == l).map(|&(_, t)| t);
            let target = target.ok_or_else(|| format!("XDP program: label {l:?} never placed"))?;
            let off = i16::try_from(target as i64 - at as i64 - 1)
                .map_err(|_| format!("XDP program: jump to {l:?} out of range"))?;
            let o = off.to_ne_bytes();
            let mut b = self.insns[at].to_ne_bytes();
            b[2] = o[0];
            b[3] = o[1];
            self.insns[at] = u64::from_ne_bytes(b);
        }
        Ok(self.insns)
    }
}

/// The steering program (see the module docs for the listing) for UDP `port` (non-zero) and,
/// when `ip` is not unspecified, destination address `ip`, redirecting through `map_fd`.
pub(crate) fn program(map_fd: i32, ip: Ipv4Addr, port: u16) -> Result<Vec<u64>, String> {
    use Label::{NoVlan, Pass, Tag1, Tag2};
    let mut a = Asm::default();
    a.mov_reg(R6, R1);
    a.load(BPF_W, R2, R6, 0);
    a.load(BPF_W, R3, R6, 4);
    a.mov_reg(R4, R2);
    a.add_imm(R4, 14);
    a.jgt_reg(R4, R3, Pass);
    a.load(BPF_H, R5, R2, 12);
    a.add_imm(R2, 14);
    // Up to two VLAN tags (802.1Q 0x8100 or 802.1ad 0x88a8), as `l2::parse` accepts.
    for tag in [Tag1, Tag2] {
        a.jeq_imm(R5, be16(0x8100), tag);
        a.jne_imm(R5, be16(0x88a8), NoVlan);
        a.label(tag);
        a.mov_reg(R4, R2);
        a.add_imm(R4, 4);
        a.jgt_reg(R4, R3, Pass);
        a.load(BPF_H, R5, R2, 2);
        a.add_imm(R2, 4);
    }
    a.label(NoVlan);
    a.jne_imm(R5, be16(0x0800), Pass);
    a.mov_reg(R4, R2);
    a.add_imm(R4, 20);
    a.jgt_reg(R4, R3, Pass);
    a.load(BPF_B, R5, R2, 9);
    a.jne_imm(R5, 17, Pass);
    a.load(BPF_H, R5, R2, 6);
    a.and_imm(R5, be16(0x1fff));
    a.jne_imm(R5, 0, Pass);
    if !ip.is_unspecified() {
        a.load(BPF_W, R5, R2, 16);
        a.jne32_imm(R5, i32::from_ne_bytes(ip.octets()), Pass);
    }
    a.load(BPF_B, R5, R2, 0);
    a.and_imm(R5, 0x0f);
    a.lsh_imm(R5, 2);
    a.add_reg(R2, R5);
    a.mov_reg(R4, R2);
    a.add_imm(R4, 8);
    a.jgt_reg(R4, R3, Pass);
    a.load(BPF_H, R5, R2, 2);
    a.jne_imm(R5, be16(port), Pass);
    a.ld_map_fd(R1, map_fd);
    a.load(BPF_W, R2, R6, 16);
    a.mov_imm(R3, sys::XDP_PASS);
    a.call(sys::BPF_FUNC_REDIRECT_MAP);
    a.exit();
    a.label(Pass);
    a.mov_imm(R0, sys::XDP_PASS);
    a.exit();
    a.finish()
}

/// Creates the `BPF_MAP_TYPE_XSKMAP` (u32 queue index -> AF_XDP socket fd) with `entries` slots.
pub(crate) fn create_xskmap(entries: u32) -> Result<OwnedFd, String> {
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"bastion_xsks");
    let mut attr = MapCreateAttr {
        map_type: sys::BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: entries,
        map_name: name,
        ..MapCreateAttr::default()
    };
    sys::bpf_fd(sys::BPF_MAP_CREATE, &mut attr).map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::EPERM) {
            " (needs root, or CAP_BPF and CAP_NET_ADMIN, and a high enough RLIMIT_MEMLOCK on old kernels)"
        } else {
            ""
        };
        format!("bpf(BPF_MAP_CREATE, XSKMAP of {entries}): {e}{hint}")
    })
}

/// Puts socket `xsk_fd` at `queue` in the map.
pub(crate) fn set_socket(map: &OwnedFd, queue: u32, xsk_fd: i32) -> Result<(), String> {
    let key = queue;
    let value = xsk_fd as u32;
    let mut attr = MapUpdateAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: sys::BPF_ANY,
    };
    sys::bpf(sys::BPF_MAP_UPDATE_ELEM, &mut attr)
        .map(|_| ())
        .map_err(|e| format!("bpf(BPF_MAP_UPDATE_ELEM, xsks_map[{queue}]): {e}"))
}

/// Loads `insns` as an XDP program; on failure the error carries the verifier's log.
pub(crate) fn load(insns: &[u64]) -> Result<OwnedFd, String> {
    // bpf_redirect_map is not GPL-only, so the program need not declare a GPL-compatible
    // licence; it carries the workspace's.
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"bastion_xdp\0");
    let attempt = |log: &mut [u8], level: u32| {
        let mut attr = ProgLoadAttr {
            prog_type: sys::BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: level,
            log_size: if level == 0 { 0 } else { log.len() as u32 },
            log_buf: if level == 0 { 0 } else { log.as_mut_ptr() as u64 },
            prog_name: name,
            expected_attach_type: sys::BPF_XDP,
            ..ProgLoadAttr::default()
        };
        sys::bpf_fd(sys::BPF_PROG_LOAD, &mut attr)
    };
    let mut log = vec![0u8; 64 * 1024];
    match attempt(&mut log, 0) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            // Again with the verifier's log, to say why.
            let detail = match attempt(&mut log, 1) {
                Ok(_) => String::new(),
                Err(_) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(&log[..end]);
                    let text = text.trim();
                    if text.is_empty() { String::new() } else { format!("; verifier log:\n{text}") }
                }
            };
            let hint = if first.raw_os_error() == Some(libc::EPERM) {
                " (needs root, or CAP_BPF and CAP_NET_ADMIN)"
            } else {
                ""
            };
            Err(format!("bpf(BPF_PROG_LOAD, XDP): {first}{hint}{detail}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_kernel() {
        // r6 = r1 is 0xbf, regs 0x16 (dst 6, src 1), in memory order.
        assert_eq!(
            insn(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0).to_ne_bytes(),
            [0xbf, 0x16, 0, 0, 0, 0, 0, 0]
        );
        // exit
        assert_eq!(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0).to_ne_bytes()[0], 0x95);
        let p = program(3, Ipv4Addr::UNSPECIFIED, 9000).unwrap();
        let q = program(3, Ipv4Addr::new(10, 0, 0, 1), 9000).unwrap();
        assert_eq!(q.len(), p.len() + 2);
        // Last two: r0 = 2; exit.
        assert_eq!(p[p.len() - 2].to_ne_bytes(), [0xb7, 0, 0, 0, 2, 0, 0, 0]);
    }
}
