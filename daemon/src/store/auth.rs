//! Users, sessions, API tokens, login throttling and enrollment codes.
//! Every secret is stored as a hash (see security.rs); rows never carry one
//! back out.

use super::Store;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

fn role_col(s: String) -> Role {
    // The CHECK constraint admits only these three.
    Role::parse(&s).unwrap_or(Role::Viewer)
}

#[derive(Clone, Debug, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub updated_at: i64,
    #[serde(skip)]
    pub password_hash: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Session {
    pub id: i64,
    #[serde(skip)]
    pub user_id: i64,
    #[serde(skip)]
    pub csrf_hash: String,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub expires_at: i64,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub last_used_at: i64,
    pub ip: String,
    pub user_agent: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub suffix: String,
    pub role: Role,
    pub created_by: String,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::api::ser_time_opt")]
    pub last_used_at: Option<i64>,
}

pub struct NewSession<'a> {
    pub token_hash: &'a str,
    pub csrf_hash: &'a str,
    pub user_id: i64,
    pub now: i64,
    pub expires_at: i64,
    pub ip: &'a str,
    pub user_agent: &'a str,
}

pub struct NewApiToken<'a> {
    pub name: &'a str,
    pub token_hash: &'a str,
    pub prefix: &'a str,
    pub suffix: &'a str,
    pub role: Role,
    pub created_by: &'a str,
    pub now: i64,
}

const USER_COLS: &str = "id, username, role, created_at, updated_at, password_hash";

fn user_row(r: &rusqlite::Row) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        role: role_col(r.get(2)?),
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
        password_hash: r.get(5)?,
    })
}

const SESSION_COLS: &str = "id, user_id, csrf_hash, created_at, expires_at, last_used_at, ip, user_agent";

fn session_row(r: &rusqlite::Row) -> rusqlite::Result<Session> {
    Ok(Session {
        id: r.get(0)?,
        user_id: r.get(1)?,
        csrf_hash: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        last_used_at: r.get(5)?,
        ip: r.get(6)?,
        user_agent: r.get(7)?,
    })
}

const TOKEN_COLS: &str = "id, name, prefix, suffix, role, created_by, created_at, last_used_at";

fn token_row(r: &rusqlite::Row) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        suffix: r.get(3)?,
        role: role_col(r.get(4)?),
        created_by: r.get(5)?,
        created_at: r.get(6)?,
        last_used_at: r.get(7)?,
    })
}

impl Store {
    // ---- users ----

    pub fn user_count(&self) -> rusqlite::Result<i64> {
        self.conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
    }

