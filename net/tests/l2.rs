//! The Ethernet frame parser (`bastion_net::l2`): round trips through `build_udp_frame`, one
//! targeted corruption per drop reason, checksums against a byte-by-byte reference, ARP
//! replies, and "never panics" on arbitrary bytes and on every prefix of valid frames.
//!
//! Property tests use proptest (it prints the failing input and persists its seed under
//! `proptest-regressions/` for replay); the seeded mutation sweep prints its seed and
//! `BASTION_SEED=<n>` replays it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddrV4};

use bastion_net::l2::{
    ARP_FRAME, Checksum, ETH_HEADER, L2, L2BuildError, L2Counters, L2Drop, L2Filter, MAX_UDP_PAYLOAD,
    arp_reply, build_udp_frame, ipv4_header_checksum, ones_complement_sum, parse, udp_checksum,
};
use proptest::prelude::*;

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 7), 40000);
const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 9000);
const US: L2Filter = L2Filter { ip: Ipv4Addr::new(10, 0, 0, 1), port: 9000 };

// ---------------------------------------------------------------------------------------------
// Independent references and helpers.

/// Byte-by-byte one's complement sum of big-endian words (odd last byte as the high half).
fn reference_sum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for (i, b) in data.iter().enumerate() {
        sum += if i % 2 == 0 { u64::from(*b) << 8 } else { u64::from(*b) };
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn frame(payload: &[u8], vlan: Option<u16>) -> Vec<u8> {
    let mut out = Vec::new();
    build_udp_frame(SRC_MAC, DST_MAC, CLIENT, SERVER, payload, vlan, &mut out).unwrap();
    out
}

/// Offset of the IPv4 header in a frame from `frame` (untagged).
const IP: usize = ETH_HEADER;
/// Offset of the UDP header in an untagged frame without IP options.
const UDP: usize = ETH_HEADER + 20;

/// Recomputes the IPv4 header checksum (reference implementation) of the header at `ip`.
fn fix_ip_checksum(frame: &mut [u8], ip: usize) {
    let ihl = usize::from(frame[ip] & 0x0f) * 4;
    frame[ip + 10] = 0;
    frame[ip + 11] = 0;
    let c = !reference_sum(&frame[ip..ip + ihl]);
    frame[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
}

fn set_u16(frame: &mut [u8], at: usize, value: u16) {
    frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

fn udp_of(payload: &[u8]) -> L2<'_> {
    L2::Udp { from: CLIENT, payload }
}

fn arp_frame(oper: u16, sender_mac: [u8; 6], sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&oper.to_be_bytes());
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&sender_ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target_ip.octets());
    assert_eq!(f.len(), ARP_FRAME);
    f
}

/// Inserts a VLAN tag with TPID `tpid` right after the MAC addresses.
fn push_tag(frame: &mut Vec<u8>, tpid: u16, vid: u16) {
    let mut tag = tpid.to_be_bytes().to_vec();
    tag.extend_from_slice(&vid.to_be_bytes());
    frame.splice(12..12, tag);
}

// ---------------------------------------------------------------------------------------------
// Round trips and the filter.

