//! Mounted filesystems and their usage: `/proc/self/mountinfo` for the list
//! (lines parsed by procfs), statvfs for the numbers.
//!
//! What is reported: each real filesystem once. Pseudo filesystems (proc,
//! tmpfs, cgroup, overlay, squashfs, FUSE helpers, ...) are skipped; bind
//! mounts and btrfs subvolumes share their superblock's `major:minor`, so one
//! entry per `major:minor` is kept, under its shortest mount path.
//!
//! The trap: statvfs on a dead NFS/CIFS server (or a stuck FUSE daemon)
//! blocks in the kernel, uninterruptibly, for minutes or forever. Network and
//! FUSE mounts are therefore asked from a helper thread with a shared 2-second
//! deadline. A mount that misses it is skipped (with a warning) and its helper
//! is left to finish on its own; while that helper is still stuck no new one is
//! started for the same mount, so a dead server costs one parked thread, not
//! one per interval. Local block-device filesystems are asked directly: a disk
//! that hangs statvfs hangs the whole box anyway.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use cairn_wire::{Disk, Snapshot};

use super::{percent, read, round2, Collector, Paths};

/// How long all network/FUSE statvfs calls of one collection may take together.
const REMOTE_DEADLINE: Duration = Duration::from_secs(2);

/// Filesystem types that never hold user data on a disk of their own.
const PSEUDO: &[&str] = &[
    "anon_inodefs",
    "aufs",
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "erofs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nfsd",
    "nsfs",
    "overlay",
    "pipefs",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "shiftfs",
    "smackfs",
    "sockfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "usbfs",
];

/// FUSE filesystems that are desktop or container plumbing, not storage.
/// Other FUSE types (sshfs, mergerfs, rclone, s3fs, ...) are kept: on a NAS
/// they are the storage.
const FUSE_HELPERS: &[&str] = &[
    "fuse.lxcfs",
    "fuse.gvfsd-fuse",
    "fuse.gvfs-fuse-daemon",
    "fuse.portal",
    "fuse.xdg-document-portal",
    "fuse.doc",
    "fuse.snapfuse",
    "fuse.kio-fuse",
    "fuse.appimagelauncherfs",
];

fn is_skipped(fstype: &str) -> bool {
    PSEUDO.contains(&fstype) || FUSE_HELPERS.contains(&fstype)
}

/// Types whose statvfs can block on something outside this machine.
fn may_hang(fstype: &str) -> bool {
    matches!(
        fstype,
        "nfs"
            | "nfs4"
            | "cifs"
            | "smb3"
            | "smbfs"
            | "ceph"
            | "glusterfs"
            | "9p"
            | "afs"
            | "davfs"
            | "lustre"
            | "beegfs"
            | "gpfs"
            | "fuse"
            | "fuseblk"
    ) || fstype.starts_with("fuse.")
}

#[derive(Clone, Debug, PartialEq)]
struct Mount {
    mount: String,
    device: String,
    fstype: String,
    majmin: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Usage {
    total: u64,
    free: u64,
    avail: u64,
    files: u64,
    files_free: u64,
}

type UsageResult = Result<Usage, String>;

pub struct Disks {
    mountinfo: PathBuf,
    sys: PathBuf,
    /// Network/FUSE mounts whose statvfs helper has not answered yet.
    stuck: HashMap<String, Receiver<UsageResult>>,
    /// statvfs itself; tests swap in one that hangs.
    stat: fn(&str) -> UsageResult,
}

impl Disks {
    pub fn new(paths: &Paths) -> Self {
        Disks {
            mountinfo: paths.proc.join("self/mountinfo"),
            sys: paths.sys.clone(),
            stuck: HashMap::new(),
            stat: statvfs,
        }
    }

