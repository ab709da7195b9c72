//! Fault injection with strace's syntax (strace(1), "-e inject"):
//! `SET:error=ERRNO|retval=VALUE[:when=FIRST[..LAST][+[STEP]]]`.
//!
//! `SET` is a comma-separated list of syscall names and classes (`%file`); the call is not
//! run at all and returns `-ERRNO` or `VALUE`. `when` counts the calls of the set made by
//! each process, from 1: `3` injects only the third, `3+` the third and every one after it,
//! `3+2` the third, fifth..., `3..5` the third to the fifth, `3..9+3` the third, sixth and
//! ninth. Without `when` every call is injected.

use std::collections::HashMap;

use nitro_backend_linux::syscalls::errno_from_name;

use crate::{filter::SyscallSet, NitroError};

/// Which of a process's calls are injected (`when=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct When {
    /// First call (1-based).
    pub first: u64,
    /// Last call, inclusive (None = no end).
    pub last: Option<u64>,
    /// Every STEP-th call from `first` (0 = only `first`).
    pub step: u64,
}

impl Default for When {
    /// Every call: `1+`.
    fn default() -> Self {
        When {
            first: 1,
            last: None,
            step: 1,
        }
    }
}

impl When {
    /// Parses `FIRST[..LAST][+[STEP]]`.
    pub fn parse(s: &str) -> Result<When, NitroError> {
        let bad = || NitroError::Usage(format!("when={s}: expected FIRST[..LAST][+[STEP]]"));
        let num = |t: &str| -> Result<u64, NitroError> {
            let n: u64 = t.parse().map_err(|_| bad())?;
            if n == 0 || n > 0xffff {
                // strace limits counters to 65535.
                return Err(bad());
            }
            Ok(n)
        };
        let (range, step) = match s.split_once('+') {
            Some((r, "")) => (r, Some(1)),
            Some((r, st)) => (r, Some(num(st)?)),
            None => (s, None),
        };
        let (first, last) = match range.split_once("..") {
            Some((a, b)) => (num(a)?, Some(num(b)?)),
            None => (num(range)?, None),
        };
        if last.is_some_and(|l| l < first) {
            return Err(bad());
        }
        // A range without a step means every call in it.
        let step = step.unwrap_or(if last.is_some() { 1 } else { 0 });
        Ok(When { first, last, step })
    }

    /// True when the `n`-th call (1-based) is injected.
    pub fn matches(&self, n: u64) -> bool {
        if n < self.first || self.last.is_some_and(|l| n > l) {
            return false;
        }
        match self.step {
            0 => n == self.first,
            s => (n - self.first).is_multiple_of(s),
        }
    }
}

/// What an injected call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `error=ERRNO`: the call fails with this errno (returns `-errno`).
    Error(u64),
    /// `retval=VALUE`: the call returns this value.
    Retval(i64),
}

impl Fault {
    /// The raw value the call returns.
    pub fn value(self) -> i64 {
        match self {
            Fault::Error(e) => -(e as i64),
            Fault::Retval(v) => v,
        }
    }
}

/// One `--inject` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    /// The calls it applies to.
    pub set: SyscallSet,
    /// What they return.
    pub fault: Fault,
    /// Which of them.
    pub when: When,
}

impl Injection {
    /// Parses strace's `SET:error=ERRNO|retval=VALUE[:when=EXPR]`.
    pub fn parse(spec: &str) -> Result<Injection, NitroError> {
        let usage = |why: &str| NitroError::Usage(format!("--inject {spec}: {why}"));
        let mut parts = spec.split(':');
        let set = SyscallSet::parse(parts.next().unwrap_or_default())?;
        let mut fault = None;
        let mut when = When::default();
        for p in parts {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| usage("expected KEY=VALUE"))?;
            match k {
                "error" => {
                    let n = errno_from_name(v)
                        .or_else(|| v.parse::<u64>().ok().filter(|n| (1..4096).contains(n)))
                        .ok_or_else(|| usage(&format!("unknown errno {v}")))?;
                    fault = Some(Fault::Error(n));
                }
                "retval" => {
                    let n = parse_int(v).ok_or_else(|| usage(&format!("bad retval {v}")))?;
                    fault = Some(Fault::Retval(n));
                }
                "when" => when = When::parse(v)?,
                "signal" | "delay_enter" | "delay_exit" | "poke_enter" | "poke_exit" => {
                    return Err(usage(&format!("{k}= is not supported")))
                }
                _ => return Err(usage(&format!("unknown key {k}"))),
            }
        }
        let fault = fault.ok_or_else(|| usage("say error=ERRNO or retval=VALUE"))?;
        Ok(Injection { set, fault, when })
    }
}

