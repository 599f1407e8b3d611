//! Raw Ethernet frames for the kernel-bypass backends (AF_XDP, DPDK): one shared parser from a
//! received frame to "a UDP datagram for us" / "an ARP request for our address" / "dropped, and
//! why", plus the ARP reply and a frame builder for tests, benchmarks and senders.
//!
//! [`parse`] never panics and never allocates, on any input; the payload it returns borrows
//! the frame. Checks, in order (the first failing one is the drop reason):
//!
//! 1. Ethernet II header (14 bytes), then up to two VLAN tags (0x8100, 0x88A8; the VLAN id is
//!    not checked, a third tag is [`L2Drop::NotIpv4`]). The destination MAC is not checked
//!    (the NIC filters it). Ethertype ARP (0x0806) goes to step 7, IPv4 (0x0800) on, anything
//!    else is [`L2Drop::NotIpv4`].
//! 2. IPv4 header: at least 20 bytes present ([`L2Drop::Truncated`]), version 4 and IHL >= 5
//!    ([`L2Drop::BadIpHeader`]), the IHL * 4 bytes present (`Truncated`), header checksum
//!    ([`L2Drop::BadIpChecksum`]; so any damaged header byte past the first reads as a checksum
//!    failure), total length >= IHL * 4 (`BadIpHeader`) and within the frame (`Truncated`;
//!    bytes after the total length are Ethernet padding and ignored). Options are skipped.
//! 3. Protocol 17 ([`L2Drop::NotUdp`]), destination address = `filter.ip` unless that is
//!    unspecified ([`L2Drop::NotForUs`]).
//! 4. MF flag or fragment offset != 0: [`L2Drop::Fragment`].
//! 5. UDP: 8-byte header and UDP length = the IP payload length ([`L2Drop::BadUdpLength`]),
//!    destination port = `filter.port` unless 0 (`NotForUs`; checked before the checksum so
//!    foreign traffic costs no checksum).
//! 6. UDP checksum over the pseudo-header, unless it is 0 ([`L2Drop::BadUdpChecksum`]).
//! 7. ARP: the 28-byte Ethernet/IPv4 body present (`Truncated`); a request (opcode 1) whose
//!    target address is `filter.ip` (never when that is unspecified) is
//!    [`L2::ArpRequest`]; any other ARP (replies, other hardware/protocol types, requests
//!    for other addresses) is `NotForUs`.
//!
//! Checksums: [`Checksum`] is the RFC 1071 16-bit one's complement sum, summed 8 bytes at a
//! time into a u64 with end-around carry (in native byte order, swapped once at the end) and
//! folded once.

use std::net::{Ipv4Addr, SocketAddrV4};

/// Bytes of an untagged Ethernet II header (destination MAC, source MAC, ethertype).
pub const ETH_HEADER: usize = 14;
/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Ethertype of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// Ethertype of an 802.1ad (QinQ) service tag.
pub const ETHERTYPE_QINQ: u16 = 0x88A8;
/// Bytes of one VLAN tag (TPID + TCI).
pub const VLAN_TAG: usize = 4;
/// Bytes of an IPv4 header without options.
pub const IPV4_HEADER: usize = 20;
/// Bytes of a UDP header.
pub const UDP_HEADER: usize = 8;
/// Largest UDP payload in an IPv4 datagram (65535 - 20 - 8).
pub const MAX_UDP_PAYLOAD: usize = 65507;
/// Bytes of an Ethernet/IPv4 ARP packet after the Ethernet header.
pub const ARP_BODY: usize = 28;
/// Bytes of the ARP reply frame [`arp_reply`] builds.
pub const ARP_FRAME: usize = ETH_HEADER + ARP_BODY;

const PROTO_UDP: u8 = 17;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const ARP_HTYPE_ETHERNET: u16 = 1;

/// Which datagrams are ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2Filter {
    /// Destination address; [`Ipv4Addr::UNSPECIFIED`]: any destination (and no ARP answered).
    pub ip: Ipv4Addr,
    /// Destination port; 0: any.
    pub port: u16,
}

