//! NTSTATUS names for return values (`ntstatus.h`).

use nitro_os::ReturnValue;

#[path = "ntstatus_table.rs"]
mod table;

/// The `STATUS_*` name of `status`, when `ntstatus.h` defines one.
pub fn name(status: u32) -> Option<&'static str> {
    table::CODES
        .binary_search_by_key(&status, |e| e.0)
        .ok()
        .and_then(|i| table::CODES.get(i))
        .map(|e| e.1)
}

/// The value of the `STATUS_*` constant `name`.
pub fn value(name: &str) -> Option<u32> {
    table::CODES.iter().find(|e| e.1 == name).map(|e| e.0)
}

/// Number of distinct values known.
pub fn count() -> usize {
    table::CODES.len()
}

/// True for success and informational codes (`NT_SUCCESS`: the value is non-negative).
pub fn is_success(status: u32) -> bool {
    (status as i32) >= 0
}

/// A return value as `NtXxx` returns it in EAX: the NTSTATUS, rendered `0 STATUS_SUCCESS` or
/// `0xc0000034 STATUS_OBJECT_NAME_NOT_FOUND`; `errno` carries the name for failures and
/// warnings (severity bit set).
pub fn return_value(rax: u64) -> ReturnValue {
    let status = rax as u32;
    let name = name(status);
    let text = match (status, name) {
        (0, _) => "0 STATUS_SUCCESS".to_string(),
        (s, Some(n)) => format!("{s:#x} {n}"),
        (s, None) => format!("{s:#x}"),
    };
    ReturnValue {
        value: i64::from(status as i32),
        errno: if is_success(status) { None } else { name },
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(count() >= 150);
        assert_eq!(name(0), Some("STATUS_SUCCESS"));
        assert_eq!(name(0xC000_0034), Some("STATUS_OBJECT_NAME_NOT_FOUND"));
        assert_eq!(name(0xC000_0022), Some("STATUS_ACCESS_DENIED"));
        assert_eq!(name(0x0000_0103), Some("STATUS_PENDING"));
        assert_eq!(name(0x8000_0005), Some("STATUS_BUFFER_OVERFLOW"));
        assert_eq!(name(0xC000_0023), Some("STATUS_BUFFER_TOO_SMALL"));
        assert_eq!(name(0xC000_0005), Some("STATUS_ACCESS_VIOLATION"));
        assert_eq!(value("STATUS_OBJECT_PATH_NOT_FOUND"), Some(0xC000_003A));
        assert_eq!(name(0xDEAD_BEEF), None);
    }

    #[test]
    fn rendering() {
        let r = return_value(0xC000_0034);
        assert_eq!(r.value, -1_073_741_772);
        assert_eq!(r.errno, Some("STATUS_OBJECT_NAME_NOT_FOUND"));
        assert_eq!(r.text, "0xc0000034 STATUS_OBJECT_NAME_NOT_FOUND");
        let ok = return_value(0xffff_ffff_0000_0000);
        assert_eq!(
            (ok.value, ok.errno, ok.text.as_str()),
            (0, None, "0 STATUS_SUCCESS")
        );
        assert_eq!(return_value(0x103).text, "0x103 STATUS_PENDING");
        assert_eq!(return_value(0x103).errno, None);
    }
}
