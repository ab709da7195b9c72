//! Finding the gdbstub and the QEMU process of a libvirt domain (see README-attach.md for
//! the domain XML a user adds). The XML parsing is plain text and always built; the libvirt
//! lookup needs the `libvirt` cargo feature (the `virt` crate, which links libvirt).

#[cfg(feature = "libvirt")]
use crate::{ListenerError, Result};

/// The values of the `<qemu:arg value='...'/>` elements of a domain XML, in order
/// (libvirt's QEMU namespace, <https://libvirt.org/drvqemu.html#pass-through-of-arbitrary-qemu-commands>).
pub fn qemu_args(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<qemu:arg") {
        rest = &rest[i + "<qemu:arg".len()..];
        let Some(end) = rest.find('>') else { break };
        let tag = &rest[..end];
        if let Some(v) = attr(tag, "value") {
            out.push(unescape(v));
        }
        rest = &rest[end..];
    }
    out
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let i = tag.find(&format!("{name}="))?;
    let rest = &tag[i + name.len() + 1..];
    let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &rest[1..];
    body.find(quote).map(|j| &body[..j])
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The gdbstub endpoint a domain passes to QEMU: `-gdb tcp:HOST:PORT` (`tcp::PORT` means
/// all interfaces, reached here on loopback), `-s` (`tcp::1234`), or `-gdb unix:PATH,...`
/// (given back as `unix:PATH`, see [`super::rsp::UNIX_PREFIX`]).
pub fn gdb_endpoint(xml: &str) -> Option<String> {
    let args = qemu_args(xml);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-s" {
            return Some("127.0.0.1:1234".into());
        }
        if a == "-gdb" {
            let spec = it.next()?;
            if let Some(path) = spec.strip_prefix(super::rsp::UNIX_PREFIX) {
                let path = path.split(',').next()?;
                return (!path.is_empty()).then(|| format!("{}{path}", super::rsp::UNIX_PREFIX));
            }
            let addr = spec.strip_prefix("tcp:")?;
            let addr = addr.split(',').next()?;
            let (host, port) = addr.rsplit_once(':')?;
            port.parse::<u16>().ok()?;
            let host = if host.is_empty() { "127.0.0.1" } else { host };
            return Some(format!("{host}:{port}"));
        }
    }
    None
}

/// What attaching to a libvirt domain needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainTarget {
    /// The domain's name.
    pub name: String,
    /// Its gdbstub, from the `-gdb` argument in its XML.
    pub gdb_endpoint: String,
    /// Its QEMU process (from libvirt's pid file), for `/proc/PID/mem`.
    pub qemu_pid: Option<u32>,
}

/// Looks up a running domain through libvirt (`uri` None = libvirt's default,
/// `qemu:///system` for root).
#[cfg(feature = "libvirt")]
pub fn lookup_domain(uri: Option<&str>, name: &str) -> Result<DomainTarget> {
    use virt::{connect::Connect, domain::Domain};
    let lv = |why: String| ListenerError::Launch {
        program: "libvirt".into(),
        why,
    };
    let conn = Connect::open(uri).map_err(|e| lv(format!("cannot connect: {e}")))?;
    let dom = Domain::lookup_by_name(&conn, name).map_err(|e| lv(format!("domain {name}: {e}")))?;
    if !dom.is_active().unwrap_or(false) {
        return Err(lv(format!("domain {name} is not running")));
    }
    let xml = dom
        .get_xml_desc(0)
        .map_err(|e| lv(format!("domain {name} XML: {e}")))?;
    let gdb_endpoint = gdb_endpoint(&xml).ok_or_else(|| {
        lv(format!(
            "domain {name} has no gdbstub: add <qemu:commandline> with -gdb tcp:127.0.0.1:PORT \
             (see README-attach.md)"
        ))
    })?;
    // libvirt's QEMU driver keeps the process id in <state dir>/NAME.pid
    // (/run/libvirt/qemu for qemu:///system).
    let qemu_pid = ["/run/libvirt/qemu", "/var/run/libvirt/qemu"]
        .iter()
        .find_map(|d| std::fs::read_to_string(format!("{d}/{name}.pid")).ok())
        .and_then(|s| s.trim().parse().ok());
    Ok(DomainTarget {
        name: name.to_string(),
        gdb_endpoint,
        qemu_pid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdbstub_from_domain_xml() {
        let xml = r#"<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>t</name>
  <qemu:commandline>
    <qemu:arg value='-gdb'/>
    <qemu:arg value='tcp:127.0.0.1:4321'/>
  </qemu:commandline>
</domain>"#;
        assert_eq!(qemu_args(xml), vec!["-gdb", "tcp:127.0.0.1:4321"]);
        assert_eq!(gdb_endpoint(xml).as_deref(), Some("127.0.0.1:4321"));
        let s = r#"<qemu:commandline><qemu:arg value="-s"/></qemu:commandline>"#;
        assert_eq!(gdb_endpoint(s).as_deref(), Some("127.0.0.1:1234"));
        let any = "<qemu:arg value='-gdb'/><qemu:arg value='tcp::5555,server=on'/>";
        assert_eq!(gdb_endpoint(any).as_deref(), Some("127.0.0.1:5555"));
        assert_eq!(gdb_endpoint("<domain/>"), None);
        let unix =
            "<qemu:arg value='-gdb'/><qemu:arg value='unix:/run/g.sock,server=on,wait=off'/>";
        assert_eq!(gdb_endpoint(unix).as_deref(), Some("unix:/run/g.sock"));
        let empty = "<qemu:arg value='-gdb'/><qemu:arg value='unix:,server=on'/>";
        assert_eq!(gdb_endpoint(empty), None);
        assert_eq!(gdb_endpoint("<qemu:arg value='-gdb'/>"), None);
    }
}