proptest! {
    /// Random addresses, ports, payload sizes 0..1472, with and without VLAN: the built frame
    /// parses back to its sender and payload, the filter selects it exactly, and every proper
    /// prefix is Truncated.
    #[test]
    fn build_then_parse_round_trips(
        src_ip in any::<u32>(), dst_ip in any::<u32>(),
        src_port in any::<u16>(), dst_port in any::<u16>(),
        payload in proptest::collection::vec(any::<u8>(), 0..1472),
        vlan in proptest::option::of(0u16..4096),
        src_mac in any::<[u8; 6]>(), dst_mac in any::<[u8; 6]>(),
    ) {
        let src = SocketAddrV4::new(Ipv4Addr::from(src_ip), src_port);
        let dst = SocketAddrV4::new(Ipv4Addr::from(dst_ip), dst_port);
        let mut f = vec![0xee; 3]; // appends, leaves what was there
        build_udp_frame(src_mac, dst_mac, src, dst, &payload, vlan, &mut f).unwrap();
        prop_assert_eq!(&f[..3], &[0xee; 3]);
        let f = &f[3..];
        let tag = if vlan.is_some() { 4 } else { 0 };
        prop_assert_eq!(f.len(), ETH_HEADER + tag + 28 + payload.len());
        prop_assert_eq!(&f[..6], &dst_mac);
        prop_assert_eq!(&f[6..12], &src_mac);
        if let Some(id) = vlan {
            prop_assert_eq!(&f[12..16], &[0x81, 0x00, (id >> 8) as u8, id as u8]);
        }
        let ip = ETH_HEADER + tag;
        // DF, TTL 64, id 0, header checksum right by the reference.
        prop_assert_eq!(&f[ip + 4..ip + 10], &[0, 0, 0x40, 0, 64, 17]);
        prop_assert_eq!(reference_sum(&f[ip..ip + 20]), 0xffff);

        let expected = L2::Udp { from: src, payload: &payload[..] };
        let exact = L2Filter { ip: *dst.ip(), port: dst_port };
        let other_ip = Ipv4Addr::from(dst_ip.wrapping_add(1).max(1));
        let other_port = dst_port.wrapping_add(1).max(1);
        prop_assert_eq!(parse(f, &exact), expected);
        prop_assert_eq!(parse(f, &L2Filter::ANY), L2::Udp { from: src, payload: &payload[..] });
        prop_assert_eq!(parse(f, &L2Filter { ip: Ipv4Addr::UNSPECIFIED, port: dst_port }),
            L2::Udp { from: src, payload: &payload[..] });
        prop_assert_eq!(parse(f, &L2Filter { ip: *dst.ip(), port: 0 }),
            L2::Udp { from: src, payload: &payload[..] });
        prop_assert_eq!(parse(f, &L2Filter { ip: other_ip, port: dst_port }), L2::Drop(L2Drop::NotForUs));
        prop_assert_eq!(parse(f, &L2Filter { ip: other_ip, port: 0 }), L2::Drop(L2Drop::NotForUs));
        prop_assert_eq!(parse(f, &L2Filter { ip: *dst.ip(), port: other_port }), L2::Drop(L2Drop::NotForUs));
        prop_assert_eq!(parse(f, &L2Filter { ip: Ipv4Addr::UNSPECIFIED, port: other_port }),
            L2::Drop(L2Drop::NotForUs));

        // The payload borrows the frame, at its end.
        if let L2::Udp { payload: p, .. } = parse(f, &exact) {
            prop_assert_eq!(p.as_ptr_range().end, f.as_ptr_range().end);
        }
        // Every proper prefix is truncated.
        for cut in 0..f.len() {
            prop_assert_eq!(parse(&f[..cut], &exact), L2::Drop(L2Drop::Truncated), "cut at {}", cut);
        }
        // Trailing padding (any bytes) is ignored.
        let mut padded = f.to_vec();
        padded.extend_from_slice(&[0xa5; 17]);
        prop_assert_eq!(parse(&padded, &exact), L2::Udp { from: src, payload: &payload[..] });
    }

    /// Building then parsing with a UDP checksum computed by `udp_checksum` agrees with the
    /// builder, and the checksum verifies by the reference.
    #[test]
    fn builder_udp_checksum_matches_reference(
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        src_ip in any::<u32>(), dst_ip in any::<u32>(), ports in any::<(u16, u16)>(),
    ) {
        let (s, d) = (Ipv4Addr::from(src_ip), Ipv4Addr::from(dst_ip));
        let mut f = Vec::new();
        build_udp_frame(SRC_MAC, DST_MAC, SocketAddrV4::new(s, ports.0), SocketAddrV4::new(d, ports.1),
            &payload, None, &mut f).unwrap();
        let udp = &f[UDP..];
        let stored = u16::from_be_bytes([udp[6], udp[7]]);
        prop_assert_ne!(stored, 0, "a computed 0 is sent as 0xffff");
        prop_assert_eq!(udp_checksum(s, d, udp), stored);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&s.octets());
        pseudo.extend_from_slice(&d.octets());
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(udp);
        prop_assert_eq!(reference_sum(&pseudo), 0xffff);
    }
}

