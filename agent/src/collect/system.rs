//! Who this host is: hostname, kernel and architecture (uname), OS name
//! (`/etc/os-release`), hardware model (device tree or DMI), uptime
//! (`/proc/uptime`, parsed by procfs) and the agent's own version.

use std::path::{Path, PathBuf};

use cairn_wire::Snapshot;
use procfs::FromRead;

use super::{read, read_attr, Collector, Paths};

pub struct System {
    uptime: PathBuf,
    etc: PathBuf,
    /// The hardware does not change while we run: read once.
    model: String,
}

impl System {
    pub fn new(paths: &Paths) -> Self {
        System {
            uptime: paths.proc.join("uptime"),
            etc: paths.etc.clone(),
            model: model(&paths.proc, &paths.sys),
        }
    }
}

impl Collector for System {
    fn name(&self) -> &'static str {
        "system"
    }

    fn collect(&mut self, out: &mut Snapshot) -> Result<(), String> {
        // Hostname and OS may change under us (hostnamectl, dist-upgrade); both
        // are cheap to read every time.
        let uts = nix::sys::utsname::uname().map_err(|e| format!("uname: {e}"))?;
        out.hostname = uts.nodename().to_string_lossy().into_owned();
        out.system.kernel = uts.release().to_string_lossy().into_owned();
        out.system.arch = uts.machine().to_string_lossy().into_owned();
        out.system.os = os_name(&self.etc);
        out.system.model = self.model.clone();
        out.system.agent_version = env!("CARGO_PKG_VERSION").to_string();
        let text = read(&self.uptime)?;
        let up = procfs::Uptime::from_read(text.as_bytes())
            .map_err(|e| format!("parsing {}: {e}", self.uptime.display()))?;
        out.uptime_seconds = if up.uptime.is_finite() && up.uptime > 0.0 {
            up.uptime as u64
        } else {
            0
        };
        Ok(())
    }
}

/// PRETTY_NAME from os-release (`/etc`, else `/usr/lib` as the spec says),
/// falling back to NAME, then "Linux".
fn os_name(etc: &Path) -> String {
    let usr_lib = etc.parent().unwrap_or(Path::new("/")).join("usr/lib/os-release");
    [etc.join("os-release"), usr_lib]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| os_release_value(&text, "PRETTY_NAME").or_else(|| os_release_value(&text, "NAME")))
        .unwrap_or_else(|| "Linux".to_string())
}

fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix(key)?.strip_prefix('=')?;
        let value = unquote(value.trim());
        (!value.is_empty()).then_some(value)
    })
}