impl L2Filter {
    /// Every UDP datagram, whatever its destination; no ARP request is ours.
    pub const ANY: L2Filter = L2Filter { ip: Ipv4Addr::UNSPECIFIED, port: 0 };
}

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L2Drop {
    /// Shorter than its headers say (or than the headers themselves).
    Truncated,
    /// IPv4 version != 4, IHL < 5, or total length < header length.
    BadIpHeader,
    /// The IPv4 header checksum does not verify.
    BadIpChecksum,
    /// The UDP header does not fit, or the UDP length differs from the IP payload length.
    BadUdpLength,
    /// The UDP checksum is not 0 and does not verify.
    BadUdpChecksum,
    /// An IPv4 fragment (MF set or offset != 0); not reassembled.
    Fragment,
    /// Neither IPv4 nor ARP (IPv6, LLDP, a third VLAN tag, ...).
    NotIpv4,
    /// IPv4 but not UDP.
    NotUdp,
    /// Another destination address or port, or ARP that is not a request for our address.
    NotForUs,
}

impl L2Drop {
    /// Every reason, in declaration order.
    pub const ALL: [L2Drop; 9] = [
        L2Drop::Truncated,
        L2Drop::BadIpHeader,
        L2Drop::BadIpChecksum,
        L2Drop::BadUdpLength,
        L2Drop::BadUdpChecksum,
        L2Drop::Fragment,
        L2Drop::NotIpv4,
        L2Drop::NotUdp,
        L2Drop::NotForUs,
    ];

    /// snake_case name, for metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            L2Drop::Truncated => "truncated",
            L2Drop::BadIpHeader => "bad_ip_header",
            L2Drop::BadIpChecksum => "bad_ip_checksum",
            L2Drop::BadUdpLength => "bad_udp_length",
            L2Drop::BadUdpChecksum => "bad_udp_checksum",
            L2Drop::Fragment => "fragment",
            L2Drop::NotIpv4 => "not_ipv4",
            L2Drop::NotUdp => "not_udp",
            L2Drop::NotForUs => "not_for_us",
        }
    }

    /// Damaged or lying frames: Truncated, BadIpHeader, BadIpChecksum, BadUdpLength,
    /// BadUdpChecksum.
    pub fn is_malformed(self) -> bool {
        matches!(
            self,
            L2Drop::Truncated
                | L2Drop::BadIpHeader
                | L2Drop::BadIpChecksum
                | L2Drop::BadUdpLength
                | L2Drop::BadUdpChecksum
        )
    }

    /// Well-formed traffic that is not ours: NotIpv4, NotUdp, NotForUs.
    pub fn is_foreign(self) -> bool {
        matches!(self, L2Drop::NotIpv4 | L2Drop::NotUdp | L2Drop::NotForUs)
    }
}

/// What one Ethernet frame holds.
#[derive(Debug, PartialEq, Eq)]
pub enum L2<'a> {
    /// A UDP datagram for us (IPv4, checksums verified): its sender and payload (borrowed from
    /// the frame).
    Udp {
        /// Source address and port.
        from: SocketAddrV4,
        /// The UDP payload.
        payload: &'a [u8],
    },
    /// An ARP request asking who has `filter.ip` (the DPDK backend answers it).
    ArpRequest {
        /// The requester's hardware address (from the ARP body).
        sender_mac: [u8; 6],
        /// The requester's protocol address (0.0.0.0 for an RFC 5227 probe).
        sender_ip: Ipv4Addr,
    },
    /// Dropped.
    Drop(L2Drop),
}

/// Parses one frame (see the module documentation for the checks and their order). Never
/// panics, never allocates, on any input.
pub fn parse<'a>(frame: &'a [u8], filter: &L2Filter) -> L2<'a> {
    match classify(frame, filter) {
        Ok(l2) => l2,
        Err(drop) => L2::Drop(drop),
    }
}

