//! Port I/O of synthetic guests: how `in`/`out` exits are answered.

use std::sync::Mutex;

/// What a vCPU does after an `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortAction {
    /// Run on.
    Continue,
    /// Return [`super::VcpuStop::PortOut`] from [`super::KvmVcpu::run`] (the driver runs on).
    Stop,
    /// The guest asked to power off or reset: the vCPU ends as if it had halted.
    EndGuest,
}

/// Answers a vCPU's port I/O. Called on the vCPU's own thread, so it must be quick.
pub trait PortIo: Send + Sync + std::fmt::Debug {
    /// An `out` of `data` to `port`.
    fn out(&self, vcpu: u32, port: u16, data: &[u8]) -> PortAction;

    /// An `in` from `port`: fill `data`. Default: all ones, as from an absent device.
    fn input(&self, _vcpu: u32, _port: u16, data: &mut [u8]) {
        data.fill(0xff);
    }
}

/// Ignores every `out`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPorts;

impl PortIo for NoPorts {
    fn out(&self, _vcpu: u32, _port: u16, _data: &[u8]) -> PortAction {
        PortAction::Continue
    }
}

/// One recorded `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortWrite {
    /// vCPU that wrote.
    pub vcpu: u32,
    /// Port.
    pub port: u16,
    /// Value (little-endian, up to 8 bytes).
    pub value: u64,
}

/// Records `out`s (at most `limit`, later ones are counted but dropped) and stops on one
/// chosen port.
#[derive(Debug)]
pub struct PortLog {
    limit: usize,
    stop_port: Option<u16>,
    inner: Mutex<(Vec<PortWrite>, u64)>,
}

impl PortLog {
    /// A log keeping at most `limit` writes.
    pub fn new(limit: usize) -> Self {
        PortLog {
            limit,
            stop_port: None,
            inner: Mutex::new((Vec::new(), 0)),
        }
    }

    /// Also stop the vCPU on every `out` to `port`.
    pub fn stop_on(mut self, port: u16) -> Self {
        self.stop_port = Some(port);
        self
    }

    /// The writes kept so far.
    pub fn writes(&self) -> Vec<PortWrite> {
        self.inner.lock().map(|g| g.0.clone()).unwrap_or_default()
    }

    /// Number of writes seen (kept or not).
    pub fn count(&self) -> u64 {
        self.inner.lock().map(|g| g.1).unwrap_or(0)
    }
}

impl PortIo for PortLog {
    fn out(&self, vcpu: u32, port: u16, data: &[u8]) -> PortAction {
        let mut v = [0u8; 8];
        let n = data.len().min(8);
        v[..n].copy_from_slice(&data[..n]);
        if let Ok(mut g) = self.inner.lock() {
            g.1 += 1;
            if g.0.len() < self.limit {
                g.0.push(PortWrite {
                    vcpu,
                    port,
                    value: u64::from_le_bytes(v),
                });
            }
        }
        if self.stop_port == Some(port) {
            PortAction::Stop
        } else {
            PortAction::Continue
        }
    }
}
