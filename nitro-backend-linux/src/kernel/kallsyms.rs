//! The kernel's own symbol table (kallsyms), found by its structure.
//!
//! Distribution kernels ship a stripped `vmlinux` and a placeholder `System.map`, but the
//! kernel keeps every symbol in compressed tables in `.rodata` for `/proc/kallsyms`
//! (CONFIG_KALLSYMS, CONFIG_KALLSYMS_ALL on Debian). The tables, as written by Linux
//! `scripts/kallsyms.c` (`write_src()`) and read by `kernel/kallsyms.c`, 6.1 and 6.12:
//!
//! - `kallsyms_num_syms`: `u32` count N;
//! - `kallsyms_names`: N entries, each a length byte (two bytes, 7 bits each, when the first
//!   has bit 7 set: the "big symbol" form since 6.1) followed by that many token indices;
//! - `kallsyms_markers`: `u32` offset into `kallsyms_names` of every 256th entry;
//! - `kallsyms_token_table`: 256 NUL-terminated token strings;
//! - `kallsyms_token_index`: 256 `u16` offsets into the token table;
//! - `kallsyms_offsets`: N `i32` (CONFIG_KALLSYMS_BASE_RELATIVE) and `kallsyms_relative_base`
//!   (`u64`, relocated with the kernel, so already slid in a running KASLR kernel);
//! - since 6.2 (and in Debian's 6.1.y), `kallsyms_seqs_of_names`: 3 bytes per symbol
//!   (unused here).
//!
//! `kallsyms_num_syms`, `kallsyms_names` and `kallsyms_markers` are consecutive, as are the
//! token table and token index (each label aligned); between the two groups there is either
//! nothing or `kallsyms_seqs_of_names`. The offsets and relative base come either before
//! `kallsyms_num_syms` or after `kallsyms_token_index`. Measured on Debian: 6.1.0-56 has
//! offsets, relative base, num_syms, names, markers, seqs, token table, token index;
//! 6.12.117 has num_syms, names, markers, token table, token index, offsets, relative base
//! (seqs after). Every placement is tried, and a candidate is accepted only when all markers,
//! the symbol count, the end of the names and the address order agree.
//!
//! With CONFIG_KALLSYMS_ABSOLUTE_PERCPU (x86-64 up to at least 6.12), a non-negative offset is
//! an absolute value (the per-CPU symbols: their offset inside the per-CPU area) and a
//! negative one means `relative_base - 1 - offset`; otherwise every address is
//! `relative_base + (u32)offset` (`kallsyms_sym_address()` in `kernel/kallsyms.c`). Each
//! expanded name starts with the symbol's type letter (`T`, `t`, `D`, ...).

use std::{collections::HashMap, sync::Arc};

use super::{elf::Elf, read, KernelError, Result};

/// Most symbols accepted (Debian's 6.12 cloud kernel has 154,686).
const MAX_SYMS: u32 = 4 << 20;
/// Token-table candidates examined before giving up.
const MAX_CANDIDATES: usize = 16;
/// Longest token string accepted in the token table.
const MAX_TOKEN_LEN: usize = 128;

/// One kernel symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbol<'a> {
    /// Name without the type letter.
    pub name: &'a str,
    /// Address with the slide applied (per-CPU symbols: their per-CPU offset, never slid).
    pub addr: u64,
    /// Type letter as in `/proc/kallsyms` (`T` global text, `t` local text, `D`, `d`, ...).
    pub kind: char,
    /// A per-CPU variable: `addr` is an offset into each CPU's per-CPU area.
    pub is_percpu: bool,
}