/// Big-endian u16 at `at`, if present.
#[inline(always)]
fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    match bytes.get(at..)? {
        [hi, lo, ..] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

/// The ethertype after up to two VLAN tags, and the offset of what follows it.
#[inline(always)]
fn ethertype(frame: &[u8]) -> Result<(u16, usize), L2Drop> {
    let mut at = ETH_HEADER - 2;
    let mut ty = be16(frame, at).ok_or(L2Drop::Truncated)?;
    for _ in 0..2 {
        if ty != ETHERTYPE_VLAN && ty != ETHERTYPE_QINQ {
            break;
        }
        at += VLAN_TAG;
        ty = be16(frame, at).ok_or(L2Drop::Truncated)?;
    }
    Ok((ty, at + 2))
}

fn classify<'a>(frame: &'a [u8], filter: &L2Filter) -> Result<L2<'a>, L2Drop> {
    let (ty, at) = ethertype(frame)?;
    let rest = frame.get(at..).ok_or(L2Drop::Truncated)?;
    match ty {
        ETHERTYPE_IPV4 => ipv4_udp(rest, filter),
        ETHERTYPE_ARP => arp_request(rest, filter),
        _ => Err(L2Drop::NotIpv4),
    }
}

#[inline(always)]
fn ipv4_udp<'a>(ip: &'a [u8], filter: &L2Filter) -> Result<L2<'a>, L2Drop> {
    let fixed: &[u8; IPV4_HEADER] = ip.first_chunk().ok_or(L2Drop::Truncated)?;
    if fixed[0] >> 4 != 4 {
        return Err(L2Drop::BadIpHeader);
    }
    let ihl = usize::from(fixed[0] & 0x0f) * 4;
    if ihl < IPV4_HEADER {
        return Err(L2Drop::BadIpHeader);
    }
    let header = ip.get(..ihl).ok_or(L2Drop::Truncated)?;
    if Checksum::new().add_bytes(header).fold() != 0xffff {
        return Err(L2Drop::BadIpChecksum);
    }
    let total = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
    if total < ihl {
        return Err(L2Drop::BadIpHeader);
    }
    // Anything after `total` is Ethernet padding.
    let packet = ip.get(..total).ok_or(L2Drop::Truncated)?;
    if fixed[9] != PROTO_UDP {
        return Err(L2Drop::NotUdp);
    }
    let dst = Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]);
    if !filter.ip.is_unspecified() && dst != filter.ip {
        return Err(L2Drop::NotForUs);
    }
    if u16::from_be_bytes([fixed[6], fixed[7]]) & 0x3fff != 0 {
        return Err(L2Drop::Fragment);
    }

    let udp = packet.get(ihl..).ok_or(L2Drop::BadUdpLength)?;
    let udp_header: &[u8; UDP_HEADER] = udp.first_chunk().ok_or(L2Drop::BadUdpLength)?;
    let udp_len = u16::from_be_bytes([udp_header[4], udp_header[5]]);
    if usize::from(udp_len) != udp.len() {
        return Err(L2Drop::BadUdpLength);
    }
    let dst_port = u16::from_be_bytes([udp_header[2], udp_header[3]]);
    if filter.port != 0 && dst_port != filter.port {
        return Err(L2Drop::NotForUs);
    }
    if udp_header[6] != 0 || udp_header[7] != 0 {
        let sum = Checksum::new()
            .add_bytes(&[
                fixed[12], fixed[13], fixed[14], fixed[15], fixed[16], fixed[17], fixed[18], fixed[19],
            ])
            .add_u16(u16::from(PROTO_UDP))
            .add_u16(udp_len)
            .add_bytes(udp);
        if sum.fold() != 0xffff {
            return Err(L2Drop::BadUdpChecksum);
        }
    }
    let src = Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]);
    let src_port = u16::from_be_bytes([udp_header[0], udp_header[1]]);
    let payload = udp.get(UDP_HEADER..).ok_or(L2Drop::BadUdpLength)?;
    Ok(L2::Udp { from: SocketAddrV4::new(src, src_port), payload })
}

fn arp_request<'a>(body: &[u8], filter: &L2Filter) -> Result<L2<'a>, L2Drop> {
    let arp: &[u8; ARP_BODY] = body.first_chunk().ok_or(L2Drop::Truncated)?;
    let htype = u16::from_be_bytes([arp[0], arp[1]]);
    let ptype = u16::from_be_bytes([arp[2], arp[3]]);
    let oper = u16::from_be_bytes([arp[6], arp[7]]);
    let target = Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]);
    if htype != ARP_HTYPE_ETHERNET
        || ptype != ETHERTYPE_IPV4
        || arp[4] != 6
        || arp[5] != 4
        || oper != ARP_REQUEST
        || filter.ip.is_unspecified()
        || target != filter.ip
    {
        return Err(L2Drop::NotForUs);
    }
    Ok(L2::ArpRequest {
        sender_mac: [arp[8], arp[9], arp[10], arp[11], arp[12], arp[13]],
        sender_ip: Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]),
    })
}