#[test]
fn one_or_two_vlan_tags_are_tolerated_three_are_not() {
    let payload = b"tagged";
    let single = frame(payload, Some(42));
    assert_eq!(parse(&single, &US), udp_of(payload));

    let mut qinq = frame(payload, Some(42));
    push_tag(&mut qinq, 0x88a8, 7);
    assert_eq!(&qinq[12..14], &[0x88, 0xa8]);
    assert_eq!(parse(&qinq, &US), udp_of(payload));

    let mut double_8100 = frame(payload, Some(42));
    push_tag(&mut double_8100, 0x8100, 7);
    assert_eq!(parse(&double_8100, &US), udp_of(payload));

    let mut three = qinq.clone();
    push_tag(&mut three, 0x88a8, 9);
    assert_eq!(parse(&three, &US), L2::Drop(L2Drop::NotIpv4));

    for cut in 0..qinq.len() {
        assert_eq!(parse(&qinq[..cut], &US), L2::Drop(L2Drop::Truncated), "cut at {cut}");
    }
}

#[test]
fn largest_payload_builds_and_parses_larger_is_refused() {
    let big = vec![0x5a; MAX_UDP_PAYLOAD];
    let f = frame(&big, Some(1));
    assert_eq!(f.len(), ETH_HEADER + 4 + 65535);
    assert_eq!(parse(&f, &US), udp_of(&big));

    let mut out = vec![1, 2, 3];
    let too_big = vec![0; MAX_UDP_PAYLOAD + 1];
    assert_eq!(
        build_udp_frame(SRC_MAC, DST_MAC, CLIENT, SERVER, &too_big, None, &mut out),
        Err(L2BuildError::PayloadTooLarge { len: MAX_UDP_PAYLOAD + 1 })
    );
    assert_eq!(
        build_udp_frame(SRC_MAC, DST_MAC, CLIENT, SERVER, b"x", Some(4096), &mut out),
        Err(L2BuildError::VlanId(4096))
    );
    assert_eq!(out, [1, 2, 3], "a refused build leaves the buffer alone");
    assert!(build_udp_frame(SRC_MAC, DST_MAC, CLIENT, SERVER, b"x", Some(4095), &mut out).is_ok());
}

// ---------------------------------------------------------------------------------------------
// One targeted corruption per drop reason.

#[test]
fn truncated_at_every_length_below_a_full_frame() {
    for vlan in [None, Some(5)] {
        for len in [0, 1, 7, 100] {
            let f = frame(&vec![9; len], vlan);
            assert_eq!(parse(&f, &US), udp_of(&vec![9; len]));
            for cut in 0..f.len() {
                assert_eq!(
                    parse(&f[..cut], &US),
                    L2::Drop(L2Drop::Truncated),
                    "{vlan:?} len {len} cut {cut}"
                );
            }
        }
    }
}

#[test]
fn bad_ip_header_version_ihl_and_total_length() {
    let good = frame(b"hello", None);
    for ihl in 0..5u8 {
        let mut f = good.clone();
        f[IP] = 0x40 | ihl;
        assert_eq!(parse(&f, &US), L2::Drop(L2Drop::BadIpHeader), "ihl {ihl}");
        fix_ip_checksum(&mut f, IP); // checksum right or not, IHL < 5 is a bad header
        assert_eq!(parse(&f, &US), L2::Drop(L2Drop::BadIpHeader), "ihl {ihl}");
    }
    for version in [0u8, 6, 15] {
        let mut f = good.clone();
        f[IP] = version << 4 | 5;
        fix_ip_checksum(&mut f, IP);
        assert_eq!(parse(&f, &US), L2::Drop(L2Drop::BadIpHeader), "version {version}");
    }
    // Total length below the header length.
    let mut f = good.clone();
    set_u16(&mut f, IP + 2, 19);
    fix_ip_checksum(&mut f, IP);
    assert_eq!(parse(&f, &US), L2::Drop(L2Drop::BadIpHeader));
    // IHL 15 (60-byte header) in a frame that has no room for it.
    let mut f = good.clone();
    f[IP] = 0x4f;
    f.truncate(IP + 59);
    assert_eq!(parse(&f, &US), L2::Drop(L2Drop::Truncated));
}

