//! Decoded argument values and return values, rendered as strace renders them.

use serde::{Serialize, Serializer};

/// A decoded argument value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A pointer, shown in hex, or `NULL`.
    Ptr(u64),
    /// A string or buffer read from the guest.
    Str {
        /// The bytes read (at most the string limit).
        bytes: Vec<u8>,
        /// Cut at the limit (strace adds `...`).
        truncated: bool,
    },
    /// A symbolic value: `AT_FDCWD`, `O_RDONLY|O_CLOEXEC`, `0644`, `SIGTERM`.
    Sym(String),
    /// A structure, already rendered: `{st_mode=S_IFREG|0644, st_size=3, ...}`.
    Struct(String),
    /// An array of values: `["ls", "-l"]`.
    Array(Vec<ArgValue>),
    /// A pointer whose target could not be read: strace shows the address.
    Unreadable(u64),
    /// An output argument not filled yet (the call has not returned).
    Pending,
}

/// A named argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arg {
    /// Parameter name, as in the kernel's prototype.
    pub name: &'static str,
    /// Its value.
    pub value: ArgValue,
}

/// Escapes bytes as strace does inside double quotes: `\n`, `\t`, `\"`, `\\`, and octal for
/// other non-printable bytes.
pub fn escape_bytes(bytes: &[u8], out: &mut String) {
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            0x0b => out.push_str("\\v"),
            0x0c => out.push_str("\\f"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                // strace uses the shortest octal form unless a digit follows.
                let next_is_digit = bytes.get(i + 1).is_some_and(|c| c.is_ascii_digit());
                if next_is_digit {
                    out.push_str(&format!("\\{b:03o}"));
                } else {
                    out.push_str(&format!("\\{b:o}"));
                }
            }
        }
    }
}

impl ArgValue {
    /// Appends the strace-style text form.
    pub fn render_text(&self, out: &mut String) {
        match self {
            ArgValue::Int(v) => out.push_str(&v.to_string()),
            ArgValue::UInt(v) => out.push_str(&v.to_string()),
            ArgValue::Ptr(0) => out.push_str("NULL"),
            ArgValue::Ptr(p) | ArgValue::Unreadable(p) => out.push_str(&format!("{p:#x}")),
            ArgValue::Str { bytes, truncated } => {
                out.push('"');
                escape_bytes(bytes, out);
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

    /// The text form as a new string.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.render_text(&mut s);
        s
    }
}

impl Serialize for ArgValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ArgValue::Int(v) => s.serialize_i64(*v),
            ArgValue::UInt(v) => s.serialize_u64(*v),
            ArgValue::Str { bytes, truncated } => {
                let mut t = String::new();
                escape_bytes(bytes, &mut t);
                if *truncated {
                    t.push_str("...");
                }
                s.serialize_str(&t)
            }
            ArgValue::Array(items) => items.serialize(s),
            other => s.serialize_str(&other.to_text()),
        }
    }
}

/// A return value with its strace rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnValue {
    /// The raw value (RAX, sign-extended).
    pub value: i64,
    /// Error name when the value is an error (`ENOENT`), Windows status name likewise.
    pub errno: Option<&'static str>,
    /// strace's text: `3`, `-1 ENOENT (No such file or directory)`, `0x7f12a000`.
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
    fn strace_escaping() {
        let v = ArgValue::Str {
            bytes: b"a\"b\\\n\x01\x012".to_vec(),
            truncated: true,
        };
        assert_eq!(v.to_text(), r#""a\"b\\\n\1\0012"..."#);
        assert_eq!(ArgValue::Ptr(0).to_text(), "NULL");
        assert_eq!(
            ArgValue::Array(vec![
                ArgValue::Str {
                    bytes: b"ls".to_vec(),
                    truncated: false
                },
                ArgValue::Str {
                    bytes: b"-l".to_vec(),
                    truncated: false
                }
            ])
            .to_text(),
            r#"["ls", "-l"]"#
        );
        assert_eq!(
            serde_json::to_string(&ArgValue::Sym("O_RDONLY".into())).unwrap(),
            "\"O_RDONLY\""
        );
        assert_eq!(serde_json::to_string(&ArgValue::Int(-100)).unwrap(), "-100");
    }
}
