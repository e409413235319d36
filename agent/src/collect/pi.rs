//! Raspberry Pi firmware throttling flags (under-voltage, frequency capping,
//! throttling, soft temperature limit), the figures `vcgencmd get_throttled`
//! prints, read from sysfs instead of running vcgencmd.
//!
//! The Raspberry Pi kernel's firmware driver exposes `get_throttled` (hex, no
//! `0x`) on its platform device, whose path varies by model and kernel
//! (`soc/soc:firmware` on Pi 1–4, a longer `soc@.../...:firmware` on Pi 5).
//! Some kernels mark the attribute deprecated and log a one-time kernel
//! warning on first read; the `rpi_volt` hwmon they recommend instead only
//! knows under-voltage, so it is the fallback, not the first choice.
//!
//! Off Raspberry Pi hardware neither exists and this collector reports nothing.

use std::path::{Path, PathBuf};

use cairn_wire::{PiThrottle, Snapshot};

use super::{numbered_entries, read_attr, Collector};

#[derive(Clone, Debug, PartialEq)]
enum Source {
    /// The firmware's `get_throttled` attribute.
    Firmware(PathBuf),
    /// `in0_lcrit_alarm` of the `rpi_volt` hwmon: under-voltage now, nothing else.
    VoltAlarm(PathBuf),
}

pub struct Pi {
    sys: PathBuf,
    source: Option<Source>,
    probed: bool,
}

impl Pi {
    pub fn new(sys_root: &Path) -> Self {
        Pi {
            sys: sys_root.to_path_buf(),
            source: None,
            probed: false,
        }
    }
}

impl Collector for Pi {
    fn name(&self) -> &'static str {
        "pi"
    }

    fn prime(&mut self) {
        self.source = find(&self.sys);
        self.probed = true;
    }

    fn collect(&mut self, out: &mut Snapshot) -> Result<(), String> {
        // The firmware device does not appear after boot: look once.
        if !self.probed {
            self.prime();
        }
        out.pi = match &self.source {
            None => None,
            Some(Source::Firmware(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
                let raw = parse_throttled(&text)
                    .ok_or_else(|| format!("{}: not a hex number: {text:?}", path.display()))?;
                Some(PiThrottle::from_raw(raw))
            }
            Some(Source::VoltAlarm(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
                // Bit 0 of get_throttled is "under-voltage now".
                Some(PiThrottle::from_raw(u32::from(text.trim() == "1")))
            }
        };
        Ok(())
    }
}

fn find(sys: &Path) -> Option<Source> {
    let platform = sys.join("devices/platform");
    let known = [
        platform.join("soc/soc:firmware/get_throttled"),
        platform.join("scb/soc:firmware/get_throttled"),
    ];
    if let Some(p) = known.iter().find(|p| p.is_file()) {
        return Some(Source::Firmware(p.clone()));
    }
    // Pi 5 and newer device trees: soc@<addr>/soc@<addr>:firmware, or the
    // firmware node directly under platform/.
    if let Ok(entries) = std::fs::read_dir(&platform) {
        for e in entries.filter_map(|e| e.ok()) {
            let dir = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with("firmware") && dir.join("get_throttled").is_file() {
                return Some(Source::Firmware(dir.join("get_throttled")));
            }
            if !name.starts_with("soc") {
                continue;
            }
            let Ok(inner) = std::fs::read_dir(&dir) else {
                continue;
            };
            for f in inner.filter_map(|f| f.ok()) {
                let p = f.path().join("get_throttled");
                if f.file_name().to_string_lossy().ends_with("firmware") && p.is_file() {
                    return Some(Source::Firmware(p));
                }
            }
        }
    }
    numbered_entries(&sys.join("class/hwmon"), "hwmon")
        .into_iter()
        .find(|(_, dir)| read_attr(&dir.join("name")).as_deref() == Some("rpi_volt"))
        .map(|(_, dir)| dir.join("in0_lcrit_alarm"))
        .filter(|p| p.is_file())
        .map(Source::VoltAlarm)
}

/// `50005\n` from sysfs; also accepts vcgencmd's `throttled=0x50005`.
fn parse_throttled(text: &str) -> Option<u32> {
    let t = text.trim();
    let t = t.strip_prefix("throttled=").unwrap_or(t);
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    u32::from_str_radix(t, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::FakeRoot;

    #[test]
    fn parses_sysfs_and_vcgencmd_forms() {
        assert_eq!(parse_throttled("50005\n"), Some(0x50005));
        assert_eq!(parse_throttled("0\n"), Some(0));
        assert_eq!(parse_throttled("throttled=0x80008"), Some(0x80008));
        assert_eq!(parse_throttled("zz"), None);
        assert_eq!(parse_throttled(""), None);
        assert_eq!(parse_throttled("123456789"), None);
    }

    #[test]
    fn reads_the_classic_firmware_path() {
        let sys = FakeRoot::new("pi4");
        sys.file("devices/platform/soc/soc:firmware/get_throttled", "50005\n");
        let mut pi = Pi::new(sys.root());
        pi.prime();
        let mut snap = Snapshot::default();
        pi.collect(&mut snap).unwrap();
        let t = snap.pi.unwrap();
        assert_eq!(t.raw, 0x50005);
        assert!(t.under_voltage && t.throttled && t.under_voltage_occurred);
        assert!(!t.freq_capped && !t.soft_temp_limit);
    }

    #[test]
    fn finds_the_firmware_under_a_pi5_style_soc_node() {
        let sys = FakeRoot::new("pi5");
        sys.file(
            "devices/platform/soc@107c000000/soc@107c000000:firmware/get_throttled",
            "0\n",
        );
        let mut pi = Pi::new(sys.root());
        pi.prime();
        let mut snap = Snapshot::default();
        pi.collect(&mut snap).unwrap();
        assert_eq!(snap.pi, Some(PiThrottle::from_raw(0)));
    }

    #[test]
    fn falls_back_to_the_rpi_volt_alarm() {
        let sys = FakeRoot::new("pi-hwmon");
        sys.file("class/hwmon/hwmon1/name", "rpi_volt\n")
            .file("class/hwmon/hwmon1/in0_lcrit_alarm", "1\n");
        let mut pi = Pi::new(sys.root());
        pi.prime();
        let mut snap = Snapshot::default();
        pi.collect(&mut snap).unwrap();
        let t = snap.pi.unwrap();
        assert!(t.under_voltage);
        assert_eq!(t.raw, 1);
    }

    #[test]
    fn other_hardware_reports_nothing() {
        let sys = FakeRoot::new("not-a-pi");
        sys.file("class/hwmon/hwmon0/name", "coretemp\n");
        let mut pi = Pi::new(sys.root());
        pi.prime();
        let mut snap = Snapshot::default();
        pi.collect(&mut snap).unwrap();
        assert!(snap.pi.is_none());
    }

    #[test]
    fn garbage_in_the_attribute_is_an_error_naming_the_file() {
        let sys = FakeRoot::new("pi-garbage");
        sys.file("devices/platform/soc/soc:firmware/get_throttled", "oops\n");
        let mut pi = Pi::new(sys.root());
        let err = pi.collect(&mut Snapshot::default()).unwrap_err();
        assert!(err.contains("get_throttled"), "{err}");
    }
}