#[test]
fn total_length_beyond_the_frame_is_truncated() {
    let good = frame(b"hello", None);
    for extra in [1u16, 2, 1000] {
        let mut f = good.clone();
        let total = u16::from_be_bytes([f[IP + 2], f[IP + 3]]);
        set_u16(&mut f, IP + 2, total + extra);
        fix_ip_checksum(&mut f, IP);
        assert_eq!(parse(&f, &US), L2::Drop(L2Drop::Truncated), "+{extra}");
    }
}

#[test]
fn any_flipped_bit_in_the_ip_header_fails_its_checksum() {
    let good = frame(b"some payload", None);
    // Byte 0 (version/IHL) is checked before the checksum; every other header bit is covered
    // by it.
    for byte in IP + 1..IP + 20 {
        for bit in 0..8 {
            let mut f = good.clone();
            f[byte] ^= 1 << bit;
            assert_eq!(parse(&f, &US), L2::Drop(L2Drop::BadIpChecksum), "byte {byte} bit {bit}");
        }
    }
}

#[test]
fn any_flipped_bit_in_the_udp_segment_fails_its_checksum() {
    let payload = b"an order for the book, odd length";
    let good = frame(payload, None);
    for byte in UDP..good.len() {
        if (UDP + 4..UDP + 6).contains(&byte) {
            continue; // the UDP length: BadUdpLength, below
        }
        for bit in 0..8 {
            let mut f = good.clone();
            f[byte] ^= 1 << bit;
            let checksum_field = u16::from_be_bytes([f[UDP + 6], f[UDP + 7]]);
            let got = parse(&f, &L2Filter::ANY);
            if checksum_field == 0 {
                // Flipping the checksum field to 0 turns verification off.
                assert!(matches!(got, L2::Udp { .. }), "byte {byte} bit {bit}: {got:?}");
            } else {
                assert_eq!(got, L2::Drop(L2Drop::BadUdpChecksum), "byte {byte} bit {bit}");
            }
        }
    }
}

#[test]
fn udp_checksum_zero_is_accepted() {
    let payload = b"no checksum";
    let mut f = frame(payload, None);
    set_u16(&mut f, UDP + 6, 0);
    assert_eq!(parse(&f, &US), udp_of(payload));
    // Without a checksum a damaged payload goes through: IPv4 allows it.
    f[UDP + 8] ^= 0xff;
    let mut damaged = payload.to_vec();
    damaged[0] ^= 0xff;
    assert_eq!(parse(&f, &US), udp_of(&damaged));
}

#[test]
fn udp_length_too_long_or_too_short() {
    let good = frame(b"twelve bytes", None);
    let udp_len = u16::from_be_bytes([good[UDP + 4], good[UDP + 5]]);
    for bad in [0, 1, 7, 8, udp_len - 1, udp_len + 1, 0xffff] {
        let mut f = good.clone();
        set_u16(&mut f, UDP + 4, bad);
        assert_eq!(parse(&f, &US), L2::Drop(L2Drop::BadUdpLength), "udp length {bad} of {udp_len}");
    }
    // An IP payload too short for a UDP header.
    for ip_payload in 0..8u16 {
        let mut f = good.clone();
        set_u16(&mut f, IP + 2, 20 + ip_payload);
        fix_ip_checksum(&mut f, IP);
        assert_eq!(parse(&f, &US), L2::Drop(L2Drop::BadUdpLength), "ip payload {ip_payload}");
    }
}