/// Where the tables were found, as virtual addresses (image base + offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLayout {
    /// `kallsyms_num_syms`.
    pub num_syms: u64,
    /// `kallsyms_names`.
    pub names: u64,
    /// `kallsyms_markers`.
    pub markers: u64,
    /// `kallsyms_token_table`.
    pub token_table: u64,
    /// `kallsyms_token_index`.
    pub token_index: u64,
    /// `kallsyms_offsets`.
    pub offsets: u64,
    /// `kallsyms_relative_base`.
    pub relative_base: u64,
    /// Whether the offsets come after the token index (newer kernels) or before
    /// `kallsyms_num_syms` (older ones).
    pub offsets_after_tokens: bool,
    /// Whether CONFIG_KALLSYMS_ABSOLUTE_PERCPU encoding was detected.
    pub absolute_percpu: bool,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Address as stored in the image (not slid).
    addr: u64,
    name_start: u32,
    name_len: u32,
    kind: u8,
    percpu: bool,
}

#[derive(Debug)]
struct Inner {
    names: String,
    entries: Vec<Entry>,
    /// Indices into `entries`, by name (first of equal names = lowest address).
    by_name: HashMap<Box<str>, u32>,
    /// Indices of non-per-CPU entries sorted by address.
    by_addr: Vec<u32>,
    layout: TableLayout,
}

/// A decoded kallsyms table, with an optional KASLR slide applied to non-per-CPU symbols.
#[derive(Clone)]
pub struct Kallsyms {
    inner: Arc<Inner>,
    slide: i64,
}

impl std::fmt::Debug for Kallsyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kallsyms")
            .field("symbols", &self.len())
            .field("slide", &format_args!("{:#x}", self.slide))
            .field("layout", &self.inner.layout)
            .finish()
    }
}

impl Kallsyms {
    /// Finds and decodes the tables in the `.rodata` section of an ELF `vmlinux`.
    ///
    /// Addresses are link-time addresses (slide 0).
    pub fn from_vmlinux(elf: &[u8]) -> Result<Self> {
        let elf = Elf::parse(elf)?;
        let sec = elf
            .section(".rodata")
            .ok_or_else(|| KernelError::NoSection(".rodata".into()))?;
        let base = sec.addr;
        let data = elf.section_data(".rodata")?;
        Self::from_image(data, base)
    }

    /// Finds and decodes the tables in a raw memory image whose first byte is at virtual
    /// address `image_base` (e.g. the kernel's `.rodata` read from guest memory).
    ///
    /// Addresses are those stored in the image: `kallsyms_relative_base` is relocated by the
    /// kernel at boot, so an image read from a running kernel yields runtime (already slid)
    /// addresses, and a `vmlinux` file yields link-time ones.
    pub fn from_image(image: &[u8], image_base: u64) -> Result<Self> {
        // The search steps over 2- and 4-byte aligned virtual addresses; an image that does
        // not start 8-aligned is copied behind zero padding so image offsets keep the
        // alignment of virtual addresses.
        let pad = (image_base % 8) as usize;
        if pad != 0 {
            let mut aligned = vec![0u8; pad];
            aligned.extend_from_slice(image);
            return Self::find(&aligned, image_base - pad as u64);
        }
        Self::find(image, image_base)
    }

    fn find(image: &[u8], image_base: u64) -> Result<Self> {
        let mut last = "no kallsyms_token_table/kallsyms_token_index pair";
        // A kernel has one token table; more candidates than this means crafted input.
        for (tt, ti) in token_tables(image).take(MAX_CANDIDATES) {
            match decode_at(image, image_base, tt, ti) {
                Ok(inner) => {
                    return Ok(Self {
                        inner: Arc::new(inner),
                        slide: 0,
                    })
                }
                Err(KernelError::KallsymsNotFound { reason }) => last = reason,
                Err(e) => return Err(e),
            }
        }
        Err(KernelError::KallsymsNotFound { reason: last })
    }