/// The ARP reply (a complete 42-byte Ethernet frame) to an ARP request frame asking for
/// `my_ip`; None for anything else. Only untagged requests are answered (the 42-byte reply has
/// no room for a VLAN tag; [`parse`] reports tagged requests all the same). The reply goes to
/// the requester's hardware address from the ARP body (Ethernet destination and target
/// hardware address), from `my_mac`; it is not padded to the 60-byte minimum (NICs pad on
/// transmit).
pub fn arp_reply(request: &[u8], my_mac: [u8; 6], my_ip: Ipv4Addr) -> Option<[u8; ARP_FRAME]> {
    if be16(request, ETH_HEADER - 2)? != ETHERTYPE_ARP {
        return None;
    }
    let L2::ArpRequest { sender_mac, sender_ip } = parse(request, &L2Filter { ip: my_ip, port: 0 }) else {
        return None;
    };
    let mut out = [0u8; ARP_FRAME];
    out[0..6].copy_from_slice(&sender_mac);
    out[6..12].copy_from_slice(&my_mac);
    out[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    out[14..16].copy_from_slice(&ARP_HTYPE_ETHERNET.to_be_bytes());
    out[16..18].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    out[18] = 6;
    out[19] = 4;
    out[20..22].copy_from_slice(&ARP_REPLY.to_be_bytes());
    out[22..28].copy_from_slice(&my_mac);
    out[28..32].copy_from_slice(&my_ip.octets());
    out[32..38].copy_from_slice(&sender_mac);
    out[38..42].copy_from_slice(&sender_ip.octets());
    Some(out)
}

/// Why [`build_udp_frame`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum L2BuildError {
    /// The payload does not fit one IPv4 datagram.
    #[error("UDP payload of {len} bytes is over the IPv4 maximum of {MAX_UDP_PAYLOAD} bytes")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
    },
    /// A VLAN id must be 0..=4095.
    #[error("VLAN id {0} is over 4095")]
    VlanId(u16),
}

/// Appends an Ethernet/IPv4/UDP frame with correct checksums to `out` (nothing else in `out`
/// changes), for tests, benchmarks and senders: an 802.1Q tag with VLAN id `vlan` (priority 0)
/// if given, IPv4 with DF set, TTL 64, id 0, no options, DSCP/ECN 0; the UDP checksum is
/// computed (0xffff when it comes out 0). Not padded to the 60-byte Ethernet minimum (NICs pad
/// on transmit). Errors: payload over 65507 bytes, VLAN id over 4095.
pub fn build_udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
    vlan: Option<u16>,
    out: &mut Vec<u8>,
) -> Result<(), L2BuildError> {
    if payload.len() > MAX_UDP_PAYLOAD {
        return Err(L2BuildError::PayloadTooLarge { len: payload.len() });
    }
    let too_large = L2BuildError::PayloadTooLarge { len: payload.len() };
    let udp_len = u16::try_from(UDP_HEADER + payload.len()).map_err(|_| too_large)?;
    let total = u16::try_from(IPV4_HEADER + UDP_HEADER + payload.len()).map_err(|_| too_large)?;
    if let Some(id) = vlan
        && id > 0x0fff
    {
        return Err(L2BuildError::VlanId(id));
    }

    out.reserve(ETH_HEADER + VLAN_TAG + usize::from(total));
    out.extend_from_slice(&dst_mac);
    out.extend_from_slice(&src_mac);
    if let Some(id) = vlan {
        out.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());

    let (s, d) = (src.ip().octets(), dst.ip().octets());
    let [t0, t1] = total.to_be_bytes();
    let mut ip =
        [0x45, 0, t0, t1, 0, 0, 0x40, 0, 64, PROTO_UDP, 0, 0, s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3]];
    let [c0, c1] = ipv4_header_checksum(&ip).to_be_bytes();
    ip[10] = c0;
    ip[11] = c1;
    out.extend_from_slice(&ip);

    let [sp0, sp1] = src.port().to_be_bytes();
    let [dp0, dp1] = dst.port().to_be_bytes();
    let [l0, l1] = udp_len.to_be_bytes();
    let mut udp = [sp0, sp1, dp0, dp1, l0, l1, 0, 0];
    let sum = pseudo_header(*src.ip(), *dst.ip(), udp_len).add_bytes(&udp).add_bytes(payload);
    let [u0, u1] = transmitted(sum.finish()).to_be_bytes();
    udp[6] = u0;
    udp[7] = u1;
    out.extend_from_slice(&udp);
    out.extend_from_slice(payload);
    Ok(())
}