fn parse_int(v: &str) -> Option<i64> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok().map(|n| n as i64),
        None => v.parse().ok(),
    }
}

/// The injection rules and their per-process call counters.
#[derive(Debug, Default)]
pub struct Injector {
    rules: Vec<Injection>,
    counts: HashMap<(usize, u64), u64>,
}

/// Most (rule, pid) counters kept; past this the oldest are forgotten all at once.
const MAX_COUNTERS: usize = 1 << 16;

impl Injector {
    /// Adds a rule.
    pub fn add(&mut self, rule: Injection) {
        self.rules.push(rule);
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules.
    pub fn rules(&self) -> &[Injection] {
        &self.rules
    }

    /// Counts a call of `name` by `pid` and returns the fault to inject, if any (the first
    /// rule that matches wins; every matching rule counts the call).
    pub fn check(&mut self, name: &str, pid: u64) -> Option<Fault> {
        if self.counts.len() > MAX_COUNTERS {
            self.counts.clear();
        }
        let mut hit = None;
        for (i, r) in self.rules.iter().enumerate() {
            if !r.set.matches(name) {
                continue;
            }
            let n = self.counts.entry((i, pid)).or_insert(0);
            *n += 1;
            if hit.is_none() && r.when.matches(*n) {
                hit = Some(r.fault);
            }
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_expressions() {
        let w = When::parse("3").unwrap();
        let hits: Vec<u64> = (1..12).filter(|&n| w.matches(n)).collect();
        assert_eq!(hits, [3]);
        let w = When::parse("3+").unwrap();
        assert_eq!(
            (1..7).filter(|&n| w.matches(n)).collect::<Vec<_>>(),
            [3, 4, 5, 6]
        );
        let w = When::parse("2+3").unwrap();
        assert_eq!(
            (1..12).filter(|&n| w.matches(n)).collect::<Vec<_>>(),
            [2, 5, 8, 11]
        );
        let w = When::parse("3..5").unwrap();
        assert_eq!(
            (1..12).filter(|&n| w.matches(n)).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        let w = When::parse("3..9+3").unwrap();
        assert_eq!(
            (1..20).filter(|&n| w.matches(n)).collect::<Vec<_>>(),
            [3, 6, 9]
        );
        assert_eq!((1..5).filter(|&n| When::default().matches(n)).count(), 4);
        for bad in ["", "0", "x", "5..3", "1..", "+2", "1+x", "70000"] {
            assert!(When::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn inject_specs() {
        let i = Injection::parse("openat:error=ENOENT").unwrap();
        assert_eq!(i.fault, Fault::Error(2));
        assert_eq!(i.fault.value(), -2);
        assert!(i.set.matches("openat") && !i.set.matches("read"));
        let i = Injection::parse("read,%network:retval=0x10:when=2..4+2").unwrap();
        assert_eq!(i.fault, Fault::Retval(16));
        assert!(i.set.matches("read") && i.set.matches("connect"));
        assert_eq!(
            i.when,
            When {
                first: 2,
                last: Some(4),
                step: 2
            }
        );
        assert_eq!(
            Injection::parse("open:error=13").unwrap().fault,
            Fault::Error(13)
        );
        assert!(Injection::parse("open").is_err());
        assert!(Injection::parse("open:error=ENOPE").is_err());
        assert!(Injection::parse("open:signal=SIGKILL").is_err());
        assert!(Injection::parse("open:error=EIO:when=0").is_err());
    }

    #[test]
    fn counters_are_per_process_and_rule() {
        let mut inj = Injector::default();
        inj.add(Injection::parse("openat:error=ENOENT:when=2").unwrap());
        assert_eq!(inj.check("openat", 10), None);
        assert_eq!(inj.check("read", 10), None);
        assert_eq!(inj.check("openat", 11), None);
        assert_eq!(inj.check("openat", 10), Some(Fault::Error(2)));
        assert_eq!(inj.check("openat", 11), Some(Fault::Error(2)));
        assert_eq!(inj.check("openat", 10), None);
    }
}