    /// The same table with `slide` added to every non-per-CPU address (KASLR).
    pub fn with_slide(&self, slide: i64) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            slide,
        }
    }

    /// The slide applied to non-per-CPU addresses.
    pub fn slide(&self) -> i64 {
        self.slide
    }

    /// Where the tables were found.
    pub fn layout(&self) -> TableLayout {
        self.inner.layout
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.inner.entries.len()
    }

    /// Whether there are no symbols (never true for a decoded kernel table).
    pub fn is_empty(&self) -> bool {
        self.inner.entries.is_empty()
    }

    /// Address of the symbol `name` (slid unless per-CPU). With duplicate names (static
    /// functions), the lowest address wins.
    pub fn lookup(&self, name: &str) -> Option<u64> {
        self.symbol(name).map(|s| s.addr)
    }

    /// The symbol called `name` with its type and per-CPU flag.
    pub fn symbol(&self, name: &str) -> Option<Symbol<'_>> {
        let &i = self.inner.by_name.get(name)?;
        self.get(i as usize)
    }

    /// The nearest symbol at or below `addr` (a slid address) and the offset from it.
    /// Per-CPU symbols are not considered; `None` below the first or above the last symbol.
    pub fn symbolize(&self, addr: u64) -> Option<(&str, u64)> {
        let link = addr.wrapping_sub(self.slide as u64);
        let by_addr = &self.inner.by_addr;
        let entries = &self.inner.entries;
        let key = |i: &u32| entries.get(*i as usize).map_or(0, |e| e.addr);
        let pos = by_addr.partition_point(|i| key(i) <= link);
        let last = by_addr.last().map(key)?;
        if pos == 0 || link > last {
            return None;
        }
        let e = entries.get(*by_addr.get(pos - 1)? as usize)?;
        Some((self.name_of(e), link - e.addr))
    }

    /// `[start, end)` of the symbol `name` (slid): `end` is the next higher non-per-CPU
    /// symbol address (kallsyms stores no sizes). `None` for unknown, per-CPU or last symbols.
    pub fn range(&self, name: &str) -> Option<(u64, u64)> {
        let sym = self.symbol(name).filter(|s| !s.is_percpu)?;
        let link = sym.addr.wrapping_sub(self.slide as u64);
        let entries = &self.inner.entries;
        let key = |i: &u32| entries.get(*i as usize).map_or(0, |e| e.addr);
        let by_addr = &self.inner.by_addr;
        let next = by_addr
            .get(by_addr.partition_point(|i| key(i) <= link))
            .map(key)?;
        Some((sym.addr, next.wrapping_add(self.slide as u64)))
    }

    /// All symbols in table order (sorted by address, per-CPU ones first).
    pub fn symbols(&self) -> impl Iterator<Item = Symbol<'_>> + '_ {
        (0..self.inner.entries.len()).filter_map(move |i| self.get(i))
    }

    fn get(&self, i: usize) -> Option<Symbol<'_>> {
        let e = self.inner.entries.get(i)?;
        let addr = if e.percpu {
            e.addr
        } else {
            e.addr.wrapping_add(self.slide as u64)
        };
        Some(Symbol {
            name: self.name_of(e),
            addr,
            kind: char::from(e.kind),
            is_percpu: e.percpu,
        })
    }

    fn name_of(&self, e: &Entry) -> &str {
        let start = e.name_start as usize;
        self.inner
            .names
            .get(start..start + e.name_len as usize)
            .unwrap_or("")
    }
}

/// Candidate (token_table, token_index) image offsets, in image order.
fn token_tables(img: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    (0..img.len().saturating_sub(512))
        .step_by(2)
        .filter_map(move |ti| {
            let idx = |i: usize| read::u16_at(img, ti + 2 * i).map(usize::from);
            if idx(0)? != 0 || !(2..=MAX_TOKEN_LEN + 1).contains(&idx(1)?) {
                return None;
            }
            let mut prev = 0;
            for i in 1..256 {
                let v = idx(i)?;
                if v <= prev + 1 || v - prev > MAX_TOKEN_LEN + 1 {
                    return None;
                }
                prev = v;
            }
            // The token table ends within 8 bytes (alignment) before the index; its last token is
            // 1..=MAX_TOKEN_LEN bytes long.
            (2..MAX_TOKEN_LEN + 10)
                .filter_map(|back| ti.checked_sub(prev + back))
                .find(|&tt| token_table_fits(img, tt, ti, ti))
                .map(|tt| (tt, ti))
        })
}

