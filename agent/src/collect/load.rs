//! Load averages from `/proc/loadavg` (parsed by procfs).

use std::path::{Path, PathBuf};

use cairn_wire::Snapshot;
use procfs::FromRead;

use super::{finite, read, Collector};

pub struct Load {
    path: PathBuf,
}

impl Load {
    pub fn new(proc_root: &Path) -> Self {
        Load {
            path: proc_root.join("loadavg"),
        }
    }
}

impl Collector for Load {
    fn name(&self) -> &'static str {
        "load"
    }

    fn collect(&mut self, out: &mut Snapshot) -> Result<(), String> {
        let text = read(&self.path)?;
        out.load = parse(&text).map_err(|e| format!("parsing {}: {e}", self.path.display()))?;
        Ok(())
    }
}

fn parse(text: &str) -> Result<cairn_wire::Load, String> {
    let l = procfs::LoadAverage::from_read(text.as_bytes()).map_err(|e| e.to_string())?;
    // f32 → f64 widening shows 0.0799999982; the kernel prints two decimals.
    let two = |x: f32| finite((f64::from(x) * 100.0).round() / 100.0).max(0.0);
    Ok(cairn_wire::Load {
        load1: two(l.one),
        load5: two(l.five),
        load15: two(l.fifteen),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_averages() {
        let l = parse("0.08 1.50 12.25 2/812 41234\n").unwrap();
        assert_eq!(l.load1, 0.08);
        assert_eq!(l.load5, 1.5);
        assert_eq!(l.load15, 12.25);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse("").is_err());
        assert!(parse("a b c d e").is_err());
        assert!(parse("0.1 0.2").is_err());
    }
}