/// Per-reason drop counters, plus delivered datagrams and ARP requests for us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct L2Counters {
    /// [`L2::Udp`].
    pub udp: u64,
    /// [`L2::ArpRequest`].
    pub arp_requests: u64,
    /// [`L2Drop::Truncated`].
    pub truncated: u64,
    /// [`L2Drop::BadIpHeader`].
    pub bad_ip_header: u64,
    /// [`L2Drop::BadIpChecksum`].
    pub bad_ip_checksum: u64,
    /// [`L2Drop::BadUdpLength`].
    pub bad_udp_length: u64,
    /// [`L2Drop::BadUdpChecksum`].
    pub bad_udp_checksum: u64,
    /// [`L2Drop::Fragment`].
    pub fragments: u64,
    /// [`L2Drop::NotIpv4`].
    pub not_ipv4: u64,
    /// [`L2Drop::NotUdp`].
    pub not_udp: u64,
    /// [`L2Drop::NotForUs`].
    pub not_for_us: u64,
}

impl L2Counters {
    /// Increments the counter matching `parsed` (wrapping, never panics).
    pub fn record(&mut self, parsed: &L2<'_>) {
        let counter = match parsed {
            L2::Udp { .. } => &mut self.udp,
            L2::ArpRequest { .. } => &mut self.arp_requests,
            L2::Drop(drop) => self.drop_counter(*drop),
        };
        *counter = counter.wrapping_add(1);
    }

    /// The counter of one drop reason.
    pub fn dropped(&self, reason: L2Drop) -> u64 {
        match reason {
            L2Drop::Truncated => self.truncated,
            L2Drop::BadIpHeader => self.bad_ip_header,
            L2Drop::BadIpChecksum => self.bad_ip_checksum,
            L2Drop::BadUdpLength => self.bad_udp_length,
            L2Drop::BadUdpChecksum => self.bad_udp_checksum,
            L2Drop::Fragment => self.fragments,
            L2Drop::NotIpv4 => self.not_ipv4,
            L2Drop::NotUdp => self.not_udp,
            L2Drop::NotForUs => self.not_for_us,
        }
    }

    fn drop_counter(&mut self, reason: L2Drop) -> &mut u64 {
        match reason {
            L2Drop::Truncated => &mut self.truncated,
            L2Drop::BadIpHeader => &mut self.bad_ip_header,
            L2Drop::BadIpChecksum => &mut self.bad_ip_checksum,
            L2Drop::BadUdpLength => &mut self.bad_udp_length,
            L2Drop::BadUdpChecksum => &mut self.bad_udp_checksum,
            L2Drop::Fragment => &mut self.fragments,
            L2Drop::NotIpv4 => &mut self.not_ipv4,
            L2Drop::NotUdp => &mut self.not_udp,
            L2Drop::NotForUs => &mut self.not_for_us,
        }
    }

    /// Frames dropped as malformed ([`L2Drop::is_malformed`]).
    pub fn malformed(&self) -> u64 {
        L2Drop::ALL.iter().filter(|d| d.is_malformed()).fold(0u64, |n, d| n.wrapping_add(self.dropped(*d)))
    }

    /// Frames dropped as foreign ([`L2Drop::is_foreign`]).
    pub fn foreign(&self) -> u64 {
        L2Drop::ALL.iter().filter(|d| d.is_foreign()).fold(0u64, |n, d| n.wrapping_add(self.dropped(*d)))
    }
}