/// Whether the 256 tokens at `tt` (offsets from the index at `ti`) are non-empty printable
/// strings each ending exactly at the next token, the last ending less than 8 bytes before
/// `end` with only zero padding after it.
fn token_table_fits(img: &[u8], tt: usize, ti: usize, end: usize) -> bool {
    let idx = |i: usize| read::u16_at(img, ti + 2 * i).map(usize::from);
    for i in 0..256 {
        let Some(start) = idx(i) else { return false };
        let Some(tok) = read::cstr(img, tt + start) else {
            return false;
        };
        if tok.is_empty() || !tok.iter().all(|c| (0x20..0x7f).contains(c)) {
            return false;
        }
        let tok_end = tt + start + tok.len() + 1;
        if i < 255 {
            if Some(tok_end - tt) != idx(i + 1) {
                return false;
            }
        } else {
            let pad = end.checked_sub(tok_end);
            if !matches!(pad, Some(0..=7)) || !read::zeros(img, tok_end, end) {
                return false;
            }
        }
    }
    true
}

fn not_found(reason: &'static str) -> KernelError {
    KernelError::KallsymsNotFound { reason }
}

/// Decodes the tables given the offsets of the token table and token index.
fn decode_at(img: &[u8], base: u64, tt: usize, ti: usize) -> Result<Inner> {
    let tokens: Vec<&[u8]> = (0..256)
        .map(|i| {
            let start = read::u16_at(img, ti + 2 * i).map_or(0, usize::from);
            read::cstr(img, tt + start).unwrap_or(&[])
        })
        .collect();
    // Markers end just before the token table (0..7 bytes of zero padding), or, in kernels
    // where `kallsyms_seqs_of_names` (3 bytes per symbol) sits between them (Debian's 6.1.y
    // backport), 3 * N bytes plus padding before it.
    //
    // One forward pass tracks, for every 4-byte position, where the run of marker-like words
    // ending there started (a 0, then strictly increasing by plausible steps), so the search
    // stays linear in the image size whatever the data.
    let lowest = tt.saturating_sub(3 * MAX_SYMS as usize + 16) & !3;
    let mut run_start: Option<usize> = None;
    let mut prev = 0u32;
    let mut p = lowest;
    while p + 4 <= tt {
        let v = read::u32_at(img, p).unwrap_or(u32::MAX);
        run_start = match run_start {
            _ if v == 0 => Some(p),
            // Every 256 names take at least 512 bytes and (generously) at most 256 KiB.
            Some(start) if (512..=256 << 10).contains(&v.wrapping_sub(prev)) && v > prev => {
                Some(start)
            }
            _ => None,
        };
        prev = v;
        p += 4;
        if let Some(start) = run_start {
            if let Some(found) = markers_and_names(img, &tokens, tt, start, p) {
                return finish(img, base, tt, ti, found);
            }
        }
    }
    Err(not_found(
        "no kallsyms_markers/kallsyms_names before the token table",
    ))
}

/// Tries the marker array `img[mstart..mend]`, then the names before it; checks that the gap
/// to the token table `tt` is padding, or the 3-byte-per-symbol `kallsyms_seqs_of_names`.
fn markers_and_names(
    img: &[u8],
    tokens: &[&[u8]],
    tt: usize,
    mstart: usize,
    mend: usize,
) -> Option<NamesFound> {
    let gap = tt.checked_sub(mend)?;
    let plain = gap < 8 && read::zeros(img, mend, tt);
    let m = (mend - mstart) / 4;
    if m > MAX_SYMS as usize >> 8
        || (!plain && !(3 * (m - 1) * 256 + 3..3 * m * 256 + 16).contains(&gap))
    {
        return None;
    }
    let markers: Vec<u32> = (mstart..mend)
        .step_by(4)
        .filter_map(|o| read::u32_at(img, o))
        .collect();
    let found = names_before(img, tokens, &markers, mstart)?;
    let seqs = 3 * found.count as usize;
    // Each label is aligned: up to 4 bytes of padding before the 3-byte entries, 7 after.
    (plain || (seqs <= gap && gap - seqs < 16)).then_some(found)
}

