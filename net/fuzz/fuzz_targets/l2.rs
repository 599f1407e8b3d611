//! Raw Ethernet frames (`bastion_net::l2`).
//!
//! Properties: `parse` and `arp_reply` never panic; a delivered payload lies inside the frame
//! and is the tail of its UDP segment; an ARP reply exists exactly when `parse` sees an
//! untagged ARP request for the address; a delivered datagram rebuilt with `build_udp_frame`
//! (same addresses, ports, payload) parses back to the same thing.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use bastion_net::l2::{L2, L2Filter, arp_reply, build_udp_frame, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first 6 bytes pick the filter; the rest is the frame.
    let Some((head, frame)) = data.split_first_chunk::<6>() else { return };
    let ip = Ipv4Addr::new(head[0], head[1], head[2], head[3]);
    let port = u16::from_be_bytes([head[4], head[5]]);
    for filter in [L2Filter::ANY, L2Filter { ip, port }] {
        match parse(frame, &filter) {
            L2::Udp { from, payload } => {
                let range = frame.as_ptr_range();
                assert!(range.start <= payload.as_ptr() && payload.as_ptr_range().end <= range.end);
                let dst = SocketAddrV4::new(if ip.is_unspecified() { Ipv4Addr::LOCALHOST } else { ip }, port);
                let mut again = Vec::new();
                if build_udp_frame([0; 6], [0; 6], from, dst, payload, None, &mut again).is_err() {
                    panic!("a delivered payload of {} bytes does not rebuild", payload.len());
                }
                assert_eq!(parse(&again, &L2Filter { ip: *dst.ip(), port }), L2::Udp { from, payload });
            }
            L2::ArpRequest { .. } => {
                let untagged = frame.get(12..14) == Some(&[0x08, 0x06][..]);
                assert_eq!(arp_reply(frame, [2, 0, 0, 0, 0, 1], filter.ip).is_some(), untagged);
            }
            L2::Drop(_) => {}
        }
    }
    if !ip.is_unspecified() {
        let untagged_request = matches!(parse(frame, &L2Filter { ip, port: 0 }), L2::ArpRequest { .. })
            && frame.get(12..14) == Some(&[0x08, 0x06][..]);
        assert_eq!(arp_reply(frame, [2, 0, 0, 0, 0, 1], ip).is_some(), untagged_request);
    }
});