#[test]
fn fragments_are_dropped() {
    let good = frame(b"fragment", None);
    for flags_offset in [0x2000u16, 0x6000, 0x0001, 0x1fff, 0x4001, 0x2001] {
        let mut f = good.clone();
        set_u16(&mut f, IP + 6, flags_offset);
        fix_ip_checksum(&mut f, IP);
        assert_eq!(parse(&f, &US), L2::Drop(L2Drop::Fragment), "flags/offset {flags_offset:#06x}");
    }
    // DF alone, and no flags at all, are whole datagrams.
    for flags_offset in [0x4000u16, 0] {
        let mut f = good.clone();
        set_u16(&mut f, IP + 6, flags_offset);
        fix_ip_checksum(&mut f, IP);
        assert_eq!(parse(&f, &US), udp_of(b"fragment"));
    }
}

#[test]
fn foreign_traffic_ipv6_tcp_and_arp() {
    let good = frame(b"x", None);
    let mut v6 = good.clone();
    set_u16(&mut v6, 12, 0x86dd);
    assert_eq!(parse(&v6, &US), L2::Drop(L2Drop::NotIpv4));
    let mut lldp = good.clone();
    set_u16(&mut lldp, 12, 0x88cc);
    assert_eq!(parse(&lldp, &L2Filter::ANY), L2::Drop(L2Drop::NotIpv4));

    let mut tcp = good.clone();
    tcp[IP + 9] = 6;
    assert_eq!(parse(&tcp, &US), L2::Drop(L2Drop::BadIpChecksum));
    fix_ip_checksum(&mut tcp, IP);
    assert_eq!(parse(&tcp, &US), L2::Drop(L2Drop::NotUdp));
    assert_eq!(parse(&tcp, &L2Filter::ANY), L2::Drop(L2Drop::NotUdp));

    let requester = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
    let peer = Ipv4Addr::new(10, 0, 0, 9);
    let reply = arp_frame(2, requester, peer, US.ip);
    assert_eq!(parse(&reply, &US), L2::Drop(L2Drop::NotForUs));
    let other = arp_frame(1, requester, peer, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(parse(&other, &US), L2::Drop(L2Drop::NotForUs));
    let request = arp_frame(1, requester, peer, US.ip);
    assert_eq!(parse(&request, &US), L2::ArpRequest { sender_mac: requester, sender_ip: peer });
    assert_eq!(parse(&request, &L2Filter::ANY), L2::Drop(L2Drop::NotForUs), "no address, no ARP");
    let mut tagged = request.clone();
    push_tag(&mut tagged, 0x8100, 3);
    assert_eq!(parse(&tagged, &US), L2::ArpRequest { sender_mac: requester, sender_ip: peer });
    let mut not_ethernet = request.clone();
    not_ethernet[ETH_HEADER + 1] = 6; // htype 6 (IEEE 802)
    assert_eq!(parse(&not_ethernet, &US), L2::Drop(L2Drop::NotForUs));
    for cut in 0..request.len() {
        assert_eq!(parse(&request[..cut], &US), L2::Drop(L2Drop::Truncated), "cut {cut}");
    }
}

#[test]
fn trailing_ethernet_padding_is_accepted() {
    let payload = b"tiny";
    let mut f = frame(payload, None);
    assert_eq!(f.len(), 46);
    f.resize(60, 0);
    assert_eq!(parse(&f, &US), udp_of(payload));
    // Padding need not be zeros.
    f[50..].fill(0xcc);
    assert_eq!(parse(&f, &US), udp_of(payload));
    // An empty payload in a minimum frame, tagged.
    let mut f = frame(b"", Some(100));
    f.resize(64, 0);
    assert_eq!(parse(&f, &US), udp_of(b""));
}

#[test]
fn ip_options_are_skipped() {
    let payload = b"with options";
    let mut f = frame(payload, None);
    // Four bytes of options (NOP NOP NOP EOL) after the fixed header.
    f.splice(UDP..UDP, [1, 1, 1, 0]);
    f[IP] = 0x46;
    let total = u16::from_be_bytes([f[IP + 2], f[IP + 3]]);
    set_u16(&mut f, IP + 2, total + 4);
    fix_ip_checksum(&mut f, IP);
    assert_eq!(parse(&f, &US), udp_of(payload));
}

#[test]
fn drop_reasons_names_classes_and_counters() {
    let names: Vec<&str> = L2Drop::ALL.iter().map(|d| d.name()).collect();
    assert_eq!(
        names,
        [
            "truncated",
            "bad_ip_header",
            "bad_ip_checksum",
            "bad_udp_length",
            "bad_udp_checksum",
            "fragment",
            "not_ipv4",
            "not_udp",
            "not_for_us"
        ]
    );
    for d in L2Drop::ALL {
        assert!(!(d.is_malformed() && d.is_foreign()), "{d:?}");
        assert_eq!(d == L2Drop::Fragment, !d.is_malformed() && !d.is_foreign(), "{d:?}");
    }
    let malformed = L2Drop::ALL.iter().filter(|d| d.is_malformed()).count();
    let foreign = L2Drop::ALL.iter().filter(|d| d.is_foreign()).count();
    assert_eq!((malformed, foreign), (5, 3));

    let mut c = L2Counters::default();
    c.record(&udp_of(b""));
    c.record(&udp_of(b"x"));
    c.record(&L2::ArpRequest { sender_mac: [0; 6], sender_ip: Ipv4Addr::LOCALHOST });
    for (i, d) in L2Drop::ALL.iter().enumerate() {
        for _ in 0..=i {
            c.record(&L2::Drop(*d));
        }
    }
    assert_eq!(
        c,
        L2Counters {
            udp: 2,
            arp_requests: 1,
            truncated: 1,
            bad_ip_header: 2,
            bad_ip_checksum: 3,
            bad_udp_length: 4,
            bad_udp_checksum: 5,
            fragments: 6,
            not_ipv4: 7,
            not_udp: 8,
            not_for_us: 9,
        }
    );
    assert_eq!(c.malformed(), 1 + 2 + 3 + 4 + 5);
    assert_eq!(c.foreign(), 7 + 8 + 9);
    let json = serde_json::to_value(c).unwrap();
    assert_eq!(json["not_for_us"], 9);
    assert_eq!(json["fragments"], 6);
}

// ---------------------------------------------------------------------------------------------
// Checksums.

#[test]
fn ipv4_header_checksum_known_example() {
    // https://en.wikipedia.org/wiki/Internet_checksum (IPv4 header checksum example).
    let mut header = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0,
        0xa8, 0x00, 0xc7,
    ];
    assert_eq!(ipv4_header_checksum(&header), 0xb861);
    assert_eq!(ones_complement_sum(&header), !0xb861);
    header[10] = 0xb8;
    header[11] = 0x61;
    assert_eq!(ipv4_header_checksum(&header), 0xb861, "the stored checksum is counted as zero");
    assert_eq!(ones_complement_sum(&header), 0xffff, "an intact header sums to 0xffff");
    header[3] ^= 1;
    assert_ne!(ones_complement_sum(&header), 0xffff);
}

