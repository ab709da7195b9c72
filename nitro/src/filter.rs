//! What to trace: syscall sets (strace's `-e trace=`), processes (`--pid`, `--comm`, `-f`).

use std::collections::HashSet;

use nitro_backend_linux::syscalls::{table::classes_of, Classes};
use nitro_os::{Process, Syscall, TraceScope};

use crate::NitroError;

/// A set of system calls as strace's `-e trace=` writes it: names and classes (`%file`,
/// `%process`, `%network`...), `all`, `none`, and a leading `!` for the complement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyscallSet {
    negate: bool,
    all: bool,
    names: HashSet<String>,
    classes: Option<Classes>,
}

impl SyscallSet {
    /// Every call.
    pub fn all() -> Self {
        SyscallSet {
            all: true,
            ..Default::default()
        }
    }

    /// No call.
    pub fn none() -> Self {
        SyscallSet::default()
    }

    /// Parses `NAME|%CLASS[,...]`, `all`, `none`, `!SET`.
    pub fn parse(spec: &str) -> Result<SyscallSet, NitroError> {
        let (negate, body) = match spec.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, spec),
        };
        let mut set = SyscallSet {
            negate,
            ..Default::default()
        };
        for item in body.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item {
                "all" => set.all = true,
                "none" => {}
                c if c.starts_with('%') => {
                    let cls = Classes::from_strace_name(c).ok_or_else(|| {
                        NitroError::Usage(format!("unknown syscall class {c} (try %file, %process, %network, %desc, %memory, %signal, %ipc)"))
                    })?;
                    set.classes = Some(set.classes.unwrap_or(Classes::empty()) | cls);
                }
                name => {
                    set.names.insert(name.to_string());
                }
            }
        }
        if body.trim().is_empty() {
            return Err(NitroError::Usage(format!(
                "empty syscall set {spec:?} (use none)"
            )));
        }
        Ok(set)
    }

    /// True when `name` is in the set.
    pub fn matches(&self, name: &str) -> bool {
        let inside = self.all
            || self.names.contains(name)
            || self.classes.is_some_and(|c| classes_of(name).intersects(c));
        inside != self.negate
    }

    /// True when the set is every call.
    pub fn is_all(&self) -> bool {
        (self.all && !self.negate)
            || (self.negate && !self.all && self.names.is_empty() && self.classes.is_none())
    }

    /// True when the set is empty.
    pub fn is_none(&self) -> bool {
        (!self.all && !self.negate && self.names.is_empty() && self.classes.is_none())
            || (self.negate && self.all)
    }

    /// The names of `table` in the set.
    pub fn resolve<'t>(&self, table: &'t [(u64, String)]) -> Vec<&'t (u64, String)> {
        table.iter().filter(|(_, n)| self.matches(n)).collect()
    }

    /// Union with another set (for planning: traced calls plus injected and hooked ones).
    pub fn scope_of(sets: &[&SyscallSet], table: &[(u64, String)]) -> TraceScope {
        if sets.iter().any(|s| s.is_all()) {
            return TraceScope::all();
        }
        let mut names: Vec<String> = Vec::new();
        for s in sets {
            // Names not in the table (a newer kernel's) still count.
            for n in &s.names {
                if !s.negate && !names.contains(n) {
                    names.push(n.clone());
                }
            }
            for (_, n) in s.resolve(table) {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        TraceScope {
            syscalls: Some(names),
        }
    }
}

/// Which processes are traced: pids, command names, and (with `follow`) their descendants.
#[derive(Debug, Clone, Default)]
pub struct ProcessFilter {
    /// Trace these pids (and, with `follow`, their descendants).
    pub pids: HashSet<u64>,
    /// Trace processes with these names (`comm`).
    pub comms: HashSet<String>,
    /// Follow children (strace `-f`).
    pub follow: bool,
    /// Start with no process traced: the tree grows only through [`ProcessFilter::adopt`]
    /// (used by `--trigger-exec`).
    pub wait_for_trigger: bool,
    tree: HashSet<u64>,
}

/// Most pids remembered as descendants.
const MAX_TREE: usize = 1 << 16;

impl ProcessFilter {
    /// Also traces these pids.
    pub fn with_pids(mut self, pids: impl IntoIterator<Item = u64>) -> Self {
        self.pids.extend(pids);
        self
    }

    /// Also traces processes with these names.
    pub fn with_comms<S: Into<String>>(mut self, comms: impl IntoIterator<Item = S>) -> Self {
        self.comms.extend(comms.into_iter().map(Into::into));
        self
    }

    /// Follows children (strace `-f`) or not.
    pub fn following(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// Traces nothing until [`ProcessFilter::adopt`] is called (`--trigger-exec`).
    pub fn waiting_for_trigger(mut self) -> Self {
        self.wait_for_trigger = true;
        self
    }

    /// True when every process is traced.
    pub fn is_all(&self) -> bool {
        self.pids.is_empty() && self.comms.is_empty() && !self.wait_for_trigger
    }

    /// Adds `pid` (and, with `follow`, its future children) to the traced tree.
    pub fn adopt(&mut self, pid: u64) {
        if self.tree.len() < MAX_TREE {
            self.tree.insert(pid);
        }
    }

    /// True when `p` is traced. With `follow`, a process whose parent is traced joins.
    pub fn selects(&mut self, p: &Process) -> bool {
        if self.is_all() || self.pids.contains(&p.pid) || self.tree.contains(&p.pid) {
            return true;
        }
        if self.comms.contains(&p.name) {
            if self.follow {
                self.adopt(p.pid);
            }
            return true;
        }
        let parent_in = p
            .ppid
            .is_some_and(|pp| self.pids.contains(&pp) || self.tree.contains(&pp));
        if self.follow && parent_in {
            self.adopt(p.pid);
            return true;
        }
        false
    }

    /// Notes a completed call of a traced process: with `follow`, a new child (the return
    /// value of fork, vfork, clone, clone3) joins the tree before it makes its first call.
    pub fn observe(&mut self, call: &Syscall) {
        let p = &call.process;
        let member = self.pids.contains(&p.pid)
            || self.tree.contains(&p.pid)
            || self.comms.contains(&p.name);
        if !self.follow || self.is_all() || !member {
            return;
        }
        if matches!(call.name.as_str(), "fork" | "vfork" | "clone" | "clone3") {
            if let Some(r) = &call.ret {
                if r.value > 0 {
                    self.adopt(r.value as u64);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_(pid: u64, ppid: u64, name: &str) -> Process {
        Process {
            pid,
            tid: pid,
            ppid: Some(ppid),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn sets_names_classes_negation() {
        let s = SyscallSet::parse("openat,%network").unwrap();
        assert!(s.matches("openat") && s.matches("socket") && s.matches("connect"));
        assert!(!s.matches("read") && !s.is_all() && !s.is_none());
        let f = SyscallSet::parse("%file").unwrap();
        assert!(f.matches("openat") && f.matches("execve") && !f.matches("read"));
        let p = SyscallSet::parse("%process").unwrap();
        assert!(p.matches("clone") && p.matches("exit_group") && !p.matches("openat"));
        let n = SyscallSet::parse("!read,write").unwrap();
        assert!(!n.matches("read") && !n.matches("write") && n.matches("openat"));
        assert!(SyscallSet::parse("none").unwrap().is_none());
        assert!(SyscallSet::parse("all").unwrap().is_all());
        assert!(SyscallSet::parse("!none").unwrap().is_all());
        assert!(SyscallSet::parse("%bogus").is_err());
        assert!(SyscallSet::parse("").is_err());
    }

    #[test]
    fn scope_for_planning() {
        let table: Vec<(u64, String)> = vec![
            (0, "read".into()),
            (1, "write".into()),
            (257, "openat".into()),
            (41, "socket".into()),
        ];
        let t = SyscallSet::parse("openat").unwrap();
        let i = SyscallSet::parse("%network").unwrap();
        let scope = SyscallSet::scope_of(&[&t, &i], &table);
        assert_eq!(scope.syscalls, Some(vec!["openat".into(), "socket".into()]));
        assert!(SyscallSet::scope_of(&[&SyscallSet::none()], &table).is_none());
        assert_eq!(
            SyscallSet::scope_of(&[&t, &SyscallSet::all()], &table),
            TraceScope::all()
        );
        let neg = SyscallSet::parse("!read,write").unwrap();
        let s = SyscallSet::scope_of(&[&neg], &table);
        assert_eq!(s.syscalls, Some(vec!["openat".into(), "socket".into()]));
    }

    #[test]
    fn pid_comm_and_follow() {
        let mut f = ProcessFilter::default().with_pids([10]);
        assert!(f.selects(&proc_(10, 1, "sh")));
        assert!(!f.selects(&proc_(11, 10, "cat")), "children need -f");
        f.follow = true;
        assert!(f.selects(&proc_(11, 10, "cat")));
        assert!(
            f.selects(&proc_(12, 11, "grep")),
            "grandchildren follow too"
        );
        assert!(!f.selects(&proc_(13, 1, "other")));

        let mut c = ProcessFilter::default().with_comms(["cat"]);
        assert!(c.selects(&proc_(20, 1, "cat")) && !c.selects(&proc_(21, 1, "sh")));

        let mut t = ProcessFilter::default()
            .waiting_for_trigger()
            .following(true);
        assert!(!t.selects(&proc_(30, 1, "sh")));
        t.adopt(30);
        assert!(t.selects(&proc_(30, 1, "sh")) && t.selects(&proc_(31, 30, "x")));
        assert!(ProcessFilter::default().selects(&proc_(1, 0, "init")));
        // A fork by an untraced process adopts nothing.
        let fork = |pid, ret| Syscall {
            vcpu: 0,
            direction: nitro_listener::Direction::Exit,
            kind: nitro_listener::SyscallKind::Syscall64,
            cr3: 0,
            rax: 0,
            nr: 56,
            name: "clone".into(),
            process: proc_(pid, 1, "x"),
            args: vec![],
            raw_args: [0; 6],
            ret: Some(nitro_os::ReturnValue::plain(ret)),
            enter_time: std::time::SystemTime::UNIX_EPOCH,
            exit_time: None,
            strategy: nitro_listener::Strategy::Watchpoint,
            unfinished: false,
            note: None,
            task_key: 0,
        };
        t.observe(&fork(99, 100));
        assert!(!t.selects(&proc_(100, 99, "y")));
        t.observe(&fork(30, 101));
        assert!(
            t.selects(&proc_(101, 77, "y")),
            "a traced process's child joins"
        );
    }
}
