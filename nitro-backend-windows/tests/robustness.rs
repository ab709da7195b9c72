//! Guest memory is attacker-controlled: parsers and decoders fed with random bytes and random
//! pointers must return errors or placeholder values, never panic or hang.

mod common;

use common::*;
use nitro_backend_windows::{decoders, discover, isf, kpcr, layout, pe, process};
use nitro_listener::Regs;

/// xorshift64*: deterministic pseudo-random numbers.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn random_guest(rng: &mut Rng) -> Guest {
    let mut g = Guest::new();
    let bases = [
        KBASE,
        KBASE + 0x1000,
        KPCR,
        ETHREAD,
        EPROCESS,
        ONI,
        PEB,
        PARAMS,
        DATA,
        STACK_TOP - 0x1000,
        TEB,
        IDT,
    ];
    for &b in &bases {
        let page: Vec<u8> = (0..0x1000).map(|_| rng.next() as u8).collect();
        g.write(b, &page);
    }
    // Keep the signatures so parsing goes deep before meeting garbage.
    g.write(KBASE, b"MZ");
    g.w32(KBASE + 0x3c, (rng.next() % 0x200) as u32);
    g
}

#[test]
fn random_memory_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..40 {
        let g = random_guest(&mut rng);
        let s = g.space();
        let _ = pe::parse(&s, KBASE);
        let _ = pe::find_image_base(&s, KBASE + 0x1800, 0x4000);
        if let Ok(img) = pe::parse(&s, KBASE) {
            let _ = img.export_rva(&s, "NtBuildNumber");
            let _ = img.pdb_info(&s);
            let _ = discover::syscall_sites(&s, &img, None);
        }
        let _ = discover::kernel_from_address(&s, KBASE + 0x1800);
        let regs = Regs {
            gs_base: KPCR,
            k_gs_base: rng.next(),
            cs: 0x10,
            rsp: STACK_TOP - 0x800,
            ..Regs::default()
        };
        for l in [
            layout::WIN7_SP1,
            layout::WIN10_2004_22H2,
            layout::WIN11_22H2_23H2,
            layout::WIN11_24H2,
        ] {
            let _ = kpcr::kpcr_base(&s, &regs, &l);
            if let Ok(mut p) = process::read_kernel_side(&s, &l, ETHREAD) {
                let _ = process::read_user_side(&s, &s, &l, &mut p);
            }
        }
        // Every prototype, with arguments pointing into random data, unmapped memory, or
        // anywhere.
        for p in decoders::prototypes::PROTOTYPES {
            let raw: Vec<u64> = (0..p.params.len())
                .map(|i| match (round + i) % 4 {
                    0 => DATA + (rng.next() % 0xff0),
                    1 => rng.next(),
                    2 => 0,
                    _ => PEB + (rng.next() % 0xff8),
                })
                .collect();
            let entry = decoders::decode(&s, p, &raw, false);
            let exit = decoders::decode(&s, p, &raw, true);
            assert!(entry.len() >= p.params.len() && exit.len() >= p.params.len());
            for a in entry.iter().chain(&exit) {
                let _ = a.value.text();
            }
        }
        let _ = decoders::raw_args(&regs, &s, 17);
        let _ = s.read_u64(nitro_mem::VirtAddr(0));
    }
}

#[test]
fn huge_guest_lengths_are_bounded() {
    let mut g = Guest::new();
    // A UNICODE_STRING claiming 65534 bytes whose buffer runs into unmapped memory.
    g.w16(DATA, 0xfffe);
    g.w16(DATA + 2, 0xfffe);
    g.w64(DATA + 8, DATA + 0xff0);
    let v = decoders::structs::unicode_string(&g.space(), DATA);
    assert_eq!(v, nitro_os::ArgValue::Unreadable(DATA));
    // A long but readable name is cut at the string limit, with `...`.
    let long: String = "A".repeat(3000);
    g.ustr(DATA + 0x100, DATA + 0x2000, &long);
    let v = decoders::structs::unicode_string(&g.space(), DATA + 0x100);
    let t = v.text();
    assert!(t.ends_with("\"..."), "{}", &t[t.len() - 10..]);
    assert_eq!(t.len(), decoders::structs::STRING_LIMIT + 5);
}

#[test]
fn random_profiles_never_panic() {
    let mut rng = Rng(42);
    let good = br#"{"user_types": {"_EPROCESS": {"size": 16, "fields": {"Peb": {"offset": 8, "type": {"kind": "pointer", "subtype": {"kind": "pointer", "subtype": {"kind": "pointer", "subtype": {"kind": "pointer", "subtype": {"kind": "pointer"}}}}}}}}}, "symbols": {"x": {"address": 1}}}"#;
    for _ in 0..200 {
        let mut doc = good.to_vec();
        let cut = (rng.next() as usize) % doc.len();
        doc.truncate(cut);
        let _ = isf::parse(&doc);
        let mut flipped = good.to_vec();
        let i = (rng.next() as usize) % flipped.len();
        flipped[i] = rng.next() as u8;
        let _ = isf::parse(&flipped);
    }
    let p = isf::parse(good).unwrap();
    assert_eq!(p.offset("_EPROCESS", "Peb"), Some(8));
    assert!(p.layout().is_err());
}
