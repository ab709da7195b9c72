//! The jsonl record of a call (DESIGN.md, "Event record"), compatible with Nitro's output.

use std::time::{SystemTime, UNIX_EPOCH};

use nitro_listener::Direction;
use nitro_os::Syscall;
use serde_json::{json, Map, Value};

/// RFC 3339 UTC time with microseconds, e.g. `2026-11-22T03:24:32.123456Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, public domain).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// One record as sinks receive it: the call, what hooks attached, and whether its result
/// was injected.
#[derive(Debug, Clone)]
pub struct Record {
    /// The call.
    pub call: Syscall,
    /// What hooks attached (the JSON record's `hook` object).
    pub hook: Map<String, Value>,
    /// The call was not run: its result was injected (`--inject`) or chosen by a hook.
    pub injected: bool,
}

impl Record {
    /// A record with nothing attached.
    pub fn new(call: Syscall) -> Self {
        Record {
            call,
            hook: Map::new(),
            injected: false,
        }
    }

    /// The JSON form (see [`to_json`]).
    pub fn json(&self) -> Value {
        let mut v = to_json(&self.call, &self.hook);
        if self.injected {
            if let Some(o) = v.as_object_mut() {
                o.insert("injected".into(), Value::Bool(true));
            }
        }
        v
    }

    /// The text form (see [`to_text`]), with strace's ` (INJECTED)` mark.
    pub fn text(&self) -> String {
        let mut s = to_text(&self.call);
        if self.injected {
            s.push_str(" (INJECTED)");
        }
        s
    }
}

/// The JSON record of `call`. `hook` is what hooks attached.
pub fn to_json(call: &Syscall, hook: &Map<String, Value>) -> Value {
    let direction = match call.direction {
        Direction::Enter => "enter",
        Direction::Exit => "exit",
    };
    let time = match call.direction {
        Direction::Exit => call.exit_time.unwrap_or(call.enter_time),
        Direction::Enter => call.enter_time,
    };
    let mut rec = json!({
        "time": rfc3339(time),
        "event": {
            "vcpu": call.vcpu,
            "direction": direction,
            "type": call.kind,
            "cr3": format!("{:#x}", call.cr3),
            "rax": format!("{:#x}", call.rax),
        },
        "nr": call.nr,
        "name": call.name,
        "process": call.process,
        "args": call.args,
    });
    let obj = rec
        .as_object_mut()
        .expect("json! of an object is an object");
    if let Some(r) = &call.ret {
        obj.insert("ret".into(), json!(r.value));
        if let Some(e) = r.errno {
            obj.insert("error".into(), json!(e));
        }
        if r.text != r.value.to_string() {
            obj.insert("ret_text".into(), json!(r.text));
        }
    } else if call.direction == Direction::Exit || call.unfinished {
        obj.insert("unfinished".into(), json!(true));
    }
    if let Some(n) = &call.note {
        obj.insert("note".into(), json!(n));
    }
    obj.insert("hook".into(), Value::Object(hook.clone()));
    rec
}

/// The strace-like text line of `call`:
/// `[812 cat] openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3`.
pub fn to_text(call: &Syscall) -> String {
    let mut s = String::with_capacity(128);
    s.push('[');
    s.push_str(&call.process.pid.to_string());
    if call.process.tid != call.process.pid {
        s.push('/');
        s.push_str(&call.process.tid.to_string());
    }
    s.push(' ');
    s.push_str(&call.process.name);
    s.push_str("] ");
    s.push_str(&call.name);
    s.push('(');
    for (i, a) in call.args.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        a.value.render_text(&mut s);
    }
    s.push(')');
    match (&call.ret, call.direction) {
        (Some(r), _) => {
            s.push_str(" = ");
            s.push_str(&r.text);
        }
        (None, Direction::Enter) if !call.unfinished => s.push_str(" ..."),
        (None, _) => s.push_str(" = ?"),
    }
    if let Some(n) = &call.note {
        s.push_str(" <");
        s.push_str(n);
        s.push('>');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_795_324_472_123_456);
        assert_eq!(rfc3339(t), "2026-11-22T05:14:32.123456Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }
}
