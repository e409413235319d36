//! `<state_dir>/identity.json`: the node id and agent token `enroll` got from
//! the server. Mode 0600 and written atomically, so a crash during a
//! re-enroll leaves the old identity or the new one, never neither.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::durable;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Identity {
    pub node_id: String,
    pub token: String,
    /// The server that issued the token, to warn when the config points
    /// somewhere else (the token would be rejected there).
    #[serde(default)]
    pub server: String,
}

impl Identity {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("identity.json")
    }

    pub fn load(state_dir: &Path) -> Result<Identity, String> {
        let path = Self::path(state_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "{} not found: this machine is not enrolled yet; run \
                     `cairn-agent enroll --server URL --code CODE` first",
                    path.display()
                ))
            }
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let id: Identity =
            serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
        if id.node_id.is_empty() || id.token.is_empty() {
            return Err(format!(
                "{}: node_id or token is empty; re-enroll with `cairn-agent enroll`",
                path.display()
            ));
        }
        Ok(id)
    }

    /// Fails unless `save` could write here. `enroll` asks this before it
    /// spends the one-time code: a code used up by an enrollment that then
    /// cannot be saved leaves the operator with nothing.
    pub fn check_writable(state_dir: &Path) -> Result<(), String> {
        durable::create_dir(state_dir, 0o700)?;
        let probe = state_dir.join(".write-test");
        durable::write_atomic(&probe, b"", 0o600)
            .map_err(|e| format!("{e} (the identity is saved in {})", state_dir.display()))?;
        let _ = std::fs::remove_file(probe);
        Ok(())
    }

    pub fn save(&self, state_dir: &Path) -> Result<(), String> {
        durable::create_dir(state_dir, 0o700)?;
        let data = serde_json::to_vec_pretty(self).map_err(|e| format!("encoding identity: {e}"))?;
        durable::write_atomic(&Self::path(state_dir), &data, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saved_identity_is_private_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("cairn-identity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let err = Identity::load(&dir).unwrap_err();
        assert!(err.contains("enroll"), "{err}");
        let id = Identity {
            node_id: "n1".into(),
            token: "secret".into(),
            server: "http://127.0.0.1:8440".into(),
        };
        Identity::check_writable(&dir).unwrap();
        assert!(!dir.join(".write-test").exists());
        id.save(&dir).unwrap();
        let mode = std::fs::metadata(Identity::path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Identity::load(&dir).unwrap(), id);
        std::fs::write(Identity::path(&dir), "{\"node_id\":\"\"}").unwrap();
        assert!(Identity::load(&dir).is_err());
        std::fs::write(Identity::path(&dir), "not json").unwrap();
        assert!(Identity::load(&dir).unwrap_err().contains("parsing"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
