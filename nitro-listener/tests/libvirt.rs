//! The libvirt path of attaching (`--features libvirt`): a real libvirtd runs a TCG domain
//! (direct kernel boot of the provisioned Debian 6.1 kernel, gdbstub through
//! `<qemu:commandline>`); nitro finds the domain by name, connects to its gdbstub, reads its
//! RAM through the QEMU process, and detaches leaving the domain running.
//!
//! Skips, saying why, when libvirtd cannot be reached (start it with
//! scripts/provision-libvirt.sh) or the guest kernel is missing.
#![cfg(feature = "libvirt")]

use std::{path::PathBuf, process::Command, sync::Arc, time::Duration};

use nitro_listener::{
    qemu::{attach, free_port, libvirt::lookup_domain, QemuDriver},
    Driver,
};
use nitro_mem::{PhysAddr, PhysMemory};

fn kernel() -> Option<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cache = std::env::var_os("NITRO_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(home).join(".cache/nitro"));
    let k = cache.join("guests/debian-6.1/vmlinuz");
    k.exists().then_some(k)
}

fn virsh(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("virsh")
        .args(["-c", "qemu:///system"])
        .args(args)
        .output()
}

struct Domain(String);

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = virsh(&["destroy", &self.0]);
        let _ = virsh(&["undefine", &self.0]);
    }
}

#[test]
fn attach_to_a_libvirt_domain_by_name() {
    let Some(kernel) = kernel() else {
        eprintln!("SKIP: debian-6.1 kernel missing: run scripts/provision.sh");
        return;
    };
    if !virsh(&["version"]).is_ok_and(|o| o.status.success()) {
        eprintln!(
            "SKIP: libvirtd not reachable on qemu:///system: run scripts/provision-libvirt.sh"
        );
        return;
    }
    // libvirt runs QEMU as its own user: give it a readable copy of the kernel.
    let dir = std::env::temp_dir().join(format!("nitro-libvirt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let k = dir.join("vmlinuz");
    std::fs::copy(&kernel, &k).unwrap();
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&dir)
        .status();

    let name = format!("nitro-test-{}", std::process::id());
    let port = free_port().unwrap();
    let xml = format!(
        r#"<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{}</kernel>
    <cmdline>console=ttyS0 nokaslr</cmdline>
  </os>
  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-gdb'/>
    <qemu:arg value='tcp:127.0.0.1:{port}'/>
  </qemu:commandline>
</domain>"#,
        k.display()
    );
    let xml_path = dir.join("domain.xml");
    std::fs::write(&xml_path, xml).unwrap();
    let out = virsh(&["define", &xml_path.display().to_string()]).unwrap();
    assert!(
        out.status.success(),
        "define: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _domain = Domain(name.clone());
    let out = virsh(&["start", &name]).unwrap();
    assert!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Let the kernel come up.
    std::thread::sleep(Duration::from_secs(3));

    let target = lookup_domain(Some("qemu:///system"), &name).expect("domain found");
    assert_eq!(target.gdb_endpoint, format!("127.0.0.1:{port}"));
    let pid = target.qemu_pid.expect("QEMU pid from libvirt");

    let mut driver = QemuDriver::connect(&target.gdb_endpoint, None, 0).expect("gdbstub");
    assert_eq!(driver.vcpus(), 1);
    let size = attach::ram_size(&mut driver).expect("RAM size from the monitor");
    assert_eq!(size, 256 << 20);
    let mem = Arc::new(attach::open_proc_memory(pid, size).expect("RAM through /proc/PID/mem"));
    // The running kernel's banner (`linux_banner`, init/version.c) is in guest RAM, in the
    // kernel image loaded at 16 MiB (CONFIG_PHYSICAL_START, no KASLR).
    let mut chunk = vec![0u8; 1 << 20];
    let banner = (16..80u64).any(|mib| {
        mem.read_phys(PhysAddr(mib << 20), &mut chunk).is_ok()
            && chunk.windows(16).any(|w| w == b"Linux version 6.")
    });
    assert!(
        banner,
        "no Linux banner in guest RAM read through /proc/PID/mem"
    );
    let regs = driver.interrupt().expect("registers");
    assert_ne!(regs.cr3, 0, "the guest kernel runs with paging");
    driver.detach().expect("detach");
    drop(driver);
    // Still running after detach.
    std::thread::sleep(Duration::from_millis(300));
    let state = virsh(&["domstate", &name]).unwrap();
    assert!(
        String::from_utf8_lossy(&state.stdout).contains("running"),
        "domain state: {}",
        String::from_utf8_lossy(&state.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