    pub fn insert_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        now: i64,
    ) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO users (username, password_hash, role, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            params![username, password_hash, role.as_str(), now],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn user_by_name(&self, username: &str) -> rusqlite::Result<Option<User>> {
        self.conn
            .query_row(
                &format!("SELECT {USER_COLS} FROM users WHERE username = ?1"),
                [username],
                user_row,
            )
            .optional()
    }

    pub fn user_by_id(&self, id: i64) -> rusqlite::Result<Option<User>> {
        // Every session-authenticated request: cached, as below.
        self.conn
            .prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))?
            .query_row([id], user_row)
            .optional()
    }

    pub fn users(&self) -> rusqlite::Result<Vec<User>> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {USER_COLS} FROM users ORDER BY username"))?;
        let rows = st.query_map([], user_row)?;
        rows.collect()
    }

    pub fn admin_count(&self) -> rusqlite::Result<i64> {
        self.conn
            .query_row("SELECT count(*) FROM users WHERE role = 'admin'", [], |r| {
                r.get(0)
            })
    }

    pub fn set_user_role(&self, id: i64, role: Role, now: i64) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE users SET role = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, role.as_str(), now],
        )?;
        Ok(())
    }

    /// Changing a password ends every session of that user.
    pub fn set_user_password(&self, id: i64, password_hash: &str, now: i64) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, password_hash, now],
        )?;
        self.conn
            .execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
        Ok(())
    }

    pub fn delete_user(&self, id: i64) -> rusqlite::Result<bool> {
        Ok(self.conn.execute("DELETE FROM users WHERE id = ?1", [id])? > 0)
    }

    // ---- sessions ----

    pub fn insert_session(&self, s: &NewSession) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO sessions (token_hash, csrf_hash, user_id, created_at, expires_at, last_used_at, ip, user_agent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6, ?7)",
            params![s.token_hash, s.csrf_hash, s.user_id, s.now, s.expires_at, s.ip, s.user_agent],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn session_by_hash(&self, token_hash: &str, now: i64) -> rusqlite::Result<Option<(Session, String)>> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {SESSION_COLS}, token_hash FROM sessions WHERE token_hash = ?1 AND expires_at > ?2"
            ))?
            .query_row(params![token_hash, now], |r| {
                Ok((session_row(r)?, r.get::<_, String>(8)?))
            })
            .optional()
    }

    /// Touches last_used_at at most once a minute to spare writes.
    pub fn touch_session(&self, id: i64, now: i64) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("UPDATE sessions SET last_used_at = ?2 WHERE id = ?1 AND last_used_at < ?2 - 60")?
            .execute(params![id, now])?;
        Ok(())
    }

    pub fn sessions_of(&self, user_id: i64, now: i64) -> rusqlite::Result<Vec<Session>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE user_id = ?1 AND expires_at > ?2 ORDER BY id"
        ))?;
        let rows = st.query_map(params![user_id, now], session_row)?;
        rows.collect()
    }

    pub fn delete_session(&self, id: i64, user_id: Option<i64>) -> rusqlite::Result<bool> {
        let n = match user_id {
            Some(uid) => self.conn.execute(
                "DELETE FROM sessions WHERE id = ?1 AND user_id = ?2",
                params![id, uid],
            )?,
            None => self.conn.execute("DELETE FROM sessions WHERE id = ?1", [id])?,
        };
        Ok(n > 0)
    }

    // ---- API tokens ----

    pub fn insert_api_token(&self, t: &NewApiToken) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO api_tokens (name, token_hash, prefix, suffix, role, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                t.name,
                t.token_hash,
                t.prefix,
                t.suffix,
                t.role.as_str(),
                t.created_by,
                t.now
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn api_token(&self, id: i64) -> rusqlite::Result<Option<ApiToken>> {
        self.conn
            .query_row(
                &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE id = ?1"),
                [id],
                token_row,
            )
            .optional()
    }

    pub fn api_token_by_hash(&self, token_hash: &str) -> rusqlite::Result<Option<(ApiToken, String)>> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLS}, token_hash FROM api_tokens WHERE token_hash = ?1"
            ))?
            .query_row([token_hash], |r| Ok((token_row(r)?, r.get::<_, String>(8)?)))
            .optional()
    }

    pub fn touch_api_token(&self, id: i64, now: i64) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2 - 60)",
            )?
            .execute(params![id, now])?;
        Ok(())
    }

    pub fn api_tokens(&self) -> rusqlite::Result<Vec<ApiToken>> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {TOKEN_COLS} FROM api_tokens ORDER BY id"))?;
        let rows = st.query_map([], token_row)?;
        rows.collect()
    }

    pub fn delete_api_token(&self, id: i64) -> rusqlite::Result<bool> {
        Ok(self.conn.execute("DELETE FROM api_tokens WHERE id = ?1", [id])? > 0)
    }

    // ---- login throttling ----

    pub fn record_login_failure(&self, username: &str, ip: &str, now: i64) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO login_failures (username, ip, at) VALUES (?1, ?2, ?3)",
            params![username, ip, now],
        )?;
        Ok(())
    }

    /// (failures for the username, failures from the ip, oldest relevant failure) since `since`.
    pub fn login_failures(
        &self,
        username: &str,
        ip: &str,
        since: i64,
    ) -> rusqlite::Result<(i64, i64, i64, i64)> {
        let (u, u_oldest): (i64, Option<i64>) = self.conn.query_row(
            "SELECT count(*), min(at) FROM login_failures WHERE username = ?1 AND at >= ?2",
            params![username, since],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (i, i_oldest): (i64, Option<i64>) = self.conn.query_row(
            "SELECT count(*), min(at) FROM login_failures WHERE ip = ?1 AND at >= ?2",
            params![ip, since],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((u, i, u_oldest.unwrap_or(since), i_oldest.unwrap_or(since)))
    }

    pub fn clear_login_failures(&self, username: Option<&str>, ip: Option<&str>) -> rusqlite::Result<usize> {
        let mut n = 0;
        if let Some(u) = username {
            n += self
                .conn
                .execute("DELETE FROM login_failures WHERE username = ?1", [u])?;
        }
        if let Some(i) = ip {
            n += self
                .conn
                .execute("DELETE FROM login_failures WHERE ip = ?1", [i])?;
        }
        Ok(n)
    }

    pub fn prune_login_failures(&self, before: i64) -> rusqlite::Result<usize> {
        self.conn
            .execute("DELETE FROM login_failures WHERE at < ?1", [before])
    }

    // ---- enrollment codes ----

    pub fn insert_enrollment_code(
        &self,
        code_hash: &str,
        created_by: &str,
        now: i64,
        expires_at: i64,
    ) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO enrollment_codes (code_hash, created_by, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![code_hash, created_by, now, expires_at],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Marks a valid, unused, unexpired code used; returns its id. One-time:
    /// the UPDATE's WHERE makes a second use find nothing.
    pub fn consume_enrollment_code(
        &self,
        code_hash: &str,
        now: i64,
        node_id: &str,
    ) -> rusqlite::Result<Option<i64>> {
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM enrollment_codes WHERE code_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
                params![code_hash, now],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = id {
            self.conn.execute(
                "UPDATE enrollment_codes SET used_at = ?2, node_id = ?3 WHERE id = ?1 AND used_at IS NULL",
                params![id, now, node_id],
            )?;
        }
        Ok(id)
    }
}