#[test]
fn checksum_small_cases() {
    assert_eq!(ones_complement_sum(&[]), 0);
    assert_eq!(ones_complement_sum(&[0x12]), 0x1200);
    assert_eq!(ones_complement_sum(&[0x12, 0x34]), 0x1234);
    assert_eq!(ones_complement_sum(&[0xff, 0xff, 0x00, 0x01]), 0x0001, "end-around carry");
    assert_eq!(ones_complement_sum(&[0xff; 64]), 0xffff);
    assert_eq!(Checksum::new().add_u16(0xabcd).fold(), 0xabcd);
    assert_eq!(Checksum::new().add_u16(0x0001).finish(), 0xfffe);
}

proptest! {
    /// The fast sum equals the byte-by-byte reference on random data (every length 0..2048,
    /// every alignment), and summing in even-length parts equals summing at once.
    #[test]
    fn checksum_matches_reference(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        split in any::<prop::sample::Index>(),
        start in 0usize..8,
    ) {
        prop_assert_eq!(ones_complement_sum(&data), reference_sum(&data));
        let unaligned = &data[start.min(data.len())..];
        prop_assert_eq!(ones_complement_sum(unaligned), reference_sum(unaligned));
        let at = split.index(data.len() + 1) & !1;
        let parts = Checksum::new().add_bytes(&data[..at]).add_bytes(&data[at..]);
        prop_assert_eq!(parts.fold(), reference_sum(&data));
        prop_assert_eq!(parts.finish(), !reference_sum(&data));
    }

    /// Long runs of 0xff (the carry-heavy case) agree with the reference.
    #[test]
    fn checksum_carries(len in 0usize..70_000, tail in any::<u8>()) {
        let mut data = vec![0xff; len];
        data.push(tail);
        prop_assert_eq!(ones_complement_sum(&data), reference_sum(&data));
    }
}

