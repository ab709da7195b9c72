//! BTF parser tests on a hand-built blob covering every kind, and on hostile input.

use proptest::prelude::*;

use super::*;

/// Assembles a BTF blob: types are (name, kind, kind_flag, vlen, size_or_type, extra words).
#[derive(Default)]
struct Builder {
    strings: Vec<u8>,
    types: Vec<u8>,
}

impl Builder {
    fn new() -> Self {
        Self {
            strings: vec![0],
            types: Vec::new(),
        }
    }

    fn s(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        off
    }

    fn ty(
        &mut self,
        name: &str,
        kind: u32,
        kflag: bool,
        vlen: u32,
        size_or_type: u32,
        extra: &[u32],
    ) {
        let name = self.s(name);
        let info = vlen | kind << 24 | u32::from(kflag) << 31;
        for w in [name, info, size_or_type].iter().chain(extra) {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
    }

    /// Struct/union members: (name, type, offset word).
    fn members(&mut self, ms: &[(&str, u32, u32)]) -> Vec<u32> {
        ms.iter().flat_map(|&(n, t, o)| [self.s(n), t, o]).collect()
    }

    fn finish(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            self.types.len() as u32,
            self.types.len() as u32,
            self.strings.len() as u32,
        ] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&self.types);
        b.extend_from_slice(&self.strings);
        b
    }
}

/// Ids: see the comments; kinds from `include/uapi/linux/btf.h`.
fn sample() -> Vec<u8> {
    let mut b = Builder::new();
    b.ty("int", 1, false, 0, 4, &[1 << 24 | 32]); // 1: INT, signed, 32 bits
    b.ty("char", 1, false, 0, 1, &[8]); // 2
    b.ty("", 3, false, 0, 0, &[2, 1, 16]); // 3: char[16]
    b.ty("pid_t", 8, false, 0, 1, &[]); // 4: typedef int
    let m = b.members(&[("flags", 1, 0), ("status", 1, 64)]);
    b.ty("thread_info", 4, false, 2, 16, &m); // 5
    let m = b.members(&[("x", 1, 0), ("y", 1, 32)]);
    b.ty("", 4, false, 2, 8, &m); // 6: anonymous struct
    let m = b.members(&[("u", 1, 0), ("", 6, 0)]);
    b.ty("", 5, false, 2, 8, &m); // 7: anonymous union
    let m = b.members(&[
        ("thread_info", 5, 0),
        ("pid", 4, 128),
        ("", 7, 192),
        ("comm", 3, 256),
        ("bits", 1, 3 << 24 | 387),
        ("parent", 9, 448),
    ]);
    b.ty("task", 4, true, 6, 64, &m); // 8: kind_flag: bitfield offsets
    b.ty("", 2, false, 0, 8, &[]); // 9: struct task *
    let (red, blue) = (b.s("RED"), b.s("BLUE"));
    b.ty("color", 6, true, 2, 4, &[red, (-1i32) as u32, blue, 5]); // 10: signed enum
    let huge = b.s("HUGE");
    b.ty("big", 19, false, 1, 8, &[huge, 0, 1 << 8]); // 11: ENUM64, 1 << 40
    b.ty("", 10, false, 0, 8, &[]); // 12: const struct task
    b.ty("task_t", 8, false, 0, 12, &[]); // 13: typedef const struct task
    b.ty("", 13, false, 1, 1, &[0, 1]); // 14: FUNC_PROTO int (int)
    b.ty("f", 12, false, 0, 14, &[]); // 15: FUNC
    b.ty("v", 14, false, 0, 1, &[1]); // 16: VAR
    b.ty(".data", 15, false, 1, 4, &[16, 0, 4]); // 17: DATASEC
    b.ty("double", 16, false, 0, 8, &[]); // 18: FLOAT
    b.ty("tag", 17, false, 0, 8, &[u32::MAX]); // 19: DECL_TAG on the struct
    b.ty("user", 18, false, 0, 1, &[]); // 20: TYPE_TAG
    b.ty("fwd", 7, false, 0, 0, &[]); // 21: FWD
    b.ty("", 9, false, 0, 1, &[]); // 22: VOLATILE
    b.ty("", 11, false, 0, 9, &[]); // 23: RESTRICT
    let ca = b.s("CONST_A");
    b.ty("", 6, false, 1, 4, &[ca, 7]); // 24: anonymous enum
    b.finish()
}

#[test]
fn parses_every_kind() {
    let btf = Btf::parse(&sample()).unwrap();
    assert_eq!(btf.len(), 24);
    let kinds: Vec<Kind> = (0..=24).filter_map(|id| btf.kind(id)).collect();
    assert_eq!(kinds.len(), 25);
    assert_eq!(btf.kind(11), Some(Kind::Enum64));
    assert_eq!(btf.kind(20), Some(Kind::TypeTag));
    assert_eq!(btf.kind(25), None);
    assert_eq!(btf.name(17), Some(".data"));
}

