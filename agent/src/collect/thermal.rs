//! Temperatures from sysfs: thermal zones (`/sys/class/thermal/thermal_zone*`,
//! with their trip points) and hwmon chips (`/sys/class/hwmon/hwmon*`:
//! coretemp, k10temp, nvme, drivetemp, ...). Values are millidegrees Celsius.
//!
//! Many boards expose the same sensor both ways (a Pi's `cpu-thermal` zone is
//! also hwmon `cpu_thermal`; x86 `acpitz` likewise). The zone wins because it
//! carries trip points, and the hwmon twin is dropped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use cairn_wire::{Snapshot, Temperature};

use super::{numbered_entries, read_attr, round2, Collector};

/// Readings outside this range are a sensor that is absent or not ready
/// (many report -273.15, 0 or 255.5 then), not a temperature.
const PLAUSIBLE: std::ops::RangeInclusive<f64> = -60.0..=200.0;

pub struct Thermal {
    sys: PathBuf,
}

impl Thermal {
    pub fn new(sys_root: &Path) -> Self {
        Thermal {
            sys: sys_root.to_path_buf(),
        }
    }
}

impl Collector for Thermal {
    fn name(&self) -> &'static str {
        "thermal"
    }

    fn collect(&mut self, out: &mut Snapshot) -> Result<(), String> {
        // No thermal or hwmon directory (VMs, containers) is simply "no sensors".
        let mut temps = zones(&self.sys.join("class/thermal"));
        let zone_types: HashSet<String> = temps.iter().map(|t| normalize(&t.sensor)).collect();
        temps.extend(hwmon(&self.sys.join("class/hwmon"), &zone_types));
        dedupe_names(&mut temps);
        out.temperatures = temps;
        Ok(())
    }
}

fn millidegrees(path: &Path) -> Option<f64> {
    let raw: i64 = read_attr(path)?.parse().ok()?;
    let c = raw as f64 / 1000.0;
    PLAUSIBLE.contains(&c).then(|| round2(c))
}

/// Trip limits are only useful when above zero (some drivers park unused
/// trip points at 0 or -273).
fn limit(path: &Path) -> Option<f64> {
    millidegrees(path).filter(|c| *c > 0.0)
}

fn zones(dir: &Path) -> Vec<Temperature> {
    let mut out = Vec::new();
    for (_, zone) in numbered_entries(dir, "thermal_zone") {
        let Some(celsius) = millidegrees(&zone.join("temp")) else {
            continue;
        };
        let sensor = read_attr(&zone.join("type")).unwrap_or_else(|| {
            zone.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let mut hot = None;
        let mut passive: Option<f64> = None;
        let mut critical = None;
        // Trip points are numbered from 0 without gaps.
        for n in 0..64 {
            let Some(kind) = read_attr(&zone.join(format!("trip_point_{n}_type"))) else {
                break;
            };
            let Some(temp) = limit(&zone.join(format!("trip_point_{n}_temp"))) else {
                continue;
            };
            match kind.as_str() {
                "critical" => critical = Some(temp),
                "hot" => hot = Some(temp),
                "passive" => passive = Some(passive.map_or(temp, |p| p.min(temp))),
                _ => {}
            }
        }
        out.push(Temperature {
            sensor,
            celsius,
            // "hot" is the warning level when the driver defines one; otherwise
            // the first passive trip, where the kernel starts throttling.
            high_celsius: hot.or(passive),
            critical_celsius: critical,
        });
    }
    out
}

fn hwmon(dir: &Path, zone_types: &HashSet<String>) -> Vec<Temperature> {
    let mut out = Vec::new();
    for (_, chip) in numbered_entries(dir, "hwmon") {
        // Older drivers keep their attributes under device/.
        let base = if chip.join("name").exists() {
            chip.clone()
        } else {
            chip.join("device")
        };
        let Some(name) = read_attr(&base.join("name")) else {
            continue;
        };
        if zone_types.contains(&normalize(&name)) {
            continue;
        }
        for n in temp_inputs(&base) {
            let Some(celsius) = millidegrees(&base.join(format!("temp{n}_input"))) else {
                continue;
            };
            let label = read_attr(&base.join(format!("temp{n}_label")))
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| format!("temp{n}"));
            out.push(Temperature {
                sensor: format!("{name} {label}"),
                celsius,
                high_celsius: limit(&base.join(format!("temp{n}_max"))),
                critical_celsius: limit(&base.join(format!("temp{n}_crit"))),
            });
        }
    }
    out
}

/// The N of every `tempN_input` in a hwmon directory, sorted.
fn temp_inputs(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut ns: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            name.to_str()?
                .strip_prefix("temp")?
                .strip_suffix("_input")?
                .parse()
                .ok()
        })
        .collect();
    ns.sort_unstable();
    ns
}

