//! strace `-c`: a table of calls, errors and time per syscall, written when tracing ends.

use std::{collections::HashMap, io::Write, time::Duration};

use super::Sink;
use crate::{record::Record, NitroError};

#[derive(Debug, Default, Clone, Copy)]
struct Row {
    calls: u64,
    errors: u64,
    time: Duration,
}

/// Counts calls, errors and time per syscall and writes strace's `-c` table at the end.
/// Time is host time from the entry stop to the exit stop (the guest runs under the
/// tracer, so it includes the tracing cost of the stops in between).
#[derive(Debug)]
pub struct SummarySink<W: Write + Send> {
    out: W,
    rows: HashMap<String, Row>,
}

impl<W: Write + Send> SummarySink<W> {
    /// A summary written to `out` at the end.
    pub fn new(out: W) -> Self {
        SummarySink {
            out,
            rows: HashMap::new(),
        }
    }

    /// The table as text.
    pub fn table(&self) -> String {
        let mut rows: Vec<(&String, &Row)> = self.rows.iter().collect();
        rows.sort_by(|a, b| {
            b.1.time
                .cmp(&a.1.time)
                .then(b.1.calls.cmp(&a.1.calls))
                .then(a.0.cmp(b.0))
        });
        let total: Duration = rows.iter().map(|r| r.1.time).sum();
        let total_s = total.as_secs_f64();
        let line = "------ ----------- ----------- --------- --------- ----------------\n";
        let mut s = String::from("% time     seconds  usecs/call     calls    errors syscall\n");
        s.push_str(line);
        let (mut calls, mut errors) = (0, 0);
        for (name, r) in &rows {
            calls += r.calls;
            errors += r.errors;
            let pct = if total_s > 0.0 {
                100.0 * r.time.as_secs_f64() / total_s
            } else {
                0.0
            };
            let per = r.time.as_micros() as u64 / r.calls.max(1);
            let err = if r.errors > 0 {
                r.errors.to_string()
            } else {
                String::new()
            };
            s.push_str(&format!(
                "{pct:6.2} {:11.6} {per:11} {:9} {err:>9} {name}\n",
                r.time.as_secs_f64(),
                r.calls
            ));
        }
        s.push_str(line);
        let err = if errors > 0 {
            errors.to_string()
        } else {
            String::new()
        };
        let per = total.as_micros() as u64 / calls.max(1);
        s.push_str(&format!(
            "100.00 {total_s:11.6} {per:11} {calls:9} {err:>9} total\n"
        ));
        s
    }
}

impl<W: Write + Send> Sink for SummarySink<W> {
    fn write(&mut self, rec: &Record) -> Result<(), NitroError> {
        let c = &rec.call;
        let row = self.rows.entry(c.name.clone()).or_default();
        row.calls += 1;
        if c.ret.as_ref().is_some_and(|r| r.errno.is_some()) {
            row.errors += 1;
        }
        if let Some(t) = c.exit_time {
            row.time += t.duration_since(c.enter_time).unwrap_or_default();
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), NitroError> {
        let t = self.table();
        let io = |e: std::io::Error| NitroError::Io(e.to_string());
        self.out.write_all(t.as_bytes()).map_err(io)?;
        self.out.flush().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use nitro_listener::{Direction, Strategy, SyscallKind};
    use nitro_os::{ReturnValue, Syscall};

    use super::*;

    fn call(name: &str, ret: i64, errno: Option<&'static str>, us: u64) -> Record {
        let t = SystemTime::UNIX_EPOCH;
        Record::new(Syscall {
            vcpu: 0,
            direction: Direction::Exit,
            kind: SyscallKind::Syscall64,
            cr3: 0,
            rax: 0,
            nr: 0,
            name: name.into(),
            process: Default::default(),
            args: vec![],
            raw_args: [0; 6],
            ret: Some(ReturnValue {
                value: ret,
                errno,
                text: ret.to_string(),
            }),
            enter_time: t,
            exit_time: Some(t + Duration::from_micros(us)),
            strategy: Strategy::Watchpoint,
            unfinished: false,
            note: None,
            task_key: 0,
        })
    }

    #[test]
    fn table_like_strace_c() {
        let mut s = SummarySink::new(Vec::new());
        s.write(&call("openat", 3, None, 30)).unwrap();
        s.write(&call("openat", -2, Some("ENOENT"), 10)).unwrap();
        s.write(&call("read", 5, None, 60)).unwrap();
        s.finish().unwrap();
        let t = String::from_utf8(s.out).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("% time     seconds  usecs/call     calls    errors syscall"));
        assert_eq!(
            lines[2],
            " 60.00    0.000060          60         1           read"
        );
        assert_eq!(
            lines[3],
            " 40.00    0.000040          20         2         1 openat"
        );
        assert_eq!(
            lines[5],
            "100.00    0.000100          33         3         1 total"
        );
    }
}