/// os-release values are shell-quoted: `"Debian GNU/Linux 12 (bookworm)"`,
/// `'x'`, or bare; `\"`, `\\`, `\$` and `` \` `` escapes inside double quotes.
fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].to_string();
    }
    let inner = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        &v[1..v.len() - 1]
    } else {
        v
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Device-tree model on ARM boards ("Raspberry Pi 4 Model B Rev 1.4"), else
/// DMI vendor and product on PCs and servers ("Dell Inc. OptiPlex 7050").
fn model(proc_root: &Path, sys: &Path) -> String {
    let dt = [
        proc_root.join("device-tree/model"),
        sys.join("firmware/devicetree/base/model"),
    ];
    if let Some(m) = dt.iter().filter_map(|p| read_attr(p)).find(|m| !m.is_empty()) {
        return m;
    }
    let dmi = sys.join("class/dmi/id");
    let product = read_attr(&dmi.join("product_name")).filter(|s| !placeholder(s));
    let vendor = read_attr(&dmi.join("sys_vendor")).filter(|s| !placeholder(s));
    match (vendor, product) {
        (Some(v), Some(p)) if !p.to_lowercase().starts_with(&v.to_lowercase()) => {
            format!("{v} {p}")
        }
        (_, Some(p)) => p,
        _ => String::new(),
    }
}

/// Strings firmware vendors leave in DMI fields they did not fill in.
fn placeholder(s: &str) -> bool {
    let l = s.trim().to_lowercase();
    l.is_empty()
        || [
            "to be filled by o.e.m.",
            "system product name",
            "system manufacturer",
            "default string",
            "not applicable",
            "not specified",
            "none",
            "o.e.m.",
            "oem",
        ]
        .contains(&l.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::FakeRoot;

    #[test]
    fn os_release_pretty_name_is_unquoted() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(
            os_release_value(text, "PRETTY_NAME").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            os_release_value("PRETTY_NAME='Alpine Linux v3.19'\n", "PRETTY_NAME").as_deref(),
            Some("Alpine Linux v3.19")
        );
        assert_eq!(
            os_release_value("PRETTY_NAME=Arch\n", "PRETTY_NAME").as_deref(),
            Some("Arch")
        );
        assert_eq!(
            os_release_value(r#"PRETTY_NAME="say \"hi\"""#, "PRETTY_NAME").as_deref(),
            Some("say \"hi\"")
        );
        assert_eq!(os_release_value("PRETTY_NAME_X=1\n", "PRETTY_NAME"), None);
        assert_eq!(os_release_value("PRETTY_NAME=\"\"\n", "PRETTY_NAME"), None);
        assert_eq!(unquote("\""), "\"");
    }

    #[test]
    fn os_falls_back_to_usr_lib_then_linux() {
        let root = FakeRoot::new("osrel");
        root.file("usr/lib/os-release", "NAME=Fedora\n");
        assert_eq!(os_name(&root.join("etc")), "Fedora");
        let empty = FakeRoot::new("osrel-empty");
        assert_eq!(os_name(&empty.join("etc")), "Linux");
    }

    #[test]
    fn device_tree_model_wins_and_its_nul_is_dropped() {
        let root = FakeRoot::new("model-dt");
        root.file("proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\0")
            .file("sys/class/dmi/id/product_name", "Ignored\n");
        assert_eq!(
            model(&root.join("proc"), &root.join("sys")),
            "Raspberry Pi 4 Model B Rev 1.4"
        );
    }

    #[test]
    fn dmi_vendor_and_product_with_placeholders_dropped() {
        let root = FakeRoot::new("model-dmi");
        root.file("sys/class/dmi/id/product_name", "OptiPlex 7050\n")
            .file("sys/class/dmi/id/sys_vendor", "Dell Inc.\n");
        assert_eq!(
            model(&root.join("proc"), &root.join("sys")),
            "Dell Inc. OptiPlex 7050"
        );
        root.file("sys/class/dmi/id/sys_vendor", "To Be Filled By O.E.M.\n");
        assert_eq!(model(&root.join("proc"), &root.join("sys")), "OptiPlex 7050");
        root.file("sys/class/dmi/id/product_name", "System Product Name\n");
        assert_eq!(model(&root.join("proc"), &root.join("sys")), "");
        root.file("sys/class/dmi/id/product_name", "QEMU Standard PC\n")
            .file("sys/class/dmi/id/sys_vendor", "QEMU\n");
        assert_eq!(model(&root.join("proc"), &root.join("sys")), "QEMU Standard PC");
    }

    #[test]
    fn fills_identity_and_uptime() {
        let root = FakeRoot::new("system");
        root.file("proc/uptime", "12345.67 40000.00\n")
            .file("etc/os-release", "PRETTY_NAME=\"Test OS 1\"\n");
        let mut s = System::new(&Paths {
            proc: root.join("proc"),
            sys: root.join("sys"),
            etc: root.join("etc"),
        });
        let mut snap = Snapshot::default();
        s.collect(&mut snap).unwrap();
        assert_eq!(snap.uptime_seconds, 12345);
        assert_eq!(snap.system.os, "Test OS 1");
        assert!(!snap.hostname.is_empty());
        assert!(!snap.system.kernel.is_empty());
        assert!(!snap.system.arch.is_empty());
        assert_eq!(snap.system.agent_version, env!("CARGO_PKG_VERSION"));
    }
}
