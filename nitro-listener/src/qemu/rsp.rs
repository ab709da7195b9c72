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
    time::Duration,
};

use crate::{ListenerError, Result};

/// A connection to a gdbstub.
#[derive(Debug)]
pub struct RspClient {
    endpoint: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    out: Vec<u8>,
    /// Packets sent and received, for statistics.
    pub round_trips: u64,
}

fn checksum(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

impl RspClient {
    /// Connects to `endpoint` (`host:port`), retrying for up to `wait`.
    pub fn connect(endpoint: &str, wait: Duration) -> Result<Self> {
        let start = std::time::Instant::now();
        let stream = loop {
            match TcpStream::connect(endpoint) {
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
        stream.set_nodelay(true).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        Ok(RspClient {
            endpoint: endpoint.into(),
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer,
            out: Vec::with_capacity(256),
            round_trips: 0,
        })
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

    fn frame(out: &mut Vec<u8>, data: &[u8]) {
        out.push(b'$');
        out.extend_from_slice(data);
        out.push(b'#');
        let cs = checksum(data);
        out.extend_from_slice(format!("{cs:02x}").as_bytes());
    }

    /// Sends raw bytes (used for the interrupt byte and pipelined packets).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.write_all(bytes).map_err(|e| self.io(e))
    }

    /// Sends one packet and waits for its acknowledgement (retransmits on `-`).
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        Self::frame(&mut out, data);
        let r = (|| {
            for _ in 0..3 {
                self.writer.write_all(&out).map_err(|e| self.io(e))?;
                match self.read_byte()? {
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

    fn read_byte(&mut self) -> Result<u8> {
        let mut b = [0u8; 1];
        self.reader.read_exact(&mut b).map_err(|e| self.io(e))?;
        Ok(b[0])
    }

    /// Receives one packet (skipping stray acknowledgements), acknowledges it and returns its
    /// payload with run-length encoding expanded.
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        loop {
            let b = self.read_byte()?;
            if b != b'$' {
                continue; // '+', '-' or noise between packets
            }
            let mut raw = Vec::with_capacity(1024);
            loop {
                let c = self.read_byte()?;
                if c == b'#' {
                    break;
                }
                raw.push(c);
                if raw.len() > 1 << 20 {
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
                .is_some_and(|v| v == checksum(&raw));
            if !ok {
                self.send_raw(b"-")?;
                continue;
            }
            self.send_raw(b"+")?;
            self.round_trips += 1;
            return Ok(expand_rle(&raw));
        }
    }

    /// Sends a request and returns its reply.
    pub fn request(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.send(data)?;
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

/// Expands the protocol's run-length encoding (`X*n` repeats X n-29 more times).
fn expand_rle(raw: &[u8]) -> Vec<u8> {
    if !raw.contains(&b'*') {
        return raw.to_vec();
    }
    let mut out = Vec::with_capacity(raw.len() * 2);
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'*' && i + 1 < raw.len() {
            if let Some(&prev) = out.last() {
                let n = raw[i + 1].saturating_sub(29) as usize;
                out.extend(std::iter::repeat_n(prev, n));
            }
            i += 2;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
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
        assert_eq!(expand_rle(b"0* "), b"0000"); // ' ' = 32 -> 3 more
        assert_eq!(decode_hex(b"0a1B"), Some(vec![0x0a, 0x1b]));
        assert_eq!(decode_hex(b"0g"), None);
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
