//! Hooks: user code run at a call's entry or exit that may look, attach data, and change
//! the call (arguments, return value, or not running it at all).

use std::collections::HashMap;

use nitro_listener::{Direction, Regs};
use nitro_mem::{AddressSpace, MemError, PagingMode, PhysAddr, PhysMemory, VirtAddr, VirtRead};
use nitro_os::{Arg, Process, Syscall};
use serde_json::{Map, Value};

/// What a hook returns: an error is counted in [`crate::TraceStats::hook_errors`] and never
/// stops tracing.
pub type HookResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A hook.
pub type Hook = Box<dyn FnMut(&mut HookCtx<'_>) -> HookResult + Send>;

/// What a hook sees of a call and may change. Reads and writes of guest memory go through
/// the calling process's address space.
pub struct HookCtx<'a> {
    pub(crate) call: &'a Syscall,
    pub(crate) regs: &'a Regs,
    pub(crate) mem: &'a dyn PhysMemory,
    pub(crate) data: &'a mut Map<String, Value>,
    pub(crate) args: Vec<(usize, u64)>,
    pub(crate) skip: Option<i64>,
    pub(crate) ret: Option<i64>,
}

impl std::fmt::Debug for HookCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookCtx")
            .field("name", &self.call.name)
            .field("direction", &self.call.direction)
            .finish()
    }
}

impl<'a> HookCtx<'a> {
    /// A context over `call` stopped with `regs` (used by [`crate::Nitro`]; public for tests
    /// of hooks without a guest).
    pub fn new(
        call: &'a Syscall,
        regs: &'a Regs,
        mem: &'a dyn PhysMemory,
        data: &'a mut Map<String, Value>,
    ) -> Self {
        HookCtx {
            call,
            regs,
            mem,
            data,
            args: Vec::new(),
            skip: None,
            ret: None,
        }
    }

    /// The whole record as decoded so far.
    pub fn call(&self) -> &Syscall {
        self.call
    }
    /// Syscall name.
    pub fn name(&self) -> &str {
        &self.call.name
    }
    /// Syscall number.
    pub fn nr(&self) -> u64 {
        self.call.nr
    }
    /// Entry or exit.
    pub fn direction(&self) -> Direction {
        self.call.direction
    }
    /// Who made the call.
    pub fn process(&self) -> &Process {
        &self.call.process
    }
    /// Decoded arguments.
    pub fn args(&self) -> &[Arg] {
        &self.call.args
    }
    /// Raw argument values.
    pub fn raw_args(&self) -> [u64; 6] {
        self.call.raw_args
    }
    /// The return value (at the exit; `None` at the entry).
    pub fn ret(&self) -> Option<i64> {
        self.call.ret.as_ref().map(|r| r.value)
    }
    /// Registers at the stop.
    pub fn regs(&self) -> &Regs {
        self.regs
    }

    /// Attaches `value` under `key` to the record's `hook` object.
    pub fn attach(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.data.insert(key.into(), value.into());
    }

    /// Changes argument `index` (0-based) to `value`, at the entry.
    pub fn set_arg(&mut self, index: usize, value: u64) {
        self.args.retain(|(i, _)| *i != index);
        self.args.push((index, value));
    }

    /// Does not run the call (at the entry); it returns `ret` (e.g. `-13` for EACCES).
    pub fn skip(&mut self, ret: i64) {
        self.skip = Some(ret);
    }

    /// Makes the call return `ret` (at the exit).
    pub fn set_return(&mut self, ret: i64) {
        self.ret = Some(ret);
    }

    fn space(&self) -> AddressSpace<&dyn PhysMemory> {
        AddressSpace::with_mode(
            self.mem,
            PhysAddr(self.regs.cr3),
            PagingMode::from_cr4(self.regs.cr4),
        )
    }

    /// Reads guest memory of the calling process.
    pub fn read_virt(&self, va: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.space().read_virt(VirtAddr(va), buf)
    }

    /// Reads a NUL-terminated string of at most `max` bytes.
    pub fn read_cstring(&self, va: u64, max: usize) -> Result<Vec<u8>, MemError> {
        VirtRead::read_cstring(&self.space(), VirtAddr(va), max)
    }

    /// Writes guest memory of the calling process (page protections are not checked: write
    /// only to memory the process owns privately, such as its stack).
    pub fn write_virt(&self, va: u64, buf: &[u8]) -> Result<(), MemError> {
        self.space().write_virt(VirtAddr(va), buf)
    }
}

/// Hooks by direction and name (`None` = every call).
#[derive(Default)]
pub(crate) struct Hooks {
    enter: HashMap<Option<String>, Vec<Hook>>,
    exit: HashMap<Option<String>, Vec<Hook>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("enter", &self.enter.keys().collect::<Vec<_>>())
            .field("exit", &self.exit.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Hooks {
    pub(crate) fn add(&mut self, dir: Direction, name: Option<String>, hook: Hook) {
        let map = match dir {
            Direction::Enter => &mut self.enter,
            Direction::Exit => &mut self.exit,
        };
        map.entry(name).or_default().push(hook);
    }

    /// Names with hooks, or None when a catch-all hook exists (every call is wanted).
    pub(crate) fn names(&self) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for map in [&self.enter, &self.exit] {
            for k in map.keys() {
                match k {
                    None => return None,
                    Some(n) => out.push(n.clone()),
                }
            }
        }
        Some(out)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.enter.is_empty() && self.exit.is_empty()
    }

    pub(crate) fn has_exit_hook(&self, name: &str) -> bool {
        self.exit.contains_key(&None) || self.exit.contains_key(&Some(name.to_string()))
    }

    /// Runs the hooks for `ctx` (named ones first, then catch-alls); returns the errors.
    pub(crate) fn run(&mut self, ctx: &mut HookCtx<'_>) -> u64 {
        let map = match ctx.call.direction {
            Direction::Enter => &mut self.enter,
            Direction::Exit => &mut self.exit,
        };
        let mut errors = 0;
        for key in [Some(ctx.call.name.clone()), None] {
            let Some(list) = map.get_mut(&key) else {
                continue;
            };
            for h in list {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(ctx)));
                if !matches!(r, Ok(Ok(()))) {
                    errors += 1;
                }
            }
        }
        errors
    }
}
