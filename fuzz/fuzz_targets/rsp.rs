//! gdbstub packets from an attacker (a compromised or broken QEMU): stop replies and hex.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nitro_listener::qemu::rsp::{decode_hex, decode_hex_into, parse_stop};

fuzz_target!(|data: &[u8]| {
    let _ = parse_stop(data);
    if let Some(v) = decode_hex(data) {
        assert_eq!(v.len() * 2, data.len());
    }
    let mut out = [0u8; 64];
    if let Some(n) = decode_hex_into(data, &mut out) {
        assert!(n <= out.len());
    }
});