    /// Usage of every mount, remote ones through helpers with a deadline.
    fn usage_all(&mut self, mounts: &[Mount]) -> Vec<Option<UsageResult>> {
        let mut results: Vec<Option<UsageResult>> = vec![None; mounts.len()];
        let mut pending: Vec<(usize, Receiver<UsageResult>)> = Vec::new();
        for (i, m) in mounts.iter().enumerate() {
            if !may_hang(&m.fstype) {
                results[i] = Some((self.stat)(&m.mount));
                continue;
            }
            if let Some(rx) = self.stuck.get(&m.mount) {
                match rx.try_recv() {
                    // Still blocked in the kernel: do not pile up another thread.
                    Err(TryRecvError::Empty) => continue,
                    // It came back (or its thread died): ask afresh below.
                    Ok(_) | Err(TryRecvError::Disconnected) => {
                        log::info!("{}: statvfs answers again", m.mount);
                        self.stuck.remove(&m.mount);
                    }
                }
            }
            let (tx, rx) = mpsc::channel();
            let path = m.mount.clone();
            let stat = self.stat;
            let spawned = std::thread::Builder::new()
                .name("cairn-statvfs".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    let _ = tx.send(stat(&path));
                });
            match spawned {
                Ok(_) => pending.push((i, rx)),
                Err(e) => results[i] = Some(Err(format!("starting statvfs helper: {e}"))),
            }
        }
        let deadline = Instant::now() + REMOTE_DEADLINE;
        for (i, rx) in pending {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(r) => results[i] = Some(r),
                Err(RecvTimeoutError::Timeout) => {
                    let m = &mounts[i];
                    log::warn!(
                        "{} ({} {}): statvfs did not answer within {} s (server down?); \
                         skipping it until it does",
                        m.mount,
                        m.fstype,
                        m.device,
                        REMOTE_DEADLINE.as_secs()
                    );
                    self.stuck.insert(m.mount.clone(), rx);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    results[i] = Some(Err("statvfs helper died".to_string()))
                }
            }
        }
        results
    }

    /// `/dev/root` is what the kernel calls a root it mounted itself (common on
    /// a Raspberry Pi); sysfs knows the real device name.
    fn real_device(&self, m: &Mount) -> String {
        if m.device != "/dev/root" {
            return m.device.clone();
        }
        let uevent = self.sys.join("dev/block").join(&m.majmin).join("uevent");
        std::fs::read_to_string(uevent)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("DEVNAME="))
                    .map(|n| format!("/dev/{}", n.trim()))
            })
            .unwrap_or_else(|| m.device.clone())
    }
}

impl Collector for Disks {
    fn name(&self) -> &'static str {
        "disks"
    }

    fn collect(&mut self, out: &mut Snapshot) -> Result<(), String> {
        let text = read(&self.mountinfo)?;
        let mounts = parse_mountinfo(&text);
        let usages = self.usage_all(&mounts);
        let mut disks = Vec::with_capacity(mounts.len());
        for (m, usage) in mounts.iter().zip(usages) {
            match usage {
                Some(Ok(u)) => {
                    if let Some(d) = to_disk(m, self.real_device(m), u) {
                        disks.push(d);
                    }
                }
                // EACCES on another user's FUSE mount, ENOENT on a mount that
                // vanished since mountinfo was read: not worth a warning.
                Some(Err(e)) => log::debug!("{}: {e}", m.mount),
                None => {}
            }
        }
        disks.sort_unstable_by(|a, b| a.mount.cmp(&b.mount));
        out.disks = disks;
        Ok(())
    }
}

/// The real filesystems in `mountinfo` text, one per `major:minor`.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    // Later lines mount over earlier ones at the same path, hiding them:
    // statvfs on that path describes the top one, so only it is kept.
    let mut by_path: HashMap<String, Mount> = HashMap::new();
    for line in text.lines() {
        let Ok(mi) = procfs::process::MountInfo::from_line(line) else {
            continue;
        };
        let mount = unescape(&mi.mount_point.to_string_lossy());
        by_path.insert(
            mount.clone(),
            Mount {
                mount,
                device: unescape(mi.mount_source.as_deref().unwrap_or("none")),
                fstype: mi.fs_type,
                majmin: mi.majmin,
            },
        );
    }
    let mut by_dev: HashMap<String, Mount> = HashMap::new();
    for m in by_path.into_values() {
        if is_skipped(&m.fstype) {
            continue;
        }
        match by_dev.get(&m.majmin) {
            Some(kept) if !shorter(&m.mount, &kept.mount) => {}
            _ => {
                by_dev.insert(m.majmin.clone(), m);
            }
        }
    }
    let mut mounts: Vec<Mount> = by_dev.into_values().collect();
    mounts.sort_unstable_by(|a, b| a.mount.cmp(&b.mount));
    mounts
}

