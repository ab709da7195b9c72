//! Decoded argument values and their strace-style text.

use std::fmt::Write as _;

use serde::{Serialize, Serializer};

/// One decoded argument value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    /// A signed number.
    Int(i64),
    /// An unsigned number.
    UInt(u64),
    /// A pointer: `0x...`, or `NULL` for zero.
    Ptr(u64),
    /// A string or buffer read from the guest, already cut at the string limit; `truncated`
    /// means more bytes followed (strace prints `...` after the closing quote).
    Str {
        /// The bytes read (not escaped).
        bytes: Vec<u8>,
        /// Whether the guest data went on past `bytes`.
        truncated: bool,
    },
    /// A symbolic value: `AT_FDCWD`, `O_RDONLY|O_CLOEXEC`, `0644`, `SIGTERM`.
    Sym(String),
    /// A structure, already rendered: `{st_mode=S_IFREG|0644, st_size=1234, ...}`.
    Struct(String),
    /// An array of values: `["sh", "-c"]`.
    Array(Vec<ArgValue>),
    /// A pointer whose target could not be read: strace prints the address.
    Unreadable(u64),
    /// An output argument whose value is known only at the call's exit.
    Pending,
}

/// A named, decoded argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arg {
    /// Parameter name (kernel's `SYSCALL_DEFINE` name).
    pub name: &'static str,
    /// The value.
    pub value: ArgValue,
}

/// Appends `bytes` C-escaped the way strace does: `\n \t \r \f \v \" \\` by name, printable
/// ASCII as is, anything else in octal (three digits when an octal digit follows, so the
/// escape cannot run into it, otherwise the shortest form: `\0`, `\177`).
pub fn escape_into(bytes: &[u8], out: &mut String) {
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            0x0c => out.push_str("\\f"),
            0x0b => out.push_str("\\v"),
            0x20..=0x7e => out.push(c as char),
            _ => {
                let next_is_octal = matches!(bytes.get(i + 1), Some(b'0'..=b'7'));
                if next_is_octal {
                    let _ = write!(out, "\\{c:03o}");
                } else {
                    let _ = write!(out, "\\{c:o}");
                }
            }
        }
    }
}

/// `0x...` for a non-zero pointer, `NULL` for zero.
pub fn ptr_text(p: u64) -> String {
    if p == 0 {
        "NULL".to_string()
    } else {
        format!("{p:#x}")
    }
}

impl ArgValue {
    /// A string value from guest bytes read with a limit.
    pub fn str(bytes: Vec<u8>, truncated: bool) -> ArgValue {
        ArgValue::Str { bytes, truncated }
    }

    /// Appends the strace text of the value.
    pub fn render_text(&self, out: &mut String) {
        match self {
            ArgValue::Int(v) => {
                let _ = write!(out, "{v}");
            }
            ArgValue::UInt(v) => {
                let _ = write!(out, "{v}");
            }
            ArgValue::Ptr(p) | ArgValue::Unreadable(p) => out.push_str(&ptr_text(*p)),
            ArgValue::Str { bytes, truncated } => {
                out.push('"');
                escape_into(bytes, out);
                out.push('"');
                if *truncated {
                    out.push_str("...");
                }
            }
            ArgValue::Sym(s) | ArgValue::Struct(s) => out.push_str(s),
            ArgValue::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.render_text(out);
                }
                out.push(']');
            }
            ArgValue::Pending => out.push('?'),
        }
    }

    /// The strace text as a new string.
    pub fn text(&self) -> String {
        let mut s = String::new();
        self.render_text(&mut s);
        s
    }
}

impl Serialize for ArgValue {
    /// JSON form: numbers for `Int`/`UInt`; for `Str` the text itself when it is printable
    /// UTF-8, else strace's escaped form, without quotes (with `...` appended when truncated); arrays as JSON arrays; `"0x..."`/`"NULL"` for
    /// pointers; the strace text for everything else.
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match self {
            ArgValue::Int(v) => ser.serialize_i64(*v),
            ArgValue::UInt(v) => ser.serialize_u64(*v),
            ArgValue::Str { bytes, truncated } => {
                // Text that is valid UTF-8 without control characters goes out as it is (JSON
                // escapes it as JSON needs); anything else in strace's escaped form.
                let mut s = match std::str::from_utf8(bytes) {
                    Ok(t) if !t.chars().any(char::is_control) => t.to_owned(),
                    _ => {
                        let mut e = String::new();
                        escape_into(bytes, &mut e);
                        e
                    }
                };
                if *truncated {
                    s.push_str("...");
                }
                ser.serialize_str(&s)
            }
            ArgValue::Array(items) => items.serialize(ser),
            other => ser.serialize_str(&other.text()),
        }
    }
}

/// A return value as strace shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReturnValue {
    /// The raw value (negative errno on failure).
    pub value: i64,
    /// The error name on failure (`ENOENT`; an NTSTATUS name on Windows).
    pub errno: Option<&'static str>,
    /// strace's text: `3`, `-1 ENOENT (No such file or directory)`, `0x7f12a000`,
    /// `? ERESTARTSYS (To be restarted if SA_RESTART is set)`.
    pub text: String,
}

impl ReturnValue {
    /// A plain decimal return value.
    pub fn plain(value: i64) -> Self {
        ReturnValue {
            value,
            errno: None,
            text: value.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strace_escaping_and_json() {
        let v = ArgValue::Str {
            bytes: b"a\"b\\\n\x01\x012".to_vec(),
            truncated: true,
        };
        assert_eq!(v.text(), r#""a\"b\\\n\1\0012"..."#);
        assert_eq!(ArgValue::Ptr(0).text(), "NULL");
        let argv = ArgValue::Array(vec![
            ArgValue::str(b"ls".to_vec(), false),
            ArgValue::str(b"-l".to_vec(), false),
        ]);
        assert_eq!(argv.text(), r#"["ls", "-l"]"#);
        assert_eq!(serde_json::to_string(&argv).unwrap(), r#"["ls","-l"]"#);
        assert_eq!(
            serde_json::to_string(&ArgValue::Sym("O_RDONLY".into())).unwrap(),
            "\"O_RDONLY\""
        );
        assert_eq!(serde_json::to_string(&ArgValue::Int(-100)).unwrap(), "-100");
        let path = ArgValue::str(br"\??\C:\x".to_vec(), false);
        assert_eq!(
            serde_json::from_str::<String>(&serde_json::to_string(&path).unwrap()).unwrap(),
            r"\??\C:\x"
        );
        let bin = ArgValue::str(b"a\nb\x01".to_vec(), true);
        assert_eq!(
            serde_json::from_str::<String>(&serde_json::to_string(&bin).unwrap()).unwrap(),
            r"a\nb\1..."
        );
    }
}