/// A running RFC 1071 Internet checksum: the 16-bit one's complement sum of big-endian words.
///
/// Summed 8 bytes at a time into a u64 with end-around carry, in native byte order (the sum
/// is byte-order independent; [`Checksum::fold`] swaps once), folded to 16 bits at the end.
/// Parts may be added one after another (`add_bytes`, `add_u16`) as long as every part but the
/// last has an even length (an odd part's last byte is padded with a zero byte).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checksum(u64);

impl Checksum {
    /// An empty sum.
    #[inline(always)]
    pub const fn new() -> Checksum {
        Checksum(0)
    }

    #[inline(always)]
    fn add_word(self, word: u64) -> Checksum {
        let (sum, carry) = self.0.overflowing_add(word);
        Checksum(sum + u64::from(carry))
    }

    /// Adds `data` as big-endian 16-bit words (an odd last byte as its high half).
    #[inline]
    pub fn add_bytes(self, data: &[u8]) -> Checksum {
        let (chunks, rest) = data.as_chunks::<8>();
        let mut sum = self;
        for chunk in chunks {
            sum = sum.add_word(u64::from_ne_bytes(*chunk));
        }
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            if let Some(head) = last.get_mut(..rest.len()) {
                head.copy_from_slice(rest);
            }
            sum = sum.add_word(u64::from_ne_bytes(last));
        }
        sum
    }

    /// Adds one 16-bit word (host value, summed as its big-endian bytes).
    #[inline(always)]
    pub fn add_u16(self, word: u16) -> Checksum {
        self.add_word(u64::from(u16::from_ne_bytes(word.to_be_bytes())))
    }

    /// The 16-bit one's complement sum (not complemented). A checksummed header or segment
    /// that verifies folds to 0xffff.
    #[inline(always)]
    pub fn fold(self) -> u16 {
        let s = self.0;
        let s = (s >> 32) + (s & 0xffff_ffff);
        let s = (s >> 16) + (s & 0xffff);
        let s = (s >> 16) + (s & 0xffff);
        let s = (s >> 16) + (s & 0xffff);
        // `s` <= 0xffff here; the truncation is exact.
        let native = s as u16;
        u16::from_be_bytes(native.to_ne_bytes())
    }

    /// The checksum to transmit: the complement of [`Checksum::fold`].
    #[inline(always)]
    pub fn finish(self) -> u16 {
        !self.fold()
    }
}

/// The 16-bit one's complement sum of `data` (big-endian words, odd last byte padded), not
/// complemented.
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    Checksum::new().add_bytes(data).fold()
}

/// The IPv4 header checksum of `header` (the IHL * 4 header bytes) with its checksum field
/// (bytes 10..12) counted as zero: the value to store there, and equal to the stored value
/// when the header is intact.
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    match (header.get(..10), header.get(12..)) {
        (Some(before), Some(after)) => Checksum::new().add_bytes(before).add_bytes(after).finish(),
        _ => Checksum::new().add_bytes(header).finish(),
    }
}

/// The UDP checksum of `udp` (header and payload) from `src` to `dst`, over the IPv4
/// pseudo-header, with the checksum field (bytes 6..8) counted as zero and the UDP length
/// taken from `udp.len()`; 0 comes out as 0xffff (0 on the wire means "no checksum").
pub fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let len = u16::try_from(udp.len()).unwrap_or(u16::MAX);
    let sum = pseudo_header(src, dst, len);
    let sum = match (udp.get(..6), udp.get(8..)) {
        (Some(before), Some(after)) => sum.add_bytes(before).add_bytes(after),
        _ => sum.add_bytes(udp),
    };
    transmitted(sum.finish())
}

#[inline(always)]
fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> Checksum {
    let (s, d) = (src.octets(), dst.octets());
    Checksum::new()
        .add_bytes(&[s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3]])
        .add_u16(u16::from(PROTO_UDP))
        .add_u16(udp_len)
}

/// A computed UDP checksum of 0 is sent as 0xffff.
#[inline(always)]
fn transmitted(checksum: u16) -> u16 {
    if checksum == 0 { 0xffff } else { checksum }
}