/// `kallsyms_num_syms` and `kallsyms_names` found before the markers at `mstart`.
struct NamesFound {
    num_syms_off: usize,
    names_off: usize,
    markers_off: usize,
    count: u32,
    /// (expanded name incl. type letter) per symbol, as (start, len) in `text`.
    text: Vec<u8>,
    spans: Vec<(u32, u32)>,
}

fn names_before(
    img: &[u8],
    tokens: &[&[u8]],
    markers: &[u32],
    mstart: usize,
) -> Option<NamesFound> {
    let last_marker = *markers.last()? as usize;
    let m = markers.len() as u32;
    let (lo, hi) = ((m - 1) * 256 + 1, m * 256);
    // The names end 0..7 bytes before the markers; the last run of <= 256 entries takes
    // 2..=256*512 bytes after the last marker.
    let latest = mstart.checked_sub(last_marker + 2 + 4)?;
    let earliest = mstart.saturating_sub(last_marker + 256 * 512 + 12);
    let mut q = latest & !3;
    while q >= earliest {
        let n = read::u32_at(img, q).unwrap_or(0);
        if (lo..=hi).contains(&n) {
            for names_off in [q + 4, q + 8] {
                if let Some(f) = walk_names(img, tokens, markers, names_off, n, mstart) {
                    return Some(NamesFound {
                        num_syms_off: q,
                        names_off,
                        markers_off: mstart,
                        count: n,
                        text: f.0,
                        spans: f.1,
                    });
                }
            }
        }
        q = q.checked_sub(4)?;
    }
    None
}

type Expanded = (Vec<u8>, Vec<(u32, u32)>);

/// Decodes `n` names from `start`, checking every marker and that the names end 0..7 zero
/// bytes before `mstart`.
fn walk_names(
    img: &[u8],
    tokens: &[&[u8]],
    markers: &[u32],
    start: usize,
    n: u32,
    mstart: usize,
) -> Option<Expanded> {
    // First pass: entry boundaries only (cheap), checked against every marker and the end.
    let mut pos = start;
    // Each entry takes at least 2 bytes: no allocation beyond what the data can hold.
    let mut entries = Vec::with_capacity((n as usize).min(mstart.saturating_sub(start) / 2));
    for i in 0..n {
        if i & 0xff == 0 && markers.get(i as usize / 256).map(|&m| start + m as usize) != Some(pos)
        {
            return None;
        }
        let mut len = usize::from(*img.get(pos)?);
        pos += 1;
        if len & 0x80 != 0 {
            len = (len & 0x7f) | (usize::from(*img.get(pos)?) << 7);
            pos += 1;
        }
        if len == 0 || pos + len > mstart {
            return None;
        }
        entries.push((pos, len));
        pos += len;
    }
    let pad = mstart.checked_sub(pos)?;
    if pad > 7 || !read::zeros(img, pos, mstart) {
        return None;
    }
    // Second pass: expand the tokens.
    let mut text = Vec::new();
    let mut spans = Vec::with_capacity(n as usize);
    for (pos, len) in entries {
        let from = text.len();
        for &t in img.get(pos..pos + len)? {
            text.extend_from_slice(tokens.get(usize::from(t))?);
        }
        if text.len() - from < 2 {
            return None;
        }
        spans.push((from as u32, (text.len() - from) as u32));
    }
    Some((text, spans))
}

