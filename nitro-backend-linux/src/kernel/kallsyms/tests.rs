//! kallsyms tests on hand-built tables in each placement the kernel uses, and on hostile input.

use proptest::prelude::*;

use super::*;

const BASE: u64 = 0xffff_ffff_8200_0000;
const TEXT: u64 = 0xffff_ffff_8100_0000;

/// Where the offsets and `kallsyms_seqs_of_names` go.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Order {
    /// offsets, relative_base, num_syms, names, markers, token_table, token_index.
    Old,
    /// num_syms, names, markers, token_table, token_index, offsets, relative_base, seqs.
    New,
    /// offsets, relative_base, num_syms, names, markers, seqs, token_table, token_index
    /// (Debian 6.1.y).
    SeqsBeforeTokens,
}

/// Token `i`: the character `i` when printable, else a two-letter pair (for compression).
fn token(i: usize) -> Vec<u8> {
    if (0x21..0x7f).contains(&i) {
        vec![i as u8]
    } else {
        vec![b'a' + (i % 26) as u8, b'a' + (i / 26 % 26) as u8]
    }
}

/// Encodes `typed_name` greedily, two-letter `pairs` (token id, text) first.
fn encode(typed_name: &str, pairs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let b = typed_name.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match pairs.iter().find(|(_, p)| b[i..].starts_with(p)) {
            Some((t, _)) => {
                out.push(*t);
                i += 2;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

fn align8(v: &mut Vec<u8>) {
    while v.len() & 7 != 0 {
        v.push(0);
    }
}

/// The symbols: a few per-CPU ones, then text and data, sorted by address as the kernel does.
fn symbols() -> Vec<(char, String, u64, bool)> {
    let mut s = vec![
        ('A', "fixed_percpu_data".to_string(), 0, true),
        ('A', "cpu_tss_rw".to_string(), 0x6000, true),
        ('A', "current_task".to_string(), 0x1fb80, true),
        ('T', "_text".to_string(), TEXT, false),
    ];
    for i in 0..700u64 {
        s.push((
            't',
            format!("func_{i:05}_aa"),
            TEXT + 0x100 + 0x40 * i,
            false,
        ));
    }
    s.push(('T', "entry_SYSCALL_64".into(), TEXT + 0xc0_0080, false));
    // A "big" symbol: more than 127 tokens, so a two-byte length.
    s.push((
        'T',
        format!("long_{}", "x".repeat(200)),
        TEXT + 0xc0_1000,
        false,
    ));
    s.push(('D', "sys_call_table".into(), TEXT + 0x100_0360, false));
    s
}

/// Builds an image holding the kallsyms tables, surrounded by junk, and where they start.
fn build(order: Order, absolute_percpu: bool) -> Vec<u8> {
    let syms = symbols();
    let n = syms.len();
    let pairs: Vec<(u8, Vec<u8>)> = (0..256)
        .filter(|t| !(0x21..0x7f).contains(t))
        .map(|t| (t as u8, token(t)))
        .collect();
    let mut names = Vec::new();
    let mut markers = Vec::new();
    for (i, (kind, name, ..)) in syms.iter().enumerate() {
        if i & 0xff == 0 {
            markers.push(names.len() as u32);
        }
        let enc = encode(&format!("{kind}{name}"), &pairs);
        if enc.len() > 127 {
            names.push(0x80 | (enc.len() & 0x7f) as u8);
            names.push((enc.len() >> 7) as u8);
        } else {
            names.push(enc.len() as u8);
        }
        names.extend_from_slice(&enc);
    }
    let mut table = Vec::new();
    let mut index = Vec::new();
    for i in 0..256 {
        index.push(table.len() as u16);
        table.extend_from_slice(&token(i));
        table.push(0);
    }
    let relbase = TEXT;
    let offsets: Vec<i32> = syms
        .iter()
        .map(|&(_, _, addr, percpu)| match (absolute_percpu, percpu) {
            (true, true) => addr as i32,
            (true, false) => -((addr - relbase) as i32) - 1,
            (false, _) => (addr.wrapping_sub(relbase)) as u32 as i32,
        })
        .collect();
    let mut seqs: Vec<usize> = (0..n).collect();
    seqs.sort_by_key(|&i| syms[i].1.clone());

    let mut img: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    let put_offsets = |img: &mut Vec<u8>| {
        align8(img);
        for o in &offsets {
            img.extend_from_slice(&o.to_le_bytes());
        }
        align8(img);
        img.extend_from_slice(&relbase.to_le_bytes());
    };
    let put_seqs = |img: &mut Vec<u8>| {
        align8(img);
        for &i in &seqs {
            img.extend_from_slice(&[(i >> 16) as u8, (i >> 8) as u8, i as u8]);
        }
    };
    if order != Order::New {
        put_offsets(&mut img);
    }
    align8(&mut img);
    img.extend_from_slice(&(n as u32).to_le_bytes());
    align8(&mut img);
    img.extend_from_slice(&names);
    align8(&mut img);
    for m in &markers {
        img.extend_from_slice(&m.to_le_bytes());
    }
    if order == Order::SeqsBeforeTokens {
        put_seqs(&mut img);
    }
    align8(&mut img);
    img.extend_from_slice(&table);
    align8(&mut img);
    for i in &index {
        img.extend_from_slice(&i.to_le_bytes());
    }
    if order == Order::New {
        put_offsets(&mut img);
        put_seqs(&mut img);
    }
    img.extend((0..4096u32).map(|i| (i * 13 % 253) as u8));
    img
}

fn check(ks: &Kallsyms) {
    let syms = symbols();
    assert_eq!(ks.len(), syms.len());
    for (kind, name, addr, percpu) in &syms {
        let s = ks.symbol(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(
            (s.kind, s.addr, s.is_percpu),
            (*kind, *addr, *percpu),
            "{name}"
        );
    }
    let got: Vec<_> = ks
        .symbols()
        .map(|s| (s.kind, s.name.to_string(), s.addr, s.is_percpu))
        .collect();
    assert_eq!(got, syms);
    assert_eq!(
        ks.symbolize(TEXT + 0xc0_0080 + 5),
        Some(("entry_SYSCALL_64", 5))
    );
    assert_eq!(
        ks.symbolize(TEXT + 0x100 + 0x40 * 3 + 1),
        Some(("func_00003_aa", 1))
    );
    assert_eq!(
        ks.symbolize(0x6000),
        None,
        "per-CPU symbols are not symbolized"
    );
    assert_eq!(ks.symbolize(u64::MAX), None);

    assert_eq!(
        ks.range("func_00003_aa"),
        Some((TEXT + 0x100 + 0x40 * 3, TEXT + 0x100 + 0x40 * 4))
    );
    assert_eq!(ks.range("cpu_tss_rw"), None);
    assert_eq!(ks.range("sys_call_table"), None, "last symbol has no end");
    let slid = ks.with_slide(0x3a0_0000);
    assert_eq!(
        slid.range("entry_SYSCALL_64"),
        Some((TEXT + 0xc0_0080 + 0x3a0_0000, TEXT + 0xc0_1000 + 0x3a0_0000))
    );
    assert_eq!(slid.slide(), 0x3a0_0000);
    assert_eq!(
        slid.lookup("entry_SYSCALL_64"),
        Some(TEXT + 0xc0_0080 + 0x3a0_0000)
    );
    assert_eq!(
        slid.symbolize(TEXT + 0xc0_0080 + 0x3a0_0000),
        Some(("entry_SYSCALL_64", 0))
    );
    assert_eq!(slid.lookup("current_task"), Some(0x1fb80));
    let neg = ks.with_slide(-0x10_0000);
    assert_eq!(neg.lookup("_text"), Some(TEXT - 0x10_0000));
}

#[test]
fn finds_tables_in_every_order() {
    for order in [Order::Old, Order::New, Order::SeqsBeforeTokens] {
        let img = build(order, true);
        let ks = Kallsyms::from_image(&img, BASE).unwrap_or_else(|e| panic!("{order:?}: {e}"));
        check(&ks);
        let l = ks.layout();
        assert_eq!(l.offsets_after_tokens, order == Order::New, "{order:?}");
        assert!(l.absolute_percpu);
        assert!(l.names > l.num_syms && l.markers > l.names && l.token_index > l.token_table);
        // An image that starts at an unaligned address inside the same bytes.
        let ks = Kallsyms::from_image(&img[3..], BASE + 3).unwrap();
        assert_eq!(ks.layout(), l);
    }
}

#[test]
fn relative_only_encoding() {
    // Without CONFIG_KALLSYMS_ABSOLUTE_PERCPU every address is base + (u32)offset; per-CPU
    // symbols then cannot be told apart, so this table only holds text and data.
    let img = build(Order::New, false);
    let ks = Kallsyms::from_image(&img, BASE).unwrap();
    assert!(!ks.layout().absolute_percpu);
    assert_eq!(ks.lookup("entry_SYSCALL_64"), Some(TEXT + 0xc0_0080));
    assert_eq!(ks.lookup("_text"), Some(TEXT));
}

#[test]
fn from_vmlinux_reads_rodata() {
    let img = build(Order::New, true);
    let elf = crate::kernel::elf::tests::build_elf(&[0x90; 16], &[(".rodata", &img)]);
    // The test ELF puts extra sections at address 0; the tables do not depend on it.
    let ks = Kallsyms::from_vmlinux(&elf).unwrap();
    check(&ks);
    let no_rodata = crate::kernel::elf::tests::build_elf(&[0x90; 16], &[]);
    assert!(matches!(
        Kallsyms::from_vmlinux(&no_rodata),
        Err(KernelError::NoSection(_))
    ));
}

#[test]
fn garbage_is_not_found() {
    let text = b"this is a text file, not a kernel\n".repeat(1000);
    assert!(matches!(
        Kallsyms::from_image(&text, BASE),
        Err(KernelError::KallsymsNotFound { .. })
    ));
    assert!(Kallsyms::from_image(&[], BASE).is_err());
    assert!(Kallsyms::from_image(&vec![0u8; 100_000], BASE).is_err());
    let mut x = 0x9e37_79b9_u32;
    let random: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    assert!(Kallsyms::from_image(&random, BASE).is_err());
}

#[test]
fn truncations_never_panic() {
    let img = build(Order::SeqsBeforeTokens, true);
    for cut in (0..img.len()).step_by(211) {
        let _ = Kallsyms::from_image(&img[..cut], BASE);
        let _ = Kallsyms::from_image(&img[cut..], BASE + cut as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn mutations_never_panic(flips in proptest::collection::vec((0usize..1 << 20, any::<u8>()), 1..32)) {
        let mut img = build(Order::New, true);
        let len = img.len();
        for (i, v) in flips {
            img[i % len] = v;
        }
        if let Ok(ks) = Kallsyms::from_image(&img, BASE) {
            let _ = ks.lookup("entry_SYSCALL_64");
            let _ = ks.symbolize(TEXT + 0x1234);
            let _ = ks.symbols().count();
        }
    }
}
