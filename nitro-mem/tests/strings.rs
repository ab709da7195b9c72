//! Typed and string reads against hand-built guests: page crossings, terminators at page
//! ends, both UNICODE_STRING layouts, `struct filename` pointers, batched reads.

mod common;

use common::*;
use nitro_mem::{
    AddressSpace, FromBytes, MemError, PhysAddr, PhysMemory, TranslationCache, UnicodeString,
    VecMemory, VirtAddr, VirtRead, VirtReadExt,
};

/// VA 0x1000 -> PA 0x10000 and VA 0x2000 -> PA 0x30000 (not contiguous); VA 0x3000 unmapped.
fn guest() -> VecMemory {
    let mem = VecMemory::new(1 << 20);
    put(&mem, 0x1000, 0x2000 | P | RW);
    put(&mem, 0x2000, 0x3000 | P | RW);
    put(&mem, 0x3000, 0x4000 | P | RW);
    put(&mem, 0x4000 + 8, 0x10000 | P | RW);
    put(&mem, 0x4000 + 16, 0x30000 | P | RW);
    mem
}

fn w(mem: &VecMemory, pa: u64, b: &[u8]) {
    mem.write_phys(PhysAddr(pa), b).unwrap();
}

#[test]
fn reads_cross_discontiguous_pages() {
    let mem = guest();
    w(&mem, 0x10ffc, &[1, 2, 3, 4]);
    w(&mem, 0x30000, &[5, 6, 7, 8]);
    let s = AddressSpace::new(&mem, PhysAddr(0x1000));
    assert_eq!(s.read_u64(VirtAddr(0x1ffc)).unwrap(), 0x0807_0605_0403_0201);
    assert_eq!(
        s.read_obj::<[u16; 4]>(VirtAddr(0x1ffc)).unwrap(),
        [0x201, 0x403, 0x605, 0x807]
    );
    assert_eq!(
        s.read_obj::<[u8; 100]>(VirtAddr(0x1ffc)).unwrap()[..8],
        [1, 2, 3, 4, 5, 6, 7, 8]
    );
    assert_eq!(
        s.read_array::<u32>(VirtAddr(0x1ffc), 2, 16).unwrap(),
        vec![0x0403_0201, 0x0807_0605]
    );
    assert_eq!(
        s.read_obj::<VirtAddr>(VirtAddr(0x1ffc)).unwrap(),
        VirtAddr(0x0807_0605_0403_0201)
    );
    assert_eq!(<[u64; 3]>::SIZE, 24);
    // A read running into the unmapped page fails, naming that page.
    match s.read_bytes(VirtAddr(0x2ff0), 0x20, 0x100) {
        Err(MemError::NotPresent { addr, .. }) => assert_eq!(addr, VirtAddr(0x3000)),
        other => panic!("{other:?}"),
    }
    // Batched reads: independent results.
    let (mut a, mut b, mut c) = ([0u8; 4], [0u8; 4], [0u8; 4]);
    let mut reqs = [
        (VirtAddr(0x1ffc), &mut a[..]),
        (VirtAddr(0x3000), &mut b[..]),
        (VirtAddr(0x2000), &mut c[..]),
    ];
    let res = s.read_virt_many(&mut reqs);
    assert!(res[0].is_ok() && res[1].as_ref().unwrap_err().is_not_present() && res[2].is_ok());
    assert_eq!((a, c), ([1, 2, 3, 4], [5, 6, 7, 8]));
}

