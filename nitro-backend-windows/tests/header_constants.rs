//! Checks the constant tables and prototype parameter counts against the Windows SDK/WDK
//! headers of mingw-w64 (Debian package mingw-w64-common), when they are installed:
//! `NITRO_MINGW_INCLUDE` or `/usr/share/mingw-w64/include`. Skipped (with a note) otherwise.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use nitro_backend_windows::decoders::{access, flags, prototypes::PROTOTYPES};

fn include_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("NITRO_MINGW_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/mingw-w64/include"));
    dir.join("winnt.h").exists().then_some(dir)
}

fn read(dir: &Path, files: &[&str]) -> String {
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `#define NAME expr` lines.
fn defines(text: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for line in text.lines() {
        let l = line.trim_start();
        let Some(rest) = l.strip_prefix("#define ") else {
            continue;
        };
        let mut it = rest.splitn(2, char::is_whitespace);
        let (Some(name), Some(expr)) = (it.next(), it.next()) else {
            continue;
        };
        if name.contains('(') {
            continue;
        }
        let expr = expr
            .split("//")
            .next()
            .unwrap_or("")
            .split("/*")
            .next()
            .unwrap_or("")
            .trim();
        m.entry(name.to_string())
            .or_insert_with(|| expr.to_string());
    }
    m
}

/// Evaluates a constant expression of `|`, `&`, `~`, parentheses, casts, hex/decimal
/// literals and names of other defines.
fn eval(expr: &str, defs: &HashMap<String, String>, depth: u32) -> Option<u64> {
    if depth > 8 {
        return None;
    }
    let mut e = expr.replace("__MSABI_LONG", "");
    for cast in [
        "(NTSTATUS)",
        "(DWORD)",
        "(ULONG)",
        "(LONG)",
        "(ACCESS_MASK)",
        "(int)",
        "(unsigned int)",
    ] {
        e = e.replace(cast, "");
    }
    let mut toks = Vec::new();
    let mut cur = String::new();
    for c in e.chars() {
        if "|&~()".contains(c) || c.is_whitespace() {
            if !cur.is_empty() {
                toks.push(std::mem::take(&mut cur));
            }
            if !c.is_whitespace() {
                toks.push(c.to_string());
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        toks.push(cur);
    }
    let mut pos = 0;
    let v = parse_or(&toks, &mut pos, defs, depth)?;
    (pos == toks.len()).then_some(v & 0xffff_ffff)
}

fn parse_or(t: &[String], pos: &mut usize, d: &HashMap<String, String>, depth: u32) -> Option<u64> {
    let mut v = parse_and(t, pos, d, depth)?;
    while t.get(*pos).map(String::as_str) == Some("|") {
        *pos += 1;
        v |= parse_and(t, pos, d, depth)?;
    }
    Some(v)
}

fn parse_and(
    t: &[String],
    pos: &mut usize,
    d: &HashMap<String, String>,
    depth: u32,
) -> Option<u64> {
    let mut v = parse_unary(t, pos, d, depth)?;
    while t.get(*pos).map(String::as_str) == Some("&") {
        *pos += 1;
        v &= parse_unary(t, pos, d, depth)?;
    }
    Some(v)
}

fn parse_unary(
    t: &[String],
    pos: &mut usize,
    d: &HashMap<String, String>,
    depth: u32,
) -> Option<u64> {
    let tok = t.get(*pos)?.clone();
    *pos += 1;
    match tok.as_str() {
        "~" => Some(!parse_unary(t, pos, d, depth)?),
        "(" => {
            let v = parse_or(t, pos, d, depth)?;
            (t.get(*pos).map(String::as_str) == Some(")")).then(|| *pos += 1)?;
            Some(v)
        }
        lit => {
            let l = lit.trim_end_matches(['L', 'l', 'U', 'u']);
            if let Some(h) = l.strip_prefix("0x").or_else(|| l.strip_prefix("0X")) {
                u64::from_str_radix(h, 16).ok()
            } else if !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()) {
                l.parse().ok()
            } else if l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                eval(d.get(l)?, d, depth + 1)
            } else {
                None
            }
        }
    }
}

#[test]
fn constants_match_the_headers() {
    let Some(dir) = include_dir() else {
        eprintln!("mingw-w64 headers not installed: skipped");
        return;
    };
    let text = read(
        &dir,
        &[
            "winnt.h",
            "ntdef.h",
            "winternl.h",
            "ddk/wdm.h",
            "ddk/ntifs.h",
            "ddk/ntddk.h",
        ],
    );
    let defs = defines(&text);
    let mut tables: Vec<(&str, Vec<(u64, &str)>)> = vec![];
    for (n, t) in [
        ("STANDARD", access::STANDARD),
        ("GENERIC", access::GENERIC),
        ("FILE", access::FILE),
        ("KEY", access::KEY),
        ("PROCESS", access::PROCESS),
        ("THREAD", access::THREAD),
        ("TOKEN", access::TOKEN),
        ("SECTION", access::SECTION),
        ("EVENT", access::EVENT),
        ("MUTANT", access::MUTANT),
        ("SEMAPHORE", access::SEMAPHORE),
        ("DIRECTORY", access::DIRECTORY),
        ("SYMBOLIC_LINK", access::SYMBOLIC_LINK),
    ] {
        tables.push((n, t.iter().map(|&(v, s)| (u64::from(v), s)).collect()));
    }
    for (n, t) in [
        ("OBJ_ATTRIBUTES", flags::OBJ_ATTRIBUTES),
        ("FILE_ATTRIBUTES", flags::FILE_ATTRIBUTES),
        ("FILE_SHARE", flags::FILE_SHARE),
        ("CREATE_DISPOSITION", flags::CREATE_DISPOSITION),
        ("CREATE_OPTIONS", flags::CREATE_OPTIONS),
        ("PAGE_PROTECTION", flags::PAGE_PROTECTION),
        ("MEM_TYPE", flags::MEM_TYPE),
        ("SEC_ATTRIBUTES", flags::SEC_ATTRIBUTES),
        ("REG_TYPE", flags::REG_TYPE),
        ("REG_OPTIONS", flags::REG_OPTIONS),
        ("REG_DISPOSITION", flags::REG_DISPOSITION),
        ("DUPLICATE_OPTIONS", flags::DUPLICATE_OPTIONS),
    ] {
        tables.push((n, t.to_vec()));
    }
    let (mut checked, mut absent, mut wrong) = (0, Vec::new(), Vec::new());
    for (table, entries) in &tables {
        for &(v, name) in entries {
            match defs.get(name).and_then(|e| eval(e, &defs, 0)) {
                Some(h) if h == v => checked += 1,
                Some(h) => wrong.push(format!("{table}: {name} = {v:#x}, header says {h:#x}")),
                None => absent.push(name),
            }
        }
    }
    // The composite masks shown as one name.
    for (name, v) in [
        ("FILE_ALL_ACCESS", 0x001f_01ffu64),
        ("KEY_ALL_ACCESS", 0x000f_003f),
        ("TOKEN_ALL_ACCESS", 0x000f_01ff),
        ("SECTION_ALL_ACCESS", 0x000f_001f),
        ("EVENT_ALL_ACCESS", 0x001f_0003),
        ("MUTANT_ALL_ACCESS", 0x001f_0001),
        ("SEMAPHORE_ALL_ACCESS", 0x001f_0003),
    ] {
        match defs.get(name).and_then(|e| eval(e, &defs, 0)) {
            Some(h) if h == v => checked += 1,
            Some(h) => wrong.push(format!("{name} = {v:#x}, header says {h:#x}")),
            None => absent.push(name),
        }
    }
    eprintln!("{checked} constants match the headers; not defined there: {absent:?}");
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(checked >= 150, "only {checked} checked");
}

/// Number of parameters of `Nt<name>`/`Zw<name>` as declared in the headers.
fn header_param_counts(text: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    let bytes = text.as_bytes();
    for prefix in ["Nt", "Zw"] {
        let mut from = 0;
        while let Some(i) = text[from..].find(prefix) {
            let start = from + i;
            from = start + 2;
            if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
                continue;
            }
            let name_end = text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map(|n| start + n);
            let Some(name_end) = name_end else { continue };
            let rest = text[name_end..].trim_start();
            if !rest.starts_with('(') {
                continue;
            }
            // Only declarations: the name is preceded by NTAPI.
            if !text[..start].trim_end().ends_with("NTAPI") {
                continue;
            }
            let open = name_end + (text[name_end..].len() - rest.len());
            let mut depth = 0;
            let mut close = None;
            for (k, c) in text[open..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            close = Some(open + k);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(close) = close else { continue };
            let params = &text[open + 1..close];
            let body: String = params
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join(" ");
            let n = if body.trim().is_empty() || body.trim() == "VOID" || body.trim() == "void" {
                0
            } else {
                body.split(',').count()
            };
            let nt = format!("Nt{}", &text[start + 2..name_end]);
            m.entry(nt).or_insert(n);
        }
    }
    m
}

#[test]
fn prototype_parameter_counts() {
    let Some(dir) = include_dir() else {
        eprintln!("mingw-w64 headers not installed: skipped");
        return;
    };
    let text = read(
        &dir,
        &["ddk/ntifs.h", "ddk/wdm.h", "ddk/ntddk.h", "winternl.h"],
    );
    let counts = header_param_counts(&text);
    let (mut matched, mut wrong, mut absent) = (Vec::new(), Vec::new(), Vec::new());
    for p in PROTOTYPES {
        match counts.get(p.name) {
            Some(&n) if n == p.params.len() => matched.push(p.name),
            Some(&n) => wrong.push(format!(
                "{}: {} parameters, header has {n}",
                p.name,
                p.params.len()
            )),
            None => absent.push(p.name),
        }
    }
    eprintln!(
        "{} prototypes match the headers; not declared there: {absent:?}",
        matched.len()
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(matched.len() >= 40, "only {} matched", matched.len());
}