// ---------------------------------------------------------------------------------------------
// ARP.

#[test]
fn arp_reply_to_a_request_for_my_ip() {
    let my_mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    let my_ip = Ipv4Addr::new(192, 168, 1, 10);
    let requester = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
    let peer = Ipv4Addr::new(192, 168, 1, 20);
    let request = arp_frame(1, requester, peer, my_ip);

    let reply = arp_reply(&request, my_mac, my_ip).unwrap();
    assert_eq!(&reply[0..6], &requester, "Ethernet destination: the requester");
    assert_eq!(&reply[6..12], &my_mac, "Ethernet source: me");
    assert_eq!(&reply[12..14], &[0x08, 0x06]);
    assert_eq!(&reply[14..20], &[0, 1, 0x08, 0x00, 6, 4], "Ethernet/IPv4 ARP");
    assert_eq!(&reply[20..22], &[0, 2], "opcode 2 (reply)");
    assert_eq!(&reply[22..28], &my_mac, "sender hardware address: me");
    assert_eq!(&reply[28..32], &my_ip.octets(), "sender protocol address: me");
    assert_eq!(&reply[32..38], &requester, "target hardware address: the requester");
    assert_eq!(&reply[38..42], &peer.octets(), "target protocol address: the requester");
    // The reply itself parses as ARP that is not a request.
    assert_eq!(parse(&reply, &L2Filter { ip: peer, port: 0 }), L2::Drop(L2Drop::NotForUs));

    // Trailing padding on the request (a 60-byte minimum frame) is fine.
    let mut padded = request.clone();
    padded.resize(60, 0);
    assert_eq!(arp_reply(&padded, my_mac, my_ip), Some(reply));
    // An RFC 5227 probe (sender 0.0.0.0) for my address is answered too.
    let probe = arp_frame(1, requester, Ipv4Addr::UNSPECIFIED, my_ip);
    assert!(arp_reply(&probe, my_mac, my_ip).is_some());
}

#[test]
fn arp_reply_refuses_everything_else() {
    let my_mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    let my_ip = Ipv4Addr::new(192, 168, 1, 10);
    let requester = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
    let peer = Ipv4Addr::new(192, 168, 1, 20);
    let request = arp_frame(1, requester, peer, my_ip);

    assert_eq!(
        arp_reply(&arp_frame(1, requester, peer, Ipv4Addr::new(192, 168, 1, 11)), my_mac, my_ip),
        None
    );
    assert_eq!(arp_reply(&arp_frame(2, requester, peer, my_ip), my_mac, my_ip), None, "a reply");
    assert_eq!(arp_reply(&request, my_mac, Ipv4Addr::UNSPECIFIED), None);
    for cut in 0..request.len() {
        assert_eq!(arp_reply(&request[..cut], my_mac, my_ip), None, "cut {cut}");
    }
    let mut tagged = request.clone();
    push_tag(&mut tagged, 0x8100, 3);
    assert_eq!(arp_reply(&tagged, my_mac, my_ip), None, "no room for a tag in 42 bytes");
    assert_eq!(arp_reply(&frame(b"udp", None), my_mac, my_ip), None);
    assert_eq!(arp_reply(&[], my_mac, my_ip), None);
}