#[test]
fn c_strings_stop_at_the_terminator_or_the_limit() {
    let mem = guest();
    // "hello" ending exactly at the end of the last mapped page: the unmapped page after it
    // is never touched.
    w(&mem, 0x30ffa, b"hello\0");
    w(&mem, 0x10ffe, b"ab");
    w(&mem, 0x30000, b"cd\0");
    let s = AddressSpace::new(&mem, PhysAddr(0x1000));
    let cache = TranslationCache::new();
    let c = AddressSpace::new(&mem, PhysAddr(0x1000)).cached(&cache);
    for r in [&s as &dyn VirtRead, &c as &dyn VirtRead] {
        assert_eq!(r.read_cstring(VirtAddr(0x2ffa), 4096).unwrap(), b"hello");
        assert_eq!(r.read_cstring(VirtAddr(0x1ffe), 4096).unwrap(), b"abcd");
        assert_eq!(
            r.read_cstring_prefix(VirtAddr(0x1ffe), 3).unwrap(),
            (b"abc".to_vec(), false)
        );
        assert_eq!(
            r.read_cstring(VirtAddr(0x1ffe), 3).unwrap_err(),
            MemError::StringTooLong {
                addr: VirtAddr(0x1ffe),
                max: 3
            }
        );
        assert_eq!(
            r.read_cstring_prefix(VirtAddr(0x1ffe), 0).unwrap(),
            (vec![], false)
        );
        // No terminator before the unmapped page: an error, not a truncated success.
        w(&mem, 0x30fff, b"x");
        assert!(r
            .read_cstring(VirtAddr(0x2ffa), 4096)
            .unwrap_err()
            .is_not_present());
        w(&mem, 0x30fff, b"\0");
    }
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

#[test]
fn utf16_strings_at_odd_addresses_across_pages() {
    let mem = guest();
    // "Ünïcode\0" starting 3 bytes before the page end: a unit straddles the pages.
    let text = [utf16("Ünïcode €"), vec![0, 0]].concat();
    w(&mem, 0x10ffd, &text[..3]);
    w(&mem, 0x30000, &text[3..]);
    let s = AddressSpace::new(&mem, PhysAddr(0x1000));
    assert_eq!(s.read_utf16(VirtAddr(0x1ffd), 64).unwrap(), "Ünïcode €");
    let (units, done) = s.read_utf16_prefix(VirtAddr(0x1ffd), 3).unwrap();
    assert_eq!(
        (String::from_utf16_lossy(&units), done),
        ("Ünï".to_string(), false)
    );
    assert_eq!(
        s.read_utf16(VirtAddr(0x1ffd), 3).unwrap_err(),
        MemError::StringTooLong {
            addr: VirtAddr(0x1ffd),
            max: 3
        }
    );
    // An unpaired surrogate is replaced, not an error.
    w(&mem, 0x30800, &[0x00, 0xd8, 0x41, 0x00, 0, 0]);
    assert_eq!(s.read_utf16(VirtAddr(0x2800), 8).unwrap(), "\u{fffd}A");
}

#[test]
fn unicode_strings_in_both_layouts() {
    let mem = guest();
    let text = utf16("\\??\\C:\\Windows\\notepad.exe");
    w(&mem, 0x30100, &text);
    // x64: {u16 Length, u16 MaximumLength, u32 pad, u64 Buffer} at VA 0x2000.
    let mut us = vec![];
    us.extend_from_slice(&(text.len() as u16).to_le_bytes());
    us.extend_from_slice(&(text.len() as u16 + 2).to_le_bytes());
    us.extend_from_slice(&[0xcc; 4]);
    us.extend_from_slice(&0x2100u64.to_le_bytes());
    w(&mem, 0x30000, &us);
    // x86 / WOW64: {u16, u16, u32 Buffer} at VA 0x2040.
    let mut us32 = vec![];
    us32.extend_from_slice(&(text.len() as u16 - 8).to_le_bytes());
    us32.extend_from_slice(&(text.len() as u16).to_le_bytes());
    us32.extend_from_slice(&0x2108u32.to_le_bytes());
    w(&mem, 0x30040, &us32);
    let s = AddressSpace::new(&mem, PhysAddr(0x1000));
    assert_eq!(
        s.read_unicode_string_header(VirtAddr(0x2000)).unwrap(),
        UnicodeString {
            length: 52,
            maximum_length: 54,
            buffer: VirtAddr(0x2100)
        }
    );
    assert_eq!(
        s.read_unicode_string(VirtAddr(0x2000), 1024).unwrap(),
        "\\??\\C:\\Windows\\notepad.exe"
    );
    assert_eq!(
        s.read_unicode_string32(VirtAddr(0x2040), 1024).unwrap(),
        "C:\\Windows\\notepad.exe"
    );
    assert_eq!(
        s.read_unicode_string(VirtAddr(0x2000), 51).unwrap_err(),
        MemError::LengthTooLarge {
            addr: VirtAddr(0x2000),
            len: 52,
            max: 51
        }
    );
    // Length 0 with a NULL buffer is the empty string.
    w(&mem, 0x30080, &[0; 16]);
    assert_eq!(s.read_unicode_string(VirtAddr(0x2080), 16).unwrap(), "");
}

#[test]
fn filename_pointers() {
    let mem = guest();
    // struct filename { const char *name; ... } at VA 0x2000, name at VA 0x1f00.
    w(&mem, 0x30000, &0x1f00u64.to_le_bytes());
    w(&mem, 0x10f00, b"/etc/passwd\0");
    let s = AddressSpace::new(&mem, PhysAddr(0x1000));
    assert_eq!(
        s.read_filename_ptr(VirtAddr(0x2000), 4096).unwrap(),
        (b"/etc/passwd".to_vec(), true)
    );
    assert_eq!(
        s.read_filename_ptr(VirtAddr(0x2000), 4).unwrap(),
        (b"/etc".to_vec(), false)
    );
    // A pointer to unmapped memory.
    w(&mem, 0x30000, &0x3000u64.to_le_bytes());
    assert!(s
        .read_filename_ptr(VirtAddr(0x2000), 4096)
        .unwrap_err()
        .is_not_present());
}
