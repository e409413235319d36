//! Crash-safe file writes: write a temporary file, fsync it, rename it over
//! the target, fsync the directory. After a power cut the target holds either
//! the old or the new content, never a torn mix. Used by the spool, the
//! identity file and the config file `enroll` creates.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The temporary name used for `path`: hidden, same directory (rename is
/// only atomic within one filesystem), ending in `.tmp` so leftovers from a
/// crash are recognisable.
pub fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Replaces `path` with `data`, created with permission bits `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    let tmp = tmp_path(path);
    // A leftover tmp from a crash may carry other permissions; start afresh.
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    // The umask may have masked bits off; the caller's mode is what it wants.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("setting permissions on {}: {e}", tmp.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("renaming {} to {}: {e}", tmp.display(), path.display())
    })?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes renames and deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), String> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("syncing directory {}: {e}", dir.display()))
}

/// Creates `dir` and its parents; the last component gets `mode`.
pub fn create_dir(dir: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| format!("creating directory {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_with_the_requested_mode_and_leaves_no_tmp() {
        let dir = std::env::temp_dir().join(format!("cairn-durable-{}", std::process::id()));
        create_dir(&dir, 0o700).unwrap();
        let p = dir.join("identity.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!tmp_path(&p).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