// ---------------------------------------------------------------------------------------------
// Never panics.

proptest! {
    /// Arbitrary bytes, half of them with a plausible Ethernet/IPv4/UDP or ARP skeleton so the
    /// deeper checks run: parse and arp_reply return, and a delivered payload lies in the frame.
    #[test]
    fn arbitrary_bytes_never_panic(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..200),
        shape in 0u8..5,
        filter_ip in any::<u32>(),
        filter_port in any::<u16>(),
    ) {
        match shape {
            1 if bytes.len() >= 15 => { bytes[12] = 0x08; bytes[13] = 0x00; bytes[14] = 0x45; }
            2 if bytes.len() >= 24 => { bytes[12] = 0x08; bytes[13] = 0x00; bytes[14] = 0x45; bytes[23] = 17; }
            3 if bytes.len() >= 14 => { bytes[12] = 0x08; bytes[13] = 0x06; }
            4 if bytes.len() >= 17 => { bytes[12] = 0x81; bytes[13] = 0x00; bytes[16] = 0x88; }
            _ => {}
        }
        for filter in [L2Filter::ANY, L2Filter { ip: Ipv4Addr::from(filter_ip), port: filter_port }] {
            if let L2::Udp { payload, .. } = parse(&bytes, &filter) {
                let frame = bytes.as_ptr_range();
                prop_assert!(frame.start <= payload.as_ptr() && payload.as_ptr_range().end <= frame.end);
            }
        }
        let _ = arp_reply(&bytes, [0; 6], Ipv4Addr::from(filter_ip));
    }
}

/// splitmix64, for the seeded sweep.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Valid frames (random sizes, tags, options-free), mutated a few bytes at a time, truncated
/// or padded: parse never panics, every frame is counted exactly once, and any delivered
/// payload is the tail of the UDP segment the frame claims. Prints its seed;
/// `BASTION_SEED=<n>` replays it.
#[test]
fn seeded_mutations_never_panic() {
    let seed = std::env::var("BASTION_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    println!("l2 mutation seed {seed} (replay: BASTION_SEED={seed})");
    let mut rng = Rng(seed);
    let mut counters = L2Counters::default();
    let rounds = 20_000u64;
    for round in 0..rounds {
        let len = rng.below(1473);
        let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let vlan = if rng.below(2) == 0 { None } else { Some(rng.below(4096) as u16) };
        let mut f = frame(&payload, vlan);
        for _ in 0..rng.below(4) {
            let at = rng.below(f.len().min(80));
            match rng.below(3) {
                0 => f[at] ^= 1 << rng.below(8),
                1 => f[at] = rng.next() as u8,
                _ => f[at] = [0x00, 0x06, 0x08, 0x11, 0x45, 0x81, 0x88, 0xa8, 0xff][rng.below(9)],
            }
        }
        match rng.below(4) {
            0 => f.truncate(rng.below(f.len() + 1)),
            1 => f.resize(f.len() + rng.below(64), rng.next() as u8),
            _ => {}
        }
        let filter = if rng.below(2) == 0 { L2Filter::ANY } else { US };
        let parsed = parse(&f, &filter);
        counters.record(&parsed);
        if let L2::Udp { payload: p, .. } = parsed {
            let frame = f.as_ptr_range();
            assert!(
                frame.start <= p.as_ptr() && p.as_ptr_range().end <= frame.end,
                "seed {seed} round {round}: payload outside the frame"
            );
        }
    }
    let delivered = counters.udp + counters.arp_requests;
    let dropped = counters.malformed() + counters.foreign() + counters.fragments;
    assert_eq!(delivered + dropped, rounds, "seed {seed}: {counters:?}");
    assert!(
        counters.udp > 0 && counters.malformed() > 0,
        "seed {seed}: the sweep reaches both ends: {counters:?}"
    );
}