/// Locates offsets + relative base and builds the symbol list.
fn finish(img: &[u8], base: u64, tt: usize, ti: usize, f: NamesFound) -> Result<Inner> {
    let n = f.count as usize;
    let va = |off: usize| base.wrapping_add(off as u64);
    let mut tried_any = false;
    // Newer order: offsets after the token index, relative base after them (8-aligned).
    let after = ti + 512;
    let mut candidates: Vec<(usize, usize, bool)> = Vec::new();
    for opad in [0usize, 4] {
        let offs = after + opad;
        let end = offs + 4 * n;
        for rpad in [0usize, 4] {
            candidates.push((offs, end + rpad, true));
        }
    }
    // Older order: offsets, relative base, then kallsyms_num_syms.
    for rpad in [0usize, 4] {
        if let Some(rb) = f.num_syms_off.checked_sub(8 + rpad) {
            for opad in [0usize, 4] {
                if let Some(offs) = rb.checked_sub(4 * n + opad) {
                    candidates.push((offs, rb, false));
                }
            }
        }
    }
    for (offs, rb, after_tokens) in candidates {
        if va(rb) & 3 != 0 {
            continue;
        }
        let (Some(raw), Some(relbase)) = (read::slice(img, offs, 4 * n), read::u64_at(img, rb))
        else {
            continue;
        };
        tried_any = true;
        if relbase < 0xffff_8000_0000_0000 {
            continue;
        }
        let offsets: Vec<i32> = raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let absolute_percpu = offsets.iter().any(|&o| o < 0);
        let addr_of = |o: i32| -> (u64, bool) {
            if !absolute_percpu {
                (relbase.wrapping_add(u64::from(o as u32)), false)
            } else if o >= 0 {
                (o as u64, true)
            } else {
                (relbase.wrapping_sub(1).wrapping_sub(o as i64 as u64), false)
            }
        };
        // scripts/kallsyms.c sorts the table by address.
        if offsets
            .windows(2)
            .any(|w| addr_of(w[0]).0 > addr_of(w[1]).0)
        {
            continue;
        }
        let layout = TableLayout {
            num_syms: va(f.num_syms_off),
            names: va(f.names_off),
            markers: va(f.markers_off),
            token_table: va(tt),
            token_index: va(ti),
            offsets: va(offs),
            relative_base: va(rb),
            offsets_after_tokens: after_tokens,
            absolute_percpu,
        };
        return Ok(build(&f, &offsets, addr_of, layout));
    }
    Err(not_found(if tried_any {
        "kallsyms_offsets not sorted or kallsyms_relative_base not a kernel address"
    } else {
        "kallsyms_offsets/kallsyms_relative_base outside the image"
    }))
}

fn build(
    f: &NamesFound,
    offsets: &[i32],
    addr_of: impl Fn(i32) -> (u64, bool),
    layout: TableLayout,
) -> Inner {
    let mut names = String::with_capacity(f.text.len());
    let mut entries = Vec::with_capacity(offsets.len());
    for (&(start, len), &o) in f.spans.iter().zip(offsets) {
        let s = f
            .text
            .get(start as usize..(start + len) as usize)
            .unwrap_or(&[]);
        let (kind, rest) = s.split_first().map_or((b'?', &[][..]), |(k, r)| (*k, r));
        let name_start = names.len() as u32;
        names.push_str(&String::from_utf8_lossy(rest));
        let (addr, percpu) = addr_of(o);
        entries.push(Entry {
            addr,
            name_start,
            name_len: names.len() as u32 - name_start,
            kind,
            percpu,
        });
    }
    let mut by_name: HashMap<Box<str>, u32> = HashMap::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let s = e.name_start as usize;
        let name = names.get(s..s + e.name_len as usize).unwrap_or("");
        by_name.entry(name.into()).or_insert(i as u32);
    }
    let mut by_addr: Vec<u32> = (0..entries.len() as u32)
        .filter(|&i| !entries[i as usize].percpu)
        .collect();
    by_addr.sort_by_key(|&i| entries[i as usize].addr);
    Inner {
        names,
        entries,
        by_name,
        by_addr,
        layout,
    }
}

#[cfg(test)]
mod tests;