fn shorter(a: &str, b: &str) -> bool {
    (a.len(), a) < (b.len(), b)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// c_ulong and fsblkcnt_t are u32 on some 32-bit targets (armv7), u64 here.
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn statvfs(path: &str) -> UsageResult {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| format!("statvfs: {e}"))?;
    let frsize = if s.fragment_size() > 0 {
        s.fragment_size() as u64
    } else {
        s.block_size() as u64
    };
    Ok(Usage {
        total: (s.blocks() as u64).saturating_mul(frsize),
        free: (s.blocks_free() as u64).saturating_mul(frsize),
        avail: (s.blocks_available() as u64).saturating_mul(frsize),
        files: s.files() as u64,
        files_free: s.files_free() as u64,
    })
}

/// Numbers as `df` shows them: used = total − free; free is what an ordinary
/// user can still write (root's reserve excluded); used % = used / (used +
/// that), so a disk is "100 %" when users cannot write, not when root cannot.
fn to_disk(m: &Mount, device: String, u: Usage) -> Option<Disk> {
    if u.total == 0 {
        return None;
    }
    let used = u.total.saturating_sub(u.free);
    let avail = u.avail.min(u.total);
    Some(Disk {
        mount: m.mount.clone(),
        device,
        fstype: m.fstype.clone(),
        total_bytes: u.total,
        used_bytes: used,
        free_bytes: avail,
        used_percent: round2(percent(used as f64, used.saturating_add(avail) as f64)),
        inodes_total: u.files,
        inodes_used: u.files.saturating_sub(u.files_free),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::FakeRoot;

    const MOUNTINFO: &str = r"22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=1234k
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
27 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
28 27 8:1 / /boot/efi rw,relatime shared:2 - vfat /dev/sda1 rw
29 27 0:40 / /srv/media rw,relatime shared:3 - btrfs /dev/sdb rw,subvol=/media
30 27 0:40 /backups /srv/backups rw,relatime shared:4 - btrfs /dev/sdb rw,subvol=/backups
31 27 8:2 /var/lib/docker /var/lib/docker rw,relatime - ext4 /dev/sda2 rw
32 27 0:50 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw,lowerdir=x
33 27 7:0 / /snap/core/123 ro - squashfs /dev/loop0 ro
34 27 0:51 / /mnt/nas rw - nfs4 nas.lan:/export rw,vers=4.2
35 27 0:52 / /mnt/My\040Share rw - cifs //nas/My\040Share rw
36 27 0:53 / /var/lib/lxcfs rw - fuse.lxcfs lxcfs rw
37 27 0:54 / /srv/pool rw - fuse.mergerfs pool rw
38 27 0:55 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
39 27 0:56 / /proc/sys/fs/binfmt_misc rw - autofs systemd-1 rw
this line is not mountinfo
";

    fn mounts() -> Vec<Mount> {
        parse_mountinfo(MOUNTINFO)
    }

    #[test]
    fn pseudo_filesystems_are_skipped() {
        let names: Vec<String> = mounts().into_iter().map(|m| m.mount).collect();
        assert_eq!(
            names,
            vec![
                "/",
                "/boot/efi",
                "/mnt/My Share",
                "/mnt/nas",
                "/srv/media",
                "/srv/pool"
            ]
        );
    }

    #[test]
    fn bind_mounts_and_subvolumes_are_reported_once_under_the_shortest_path() {
        let m = mounts();
        let root = m.iter().find(|m| m.majmin == "8:2").unwrap();
        assert_eq!(root.mount, "/");
        let btrfs: Vec<&Mount> = m.iter().filter(|m| m.majmin == "0:40").collect();
        assert_eq!(btrfs.len(), 1);
        assert_eq!(btrfs[0].mount, "/srv/media");
    }

    #[test]
    fn octal_escapes_are_decoded() {
        let m = mounts();
        let cifs = m.iter().find(|m| m.fstype == "cifs").unwrap();
        assert_eq!(cifs.mount, "/mnt/My Share");
        assert_eq!(cifs.device, "//nas/My Share");
        assert_eq!(unescape(r"a\134b\011c"), "a\\b\tc");
        assert_eq!(unescape(r"trailing\04"), r"trailing\04");
        assert_eq!(unescape(r"\"), r"\");
        assert_eq!(unescape(r"\999"), r"\999");
    }

    #[test]
    fn a_mount_over_another_hides_it() {
        let text = "27 1 8:2 / / rw - ext4 /dev/sda2 rw
40 27 8:17 / /data rw - ext4 /dev/sdb1 rw
41 40 8:33 / /data rw - xfs /dev/sdc1 rw
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].device, "/dev/sdc1");
        assert_eq!(m[1].fstype, "xfs");
    }

    #[test]
    fn network_and_fuse_mounts_go_through_the_deadline() {
        assert!(may_hang("nfs4"));
        assert!(may_hang("cifs"));
        assert!(may_hang("fuse.sshfs"));
        assert!(!may_hang("ext4"));
        assert!(!may_hang("zfs"));
    }

    #[test]
    fn usage_is_reported_like_df() {
        let m = &mounts()[0];
        let u = Usage {
            total: 1000,
            free: 150,
            avail: 100,
            files: 50,
            files_free: 20,
        };
        let d = to_disk(m, m.device.clone(), u).unwrap();
        assert_eq!(d.used_bytes, 850);
        assert_eq!(d.free_bytes, 100);
        assert_eq!(d.used_percent, round2(850.0 / 950.0 * 100.0));
        assert_eq!(d.inodes_total, 50);
        assert_eq!(d.inodes_used, 30);
        assert!(to_disk(m, String::new(), Usage::default()).is_none());
    }

    #[test]
    fn dev_root_is_resolved_through_sysfs() {
        let sys = FakeRoot::new("disks-sys");
        sys.file(
            "dev/block/179:2/uevent",
            "MAJOR=179\nMINOR=2\nDEVNAME=mmcblk0p2\nDEVTYPE=partition\n",
        );
        let d = Disks {
            mountinfo: PathBuf::new(),
            sys: sys.path.clone(),
            stuck: HashMap::new(),
            stat: statvfs,
        };
        let m = Mount {
            mount: "/".into(),
            device: "/dev/root".into(),
            fstype: "ext4".into(),
            majmin: "179:2".into(),
        };
        assert_eq!(d.real_device(&m), "/dev/mmcblk0p2");
        let other = Mount {
            majmin: "8:1".into(),
            ..m
        };
        assert_eq!(d.real_device(&other), "/dev/root");
    }

    /// Stands in for statvfs: "/mnt/dead" blocks like a dead NFS server.
    fn fake_stat(path: &str) -> UsageResult {
        if path == "/mnt/dead" {
            std::thread::sleep(Duration::from_secs(4));
        }
        Ok(Usage {
            total: 100,
            free: 50,
            avail: 50,
            files: 0,
            files_free: 0,
        })
    }

    #[test]
    fn a_hanging_network_mount_is_skipped_and_not_asked_again_while_stuck() {
        let proc_root = FakeRoot::new("disks-hang");
        proc_root.file(
            "self/mountinfo",
            "27 1 8:2 / / rw - ext4 /dev/sda2 rw
34 27 0:51 / /mnt/dead rw - nfs4 dead.lan:/x rw
35 27 0:52 / /mnt/alive rw - nfs4 alive.lan:/y rw
",
        );
        let mut d = Disks {
            mountinfo: proc_root.join("self/mountinfo"),
            sys: PathBuf::from("/nonexistent"),
            stuck: HashMap::new(),
            stat: fake_stat,
        };
        let started = Instant::now();
        let mut snap = Snapshot::default();
        d.collect(&mut snap).unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_millis(3500), "{took:?}");
        let mounts: Vec<&str> = snap.disks.iter().map(|d| d.mount.as_str()).collect();
        assert_eq!(mounts, vec!["/", "/mnt/alive"]);
        assert!(d.stuck.contains_key("/mnt/dead"));

        // Next round while still stuck: skipped at once, no new helper.
        let started = Instant::now();
        let mut snap = Snapshot::default();
        d.collect(&mut snap).unwrap();
        assert!(started.elapsed() < Duration::from_millis(1500));
        assert_eq!(snap.disks.len(), 2);

        // Once the helper finally answers, the mount is asked afresh.
        std::thread::sleep(Duration::from_millis(2600));
        let mut snap = Snapshot::default();
        d.collect(&mut snap).unwrap();
        assert!(d.stuck.contains_key("/mnt/dead"), "asked again and hung again");
    }

    #[test]
    fn this_host_has_a_root_filesystem() {
        let mut d = Disks::new(&Paths::default());
        let mut snap = Snapshot::default();
        d.collect(&mut snap).unwrap();
        assert!(snap.disks.iter().any(|d| d.total_bytes > 0), "{:?}", snap.disks);
    }
}
