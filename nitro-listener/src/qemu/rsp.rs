//! A GDB remote serial protocol client, as much of it as tracing needs.
//!
//! Reference: the GDB manual, appendix E "GDB Remote Serial Protocol" (packets `$data#cs`,
//! `+`/`-` acknowledgements, `\x03` interrupt, stop replies `T`/`S`/`W`/`X`).
//! QEMU 7.2 has no no-ack mode, and any byte sent while the guest runs stops it, so this
//! client sends an acknowledgement only for packets that arrive while the guest is stopped
//! (every packet does: replies to requests, and stop replies).

use std::{
    io::{BufReader, Read, Write},
    net::TcpStream,
    os::{fd::AsRawFd, unix::net::UnixStream},
    time::Duration,
};

use crate::{ListenerError, Result};

/// How long a read polls before it sleeps (see [`RspClient::set_spin`]). A stop costs the
/// tracer a wake-up when it sleeps: on the development machine (QEMU 7.2 TCG, 2 cores)
/// tracing every call of a `dd` ran at 2,465 calls/s without polling, 2,806 with 20 us,
/// 3,608 with 50 us, 3,836 with 100 us and 3,691 with 200 us (`--bench qemu_trace`).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(100);

/// Endpoints that start with this are Unix-domain socket paths (`unix:/run/x/gdb.sock`);
/// others are `host:port`.
pub const UNIX_PREFIX: &str = "unix:";

/// The connection to the stub: loopback TCP or a Unix-domain socket. nitro starts its own
/// QEMU with a Unix socket: a round trip over it costs about 12 us less than over loopback
/// TCP (45.6-53.5 us against 58.0-64.3 us for a `g` request to QEMU 7.2, measured here).
#[derive(Debug)]
pub enum GdbStream {
    /// `host:port`.
    Tcp(TcpStream),
    /// A Unix-domain stream socket.
    Unix(UnixStream),
}

impl GdbStream {
    /// Connects to `endpoint` once (`unix:PATH` or `host:port`).
    pub fn connect(endpoint: &str) -> std::io::Result<Self> {
        match endpoint.strip_prefix(UNIX_PREFIX) {
            Some(path) => UnixStream::connect(path).map(GdbStream::Unix),
            None => {
                let s = TcpStream::connect(endpoint)?;
                s.set_nodelay(true)?;
                Ok(GdbStream::Tcp(s))
            }
        }
    }

    /// A second handle on the same connection.
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(match self {
            GdbStream::Tcp(s) => GdbStream::Tcp(s.try_clone()?),
            GdbStream::Unix(s) => GdbStream::Unix(s.try_clone()?),
        })
    }

    /// Sets the read timeout (None = block).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            GdbStream::Tcp(s) => s.set_read_timeout(t),
            GdbStream::Unix(s) => s.set_read_timeout(t),
        }
    }
}

impl AsRawFd for GdbStream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            GdbStream::Tcp(s) => s.as_raw_fd(),
            GdbStream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl Read for GdbStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            GdbStream::Tcp(s) => s.read(buf),
            GdbStream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for GdbStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            GdbStream::Tcp(s) => s.write(buf),
            GdbStream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A connection to a gdbstub.
///
/// Two ways to talk: [`RspClient::request`] (send, wait for the `+`, read the reply, acknowledge
/// it at once) for set-up, and the fast path of tracing, [`RspClient::write_packets`] plus
/// [`RspClient::recv_into`], where the acknowledgement of a received packet is deferred and
/// sent in the same write as the next request (`+$g#67`), and several requests go out in one
/// write. QEMU's system-mode gdbstub does not wait for acknowledgements before going on
/// (QEMU 7.2 `gdbstub/gdbstub.c`, `put_packet_binary` only waits in user mode), so deferring
/// them costs nothing and halves the writes.
#[derive(Debug)]
pub struct RspClient {
    endpoint: String,
    reader: BufReader<GdbStream>,
    writer: GdbStream,
    out: Vec<u8>,
    /// A received packet is not acknowledged yet: the next write starts with `+`.
    ack_pending: bool,
    /// Packets received.
    pub packets_received: u64,
    /// Packets sent.
    pub packets_sent: u64,
    /// Times the client waited for the reply to a request (pipelined requests count once).
    pub round_trips: u64,
    /// How long a read polls (yielding the CPU) before it blocks.
    spin: Duration,
}

