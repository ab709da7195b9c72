//! A hostile or broken gdbstub: the RSP parsers on random packets and the client against a
//! fake TCP peer that sends garbage. Every case ends in a value or an error, never a panic,
//! a hang or an unbounded buffer.
//!
//! This is the CI form of the `fuzz/` RSP target (cargo-fuzz needs nightly).

use std::{
    io::{Read, Write},
    net::TcpListener,
    time::{Duration, Instant},
};

use nitro_listener::qemu::rsp::{decode_hex, decode_hex_into, parse_stop, RspClient, StopReply};
use proptest::prelude::*;

/// A peer that accepts one connection, sends `script`, drains what it gets for a moment and
/// closes.
fn fake_stub(script: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = l.local_addr().expect("local addr").to_string();
    let t = std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let _ = s.write_all(&script);
        let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
        let mut sink = [0u8; 4096];
        while let Ok(n) = s.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    });
    (addr, t)
}

/// Talks to a peer sending `script` the ways the driver does; returns how long it took.
fn converse(script: Vec<u8>) -> Duration {
    let (addr, stub) = fake_stub(script);
    let start = Instant::now();
    let mut c = RspClient::connect(&addr, Duration::from_secs(2)).expect("connects");
    c.set_timeout(Some(Duration::from_millis(200)))
        .expect("timeout set");
    let mut buf = Vec::new();
    for _ in 0..8 {
        match c.recv_into(&mut buf) {
            Ok(()) => {
                assert!(
                    buf.len() <= (1 << 20) + 256,
                    "packet of {} bytes",
                    buf.len()
                );
                let _ = parse_stop(&buf);
                let _ = decode_hex(&buf);
            }
            Err(_) => break,
        }
    }
    let _ = c.request(b"g");
    let _ = c.request_ok(b"Z2,ffffffff81c00080,8");
    let _ = c.write_packets(&[b"g", b"c"]);
    let _ = c.flush_ack();
    drop(c);
    let _ = stub.join();
    start.elapsed()
}

/// Bytes a stub might send: framed packets with right or wrong checksums, run-length
/// encoding, acknowledgements, and raw noise.
fn stub_bytes() -> impl Strategy<Value = Vec<u8>> {
    let packet = (
        prop::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(body, good, bad)| {
            let body: Vec<u8> = body
                .into_iter()
                .filter(|&b| b != b'#' && b != b'$')
                .collect();
            let sum = body.iter().fold(0u8, |a, &b| a.wrapping_add(b));
            let mut v = vec![b'$'];
            v.extend_from_slice(&body);
            v.extend_from_slice(format!("#{:02x}", if good { sum } else { bad }).as_bytes());
            v
        });
    let piece = prop_oneof![
        packet,
        Just(b"+".to_vec()),
        Just(b"-".to_vec()),
        Just(b"$T05thread:01;rwatch:ffff88800f806014;#00".to_vec()),
        Just(b"$0*\x7f#00".to_vec()),
        prop::collection::vec(any::<u8>(), 0..32),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parse_stop_takes_anything(p in prop::collection::vec(any::<u8>(), 0..128)) {
        let _ = parse_stop(&p);
        if let Some(v) = decode_hex(&p) {
            prop_assert_eq!(v.len() * 2, p.len());
        }
        let mut out = [0u8; 16];
        if let Some(n) = decode_hex_into(&p, &mut out) {
            prop_assert!(n <= out.len());
        }
    }

    /// Stop replies built from the grammar (`T` + signal + `key:value;` pairs) with random
    /// keys and values parse to what they say or to nothing.
    #[test]
    fn stop_replies_from_the_grammar(
        sig in any::<u8>(),
        fields in prop::collection::vec(
            (prop_oneof![
                Just("thread".to_string()),
                Just("watch".to_string()),
                Just("rwatch".to_string()),
                Just("awatch".to_string()),
                Just("swbreak".to_string()),
                "[a-z0-9]{0,6}"
            ],
             "[0-9a-fA-Fp.xz-]{0,20}"),
            0..6),
    ) {
        let mut p = format!("T{sig:02x}");
        for (k, v) in &fields {
            p.push_str(&format!("{k}:{v};"));
        }
        match parse_stop(p.as_bytes()) {
            Some(StopReply::Stopped { signal, .. }) => prop_assert_eq!(signal, sig),
            Some(other) => prop_assert!(false, "{p} parsed as {other:?}"),
            None => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// A peer that sends garbage then closes: the client ends with an error or packets,
    /// promptly.
    #[test]
    fn client_survives_a_garbage_peer(script in stub_bytes()) {
        let took = converse(script);
        prop_assert!(took < Duration::from_secs(10), "took {took:?}");
    }
}

/// A packet that never ends: refused at 1 MiB, not buffered forever.
#[test]
fn endless_packet_is_refused() {
    let mut script = b"$".to_vec();
    script.extend(std::iter::repeat_n(b'a', (1 << 20) + 4096));
    let (addr, stub) = fake_stub(script);
    let mut c = RspClient::connect(&addr, Duration::from_secs(2)).expect("connects");
    c.set_timeout(Some(Duration::from_secs(2)))
        .expect("timeout set");
    let mut buf = Vec::new();
    let e = c.recv_into(&mut buf).expect_err("refused");
    assert!(e.to_string().contains("1 MiB"), "{e}");
    drop(c);
    let _ = stub.join();
}

/// Run-length encoding that claims the longest repeat over and over: bounded the same way.
#[test]
fn run_length_bomb_is_refused() {
    let mut script = b"$0".to_vec();
    for _ in 0..20_000 {
        script.extend_from_slice(b"*~"); // '~' = 126: repeat 97 times
    }
    script.extend_from_slice(b"#00");
    let (addr, stub) = fake_stub(script);
    let mut c = RspClient::connect(&addr, Duration::from_secs(2)).expect("connects");
    c.set_timeout(Some(Duration::from_secs(2)))
        .expect("timeout set");
    let mut buf = Vec::new();
    assert!(c.recv_into(&mut buf).is_err());
    assert!(buf.len() <= (1 << 20) + 256);
    drop(c);
    let _ = stub.join();
}

/// A peer that closes at once: the client reports the guest gone, it does not hang.
#[test]
fn peer_that_closes_is_reported() {
    let (addr, stub) = fake_stub(Vec::new());
    let mut c = RspClient::connect(&addr, Duration::from_secs(2)).expect("connects");
    c.set_timeout(Some(Duration::from_secs(2)))
        .expect("timeout set");
    let _ = stub.join();
    let e = c.request(b"?").expect_err("nobody answers");
    assert!(e.to_string().contains("closed"), "{e}");
}