/// Zone `cpu-thermal` registers hwmon `cpu_thermal`.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Two NVMe drives both say "nvme Composite"; the second becomes
/// "nvme Composite #2" so each keeps its own series.
fn dedupe_names(temps: &mut [Temperature]) {
    let mut seen: HashSet<String> = HashSet::new();
    for t in temps.iter_mut() {
        if !seen.insert(t.sensor.clone()) {
            let mut n = 2;
            while seen.contains(&format!("{} #{n}", t.sensor)) {
                n += 1;
            }
            t.sensor = format!("{} #{n}", t.sensor);
            seen.insert(t.sensor.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::FakeRoot;

    fn fake_sys() -> FakeRoot {
        let sys = FakeRoot::new("thermal");
        sys.file("class/thermal/thermal_zone0/type", "cpu-thermal\n")
            .file("class/thermal/thermal_zone0/temp", "48312\n")
            .file("class/thermal/thermal_zone0/trip_point_0_type", "passive\n")
            .file("class/thermal/thermal_zone0/trip_point_0_temp", "80000\n")
            .file("class/thermal/thermal_zone0/trip_point_1_type", "critical\n")
            .file("class/thermal/thermal_zone0/trip_point_1_temp", "90000\n")
            // A zone whose sensor is not ready.
            .file("class/thermal/thermal_zone1/type", "acpitz\n")
            .file("class/thermal/thermal_zone1/temp", "-273150\n")
            // The hwmon twin of zone 0: dropped.
            .file("class/hwmon/hwmon0/name", "cpu_thermal\n")
            .file("class/hwmon/hwmon0/temp1_input", "48312\n")
            .file("class/hwmon/hwmon1/name", "nvme\n")
            .file("class/hwmon/hwmon1/temp1_input", "39850\n")
            .file("class/hwmon/hwmon1/temp1_label", "Composite\n")
            .file("class/hwmon/hwmon1/temp1_max", "81850\n")
            .file("class/hwmon/hwmon1/temp1_crit", "84850\n")
            .file("class/hwmon/hwmon1/temp2_input", "41000\n")
            .file("class/hwmon/hwmon2/name", "nvme\n")
            .file("class/hwmon/hwmon2/temp1_input", "30000\n")
            .file("class/hwmon/hwmon2/temp1_label", "Composite\n")
            // Old-style driver with attributes under device/.
            .file("class/hwmon/hwmon10/device/name", "it8728\n")
            .file("class/hwmon/hwmon10/device/temp3_input", "not a number\n")
            .file("class/hwmon/hwmon10/device/temp1_input", "35000\n");
        sys
    }

    #[test]
    fn zones_and_hwmon_are_read_with_limits() {
        let sys = fake_sys();
        let mut snap = Snapshot::default();
        Thermal::new(sys.root()).collect(&mut snap).unwrap();
        let t = &snap.temperatures;
        let names: Vec<&str> = t.iter().map(|t| t.sensor.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "cpu-thermal",
                "nvme Composite",
                "nvme temp2",
                "nvme Composite #2",
                "it8728 temp1"
            ]
        );
        assert_eq!(t[0].celsius, 48.31);
        assert_eq!(t[0].high_celsius, Some(80.0));
        assert_eq!(t[0].critical_celsius, Some(90.0));
        assert_eq!(t[1].celsius, 39.85);
        assert_eq!(t[1].high_celsius, Some(81.85));
        assert_eq!(t[1].critical_celsius, Some(84.85));
        assert_eq!(t[2].high_celsius, None);
    }

    #[test]
    fn no_sensors_is_an_empty_list_not_an_error() {
        let sys = FakeRoot::new("thermal-empty");
        let mut snap = Snapshot::default();
        Thermal::new(sys.root()).collect(&mut snap).unwrap();
        assert!(snap.temperatures.is_empty());
    }
}