fn checksum(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl RspClient {
    /// Connects to `endpoint` (`host:port`, or `unix:PATH` for a Unix-domain socket),
    /// retrying for up to `wait`.
    pub fn connect(endpoint: &str, wait: Duration) -> Result<Self> {
        let start = std::time::Instant::now();
        let stream = loop {
            match GdbStream::connect(endpoint) {
                Ok(s) => break s,
                Err(e) if start.elapsed() >= wait => {
                    return Err(ListenerError::Io {
                        endpoint: endpoint.into(),
                        source: e,
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let io = |source| ListenerError::Io {
            endpoint: endpoint.into(),
            source,
        };
        let writer = stream.try_clone().map_err(io)?;
        Ok(RspClient {
            endpoint: endpoint.into(),
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer,
            out: Vec::with_capacity(512),
            ack_pending: false,
            packets_received: 0,
            packets_sent: 0,
            round_trips: 0,
            spin: DEFAULT_SPIN,
        })
    }

    /// The connection's socket (for a [`super::guard::Guardian`] to hold).
    pub fn socket_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.writer.as_raw_fd()
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn io(&self, source: std::io::Error) -> ListenerError {
        if matches!(
            source.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
        ) {
            return ListenerError::GuestGone(format!("gdbstub at {} closed", self.endpoint));
        }
        ListenerError::Io {
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    /// Sets a read timeout (None = block).
    pub fn set_timeout(&mut self, t: Option<Duration>) -> Result<()> {
        self.reader
            .get_ref()
            .set_read_timeout(t)
            .map_err(|e| self.io(e))
    }

    /// How long a read polls for the stub's reply (yielding the CPU between polls) before
    /// it sleeps in the kernel; zero sleeps at once. Default [`DEFAULT_SPIN`].
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Polls (yielding between polls) for up to the spin time; true when a read would not
    /// block.
    pub fn spin_until_readable(&mut self) -> Result<bool> {
        if self.spin.is_zero() {
            return Ok(!self.reader.buffer().is_empty());
        }
        let start = std::time::Instant::now();
        loop {
            if self.wait_readable(Duration::ZERO)? {
                return Ok(true);
            }
            if start.elapsed() >= self.spin {
                return Ok(false);
            }
            std::thread::yield_now();
        }
    }

    /// Waits up to `timeout` for something to read; true when a read would not block.
    pub fn wait_readable(&mut self, timeout: Duration) -> Result<bool> {
        if !self.reader.buffer().is_empty() {
            return Ok(true);
        }
        let mut fd = libc::pollfd {
            fd: self.reader.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fd` is one valid pollfd that lives across the call; nfds is 1.
        let n = unsafe { libc::poll(&mut fd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(self.io(e));
        }
        Ok(n > 0)
    }

    fn frame(out: &mut Vec<u8>, data: &[u8]) {
        out.push(b'$');
        out.extend_from_slice(data);
        out.push(b'#');
        let cs = checksum(data);
        out.push(HEX[usize::from(cs >> 4)]);
        out.push(HEX[usize::from(cs & 15)]);
    }

    /// Sends raw bytes (used for the interrupt byte).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.write_all(bytes).map_err(|e| self.io(e))
    }

    /// Sends `packets` in one write, preceded by the deferred acknowledgement if one is
    /// pending. Does not wait for the stub's `+` (the readers skip it).
    pub fn write_packets(&mut self, packets: &[&[u8]]) -> Result<()> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        if self.ack_pending {
            out.push(b'+');
            self.ack_pending = false;
        }
        for p in packets {
            Self::frame(&mut out, p);
        }
        let r = self.writer.write_all(&out).map_err(|e| self.io(e));
        self.packets_sent += packets.len() as u64;
        self.out = out;
        r
    }

    /// Sends one packet and waits for its acknowledgement (retransmits on `-`).
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        if self.ack_pending {
            out.push(b'+');
            self.ack_pending = false;
        }
        let start = out.len();
        Self::frame(&mut out, data);
        let r = (|| {
            for attempt in 0..3 {
                let bytes = if attempt == 0 {
                    &out[..]
                } else {
                    &out[start..]
                };
                self.writer.write_all(bytes).map_err(|e| self.io(e))?;
                self.packets_sent += 1;
                let mut b = self.read_byte()?;
                while b == b'$' {
                    // A packet the stub sent on its own before seeing this request (the stop
                    // reply QEMU sends when a debugger connects to a running guest):
                    // acknowledge and drop it, then wait for the acknowledgement.
                    self.skip_packet_body()?;
                    self.send_raw(b"+")?;
                    b = self.read_byte()?;
                }
                match b {
                    b'+' => return Ok(()),
                    b'-' => continue,
                    other => {
                        return Err(ListenerError::Protocol {
                            endpoint: self.endpoint.clone(),
                            request: String::from_utf8_lossy(data).into(),
                            reply: format!("byte {other:#04x} instead of an acknowledgement"),
                        })
                    }
                }
            }
            Err(ListenerError::Protocol {
                endpoint: self.endpoint.clone(),
                request: String::from_utf8_lossy(data).into(),
                reply: "three negative acknowledgements".into(),
            })
        })();
        self.out = out;
        r
    }

    /// Reads the rest of a packet whose `$` was read: payload, `#` and checksum.
    fn skip_packet_body(&mut self) -> Result<()> {
        let mut n = 0usize;
        while self.read_byte()? != b'#' {
            n += 1;
            if n > 1 << 20 {
                return Err(ListenerError::Protocol {
                    endpoint: self.endpoint.clone(),
                    request: String::new(),
                    reply: "packet longer than 1 MiB".into(),
                });
            }
        }
        let mut cs = [0u8; 2];
        self.reader.read_exact(&mut cs).map_err(|e| self.io(e))
    }

    fn read_byte(&mut self) -> Result<u8> {
        if self.reader.buffer().is_empty() {
            self.spin_until_readable()?;
        }
        let mut b = [0u8; 1];
        self.reader.read_exact(&mut b).map_err(|e| self.io(e))?;
        Ok(b[0])
    }

    /// Receives one packet into `buf` (run-length encoding expanded), skipping stray
    /// acknowledgements. The acknowledgement is deferred to the next write (see
    /// [`RspClient::write_packets`]); call [`RspClient::flush_ack`] to send it alone.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        buf.clear();
        loop {
            let b = self.read_byte()?;
            if b != b'$' {
                continue; // '+', '-' or noise between packets
            }
            buf.clear();
            let mut sum = 0u8;
            loop {
                let c = self.read_byte()?;
                if c == b'#' {
                    break;
                }
                sum = sum.wrapping_add(c);
                if c == b'*' && !buf.is_empty() {
                    // Run-length encoding: the next byte says how often the previous one
                    // repeats (count = byte - 29).
                    let n = self.read_byte()?;
                    sum = sum.wrapping_add(n);
                    let prev = buf.last().copied().unwrap_or(b'0');
                    let reps = usize::from(n.saturating_sub(29));
                    buf.extend(std::iter::repeat_n(prev, reps));
                } else {
                    buf.push(c);
                }
                if buf.len() > 1 << 20 {
                    return Err(ListenerError::Protocol {
                        endpoint: self.endpoint.clone(),
                        request: String::new(),
                        reply: "packet longer than 1 MiB".into(),
                    });
                }
            }
            let mut cs = [0u8; 2];
            self.reader.read_exact(&mut cs).map_err(|e| self.io(e))?;
            let ok = std::str::from_utf8(&cs)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .is_some_and(|v| v == sum);
            if !ok {
                self.send_raw(b"-")?;
                continue;
            }
            self.ack_pending = true;
            self.packets_received += 1;
            return Ok(());
        }
    }

    /// Sends a pending acknowledgement now (before the stub may run on its own).
    pub fn flush_ack(&mut self) -> Result<()> {
        if self.ack_pending {
            self.ack_pending = false;
            self.send_raw(b"+")?;
        }
        Ok(())
    }

    /// Receives one packet, acknowledges it and returns its payload with run-length encoding
    /// expanded.
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(1024);
        self.recv_into(&mut buf)?;
        self.flush_ack()?;
        Ok(buf)
    }

    /// Sends a request and returns its reply.
    pub fn request(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.send(data)?;
        self.round_trips += 1;
        self.recv()
    }

    /// Sends a request that must be answered `OK`.
    pub fn request_ok(&mut self, data: &[u8]) -> Result<()> {
        let reply = self.request(data)?;
        if reply == b"OK" {
            Ok(())
        } else {
            Err(self.protocol(data, &reply))
        }
    }

    /// A protocol error for `request` answered by `reply`.
    pub fn protocol(&self, request: &[u8], reply: &[u8]) -> ListenerError {
        let mut r = String::from_utf8_lossy(reply).into_owned();
        r.truncate(120);
        ListenerError::Protocol {
            endpoint: self.endpoint.clone(),
            request: String::from_utf8_lossy(request).into(),
            reply: r,
        }
    }
}

/// Decodes hex pairs into bytes; None on malformed input.
pub fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
        })
        .collect()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex pairs into `out` without allocating; returns the bytes written, or None on
/// malformed input. Decodes at most `out.len()` bytes.
pub fn decode_hex_into(hex: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut n = 0;
    for (pair, slot) in hex.chunks_exact(2).zip(out.iter_mut()) {
        let (hi, lo) = (hex_val(pair[0])?, hex_val(pair[1])?);
        *slot = hi << 4 | lo;
        n += 1;
    }
    Some(n)
}

/// A parsed stop reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReply {
    /// `T`/`S`: the target stopped with a signal.
    Stopped {
        /// Signal number (5 = SIGTRAP, 2 = SIGINT).
        signal: u8,
        /// Thread id (QEMU: vCPU index + 1).
        thread: Option<u64>,
        /// Data address reported for a watchpoint stop.
        watch_addr: Option<u64>,
    },
    /// `W`/`X`: the target exited.
    Exited {
        /// Exit status or signal.
        code: u8,
    },
}

/// Parses a stop reply packet.
pub fn parse_stop(p: &[u8]) -> Option<StopReply> {
    let kind = *p.first()?;
    let num = p
        .get(1..3)
        .and_then(decode_hex)
        .and_then(|v| v.first().copied());
    match kind {
        b'W' | b'X' => Some(StopReply::Exited {
            code: num.unwrap_or(0),
        }),
        b'S' => Some(StopReply::Stopped {
            signal: num?,
            thread: None,
            watch_addr: None,
        }),
        b'T' => {
            let mut thread = None;
            let mut watch_addr = None;
            for field in p.get(3..)?.split(|&b| b == b';') {
                let mut kv = field.splitn(2, |&b| b == b':');
                let (Some(k), Some(v)) = (kv.next(), kv.next()) else {
                    continue;
                };
                let v = std::str::from_utf8(v).ok()?;
                match k {
                    b"thread" => {
                        // "p1.2" (multiprocess) or "2"
                        let t = v.rsplit('.').next().unwrap_or(v).trim_start_matches('p');
                        thread = u64::from_str_radix(t, 16).ok();
                    }
                    b"watch" | b"rwatch" | b"awatch" => {
                        watch_addr = u64::from_str_radix(v, 16).ok()
                    }
                    _ => {}
                }
            }
            Some(StopReply::Stopped {
                signal: num?,
                thread,
                watch_addr,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_rle() {
        assert_eq!(checksum(b"g"), 0x67);
        assert_eq!(decode_hex(b"0a1B"), Some(vec![0x0a, 0x1b]));
        assert_eq!(decode_hex(b"0g"), None);
        let mut out = [0u8; 2];
        assert_eq!(decode_hex_into(b"0a1B2c", &mut out), Some(2));
        assert_eq!(out, [0x0a, 0x1b]);
        assert_eq!(decode_hex_into(b"zz", &mut out), None);
    }

    /// A client talking to a loopback "stub" that sends `script` and records what it gets.
    fn loopback(script: &'static [u8]) -> (RspClient, std::thread::JoinHandle<Vec<u8>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let stub = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(script).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            got
        });
        (
            RspClient::connect(&addr, Duration::from_secs(5)).unwrap(),
            stub,
        )
    }

    #[test]
    fn deferred_ack_rides_with_the_next_request() {
        // "0* " is RLE for "0000" (' ' = 32: 3 more); its checksum covers the raw bytes.
        let raw = b"0* ";
        let pkt = format!(
            "+$0* #{:02x}$T05thread:02;#{:02x}",
            checksum(raw),
            checksum(b"T05thread:02;")
        );
        let (mut c, stub) = loopback(Box::leak(pkt.into_bytes().into_boxed_slice()));
        let mut buf = Vec::new();
        c.recv_into(&mut buf).unwrap();
        assert_eq!(buf, b"0000");
        c.write_packets(&[b"g", b"c"]).unwrap();
        c.recv_into(&mut buf).unwrap();
        assert_eq!(
            parse_stop(&buf).and_then(|s| match s {
                StopReply::Stopped { thread, .. } => thread,
                _ => None,
            }),
            Some(2)
        );
        c.flush_ack().unwrap();
        drop(c);
        assert_eq!(stub.join().unwrap(), b"+$g#67$c#63+");
    }

    #[test]
    fn stop_replies() {
        assert_eq!(
            parse_stop(b"T05thread:02;rwatch:ffff88800f806014;"),
            Some(StopReply::Stopped {
                signal: 5,
                thread: Some(2),
                watch_addr: Some(0xffff88800f806014)
            })
        );
        assert_eq!(
            parse_stop(b"T02thread:p01.01;"),
            Some(StopReply::Stopped {
                signal: 2,
                thread: Some(1),
                watch_addr: None
            })
        );
        assert_eq!(parse_stop(b"W00"), Some(StopReply::Exited { code: 0 }));
        assert_eq!(parse_stop(b"E01"), None);
        assert_eq!(parse_stop(b"T"), None);
    }
}