#[test]
fn member_offsets() {
    let btf = Btf::parse(&sample()).unwrap();
    let off = |s, p| btf.member_offset(s, p);
    assert_eq!(off("task", "thread_info"), Ok(0));
    assert_eq!(off("task", "thread_info.status"), Ok(8));
    assert_eq!(off("task", "pid"), Ok(16));
    // Through an anonymous union and an anonymous struct inside it.
    assert_eq!(off("task", "u"), Ok(24));
    assert_eq!(off("task", "x"), Ok(24));
    assert_eq!(off("task", "y"), Ok(28));
    assert_eq!(off("task", "comm"), Ok(32));
    assert_eq!(off("task", "comm[3]"), Ok(35));
    assert_eq!(off("task", "parent"), Ok(56));
    // Through typedef -> const -> struct.
    assert_eq!(off("task_t", "pid"), Ok(16));
    assert_eq!(
        btf.member_bit_offset("task", "bits").map(|(b, _)| b),
        Ok(387)
    );
    let (bits_member, _) = btf.find_member(8, "bits").unwrap();
    assert_eq!(bits_member.bitfield_size, 3);
    assert!(matches!(
        off("task", "bits"),
        Err(KernelError::NotByteAligned { bits: 387, .. })
    ));
    assert!(matches!(
        off("task", "nope"),
        Err(KernelError::NoMember { .. })
    ));
    assert!(matches!(
        off("task", "pid.x"),
        Err(KernelError::NoMember { .. })
    ));
    assert!(matches!(
        off("task", "comm[x]"),
        Err(KernelError::NoMember { .. })
    ));
    assert!(matches!(off("nope", "pid"), Err(KernelError::NoType(_))));
}

#[test]
fn sizes_and_names() {
    let btf = Btf::parse(&sample()).unwrap();
    assert_eq!(btf.struct_size("task"), Some(64));
    assert_eq!(btf.struct_size("task_t"), Some(64));
    assert_eq!(btf.struct_size("thread_info"), Some(16));
    assert_eq!(btf.struct_size("pid_t"), None);
    assert_eq!(btf.type_size(3), Some(16));
    assert_eq!(btf.type_size(9), Some(8));
    assert_eq!(btf.member_type_name("task", "pid").as_deref(), Ok("pid_t"));
    assert_eq!(
        btf.member_type_name("task", "comm").as_deref(),
        Ok("char[16]")
    );
    assert_eq!(
        btf.member_type_name("task", "parent").as_deref(),
        Ok("struct task *")
    );
    assert_eq!(btf.type_name(13), "task_t");
    assert_eq!(btf.type_name(12), "const struct task");
    assert_eq!(btf.type_name(7), "union (anon)");
    assert_eq!(btf.resolve(13), 8);
}

#[test]
fn enums() {
    let btf = Btf::parse(&sample()).unwrap();
    assert_eq!(btf.enum_value("color", "RED"), Some(-1));
    assert_eq!(btf.enum_value("color", "BLUE"), Some(5));
    assert_eq!(btf.enum_value("color", "GREEN"), None);
    assert_eq!(btf.enum_value("big", "HUGE"), Some(1 << 40));
    assert_eq!(btf.enum_variants("color"), vec![("RED", -1), ("BLUE", 5)]);
    assert_eq!(btf.enumerator("CONST_A"), Some(7));
    assert_eq!(btf.enumerator("HUGE"), Some(1 << 40));
    assert!(btf.enum_variants("nope").is_empty());
}

#[test]
fn header_errors() {
    let good = sample();
    assert!(matches!(
        Btf::parse(b"hello world, not BTF"),
        Err(KernelError::BadBtf { .. })
    ));
    let mut bad_kind = good.clone();
    bad_kind[24 + 7] = 25; // kind 25 in the first type's info
    assert!(matches!(
        Btf::parse(&bad_kind),
        Err(KernelError::BadBtf {
            reason: "unknown type kind",
            ..
        })
    ));
    let mut long_types = good.clone();
    long_types[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Btf::parse(&long_types),
        Err(KernelError::BadBtf { .. })
    ));
}

#[test]
fn cycles_terminate() {
    let mut b = Builder::new();
    b.ty("loop", 8, false, 0, 1, &[]); // 1: typedef to itself
    let m = b.members(&[("", 2, 0), ("", 2, 8), ("", 1, 16)]);
    b.ty("self", 4, false, 3, 8, &m); // 2: contains itself anonymously, twice
    b.ty("", 3, false, 0, 0, &[3, 1, 1000]); // 3: array of itself
    let btf = Btf::parse(&b.finish()).unwrap();
    assert_eq!(btf.resolve(1), 1);
    assert!(btf.member_offset("self", "missing").is_err());
    assert_eq!(btf.type_size(3), None);
    let _ = btf.type_name(3);
}

/// Exercises every query on a parsed blob (must not panic or hang).
fn poke(btf: &Btf) {
    for id in 0..btf.len() as u32 + 2 {
        let _ = (btf.type_size(id), btf.type_name(id), btf.kind(id));
        let _ = btf.members(id).count();
        let _ = btf.enum_variants_of(id).count();
    }
    for (s, p) in [
        ("task", "x"),
        ("task", "comm[3]"),
        ("task_t", "thread_info.status"),
    ] {
        let _ = btf.member_offset(s, p);
        let _ = btf.member_type_name(s, p);
    }
    let _ = btf.enumerator("CONST_A");
}

#[test]
fn truncations_never_panic() {
    let good = sample();
    for cut in 0..good.len() {
        if let Ok(btf) = Btf::parse(&good[..cut]) {
            poke(&btf);
        }
    }
}

proptest! {
    #[test]
    fn mutations_never_panic(flips in proptest::collection::vec((0usize..2000, any::<u8>()), 1..16)) {
        let mut blob = sample();
        let len = blob.len();
        for (i, v) in flips {
            blob[i % len] = v;
        }
        if let Ok(btf) = Btf::parse(&blob) {
            poke(&btf);
        }
    }

    #[test]
    fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if bytes.len() >= 4 {
            bytes[0..4].copy_from_slice(&[0x9f, 0xeb, 1, 0]);
        }
        if let Ok(btf) = Btf::parse(&bytes) {
            poke(&btf);
        }
    }
}
