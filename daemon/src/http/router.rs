//! Route matching over the one route table (`api::ROUTES`). Patterns use
//! `{name}` segments; captured values are percent-decoded and must look like
//! ids (no slashes, dots-only or control characters), so path traversal never
//! reaches a handler.

use super::request::percent_decode;
use super::ApiError;

/// Who may call a route. Ordered for the user roles: Viewer < Operator < Admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no credentials.
    Public,
    Viewer,
    Operator,
    Admin,
    /// An agent token (cairn-agent or a labwatch agent).
    Agent,
    /// labwatch registration: an admin API token in `X-Admin-Secret`.
    AdminSecret,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Viewer => "viewer",
            Access::Operator => "operator",
            Access::Admin => "admin",
            Access::Agent => "agent",
            Access::AdminSecret => "admin-secret",
        }
    }
}

pub struct Params(pub Vec<(&'static str, String)>);

impl Params {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

pub enum Match<'a, R> {
    Found(&'a R, Params),
    NotFound,
    MethodNotAllowed(Vec<&'static str>),
    BadParam(ApiError),
}

pub trait RouteShape {
    fn method(&self) -> &'static str;
    fn pattern(&self) -> &'static str;
}

pub fn find<'a, R: RouteShape>(routes: &'a [R], method: &str, path: &str) -> Match<'a, R> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut allowed = Vec::new();
    let mut bad = None;
    for route in routes {
        let pat: Vec<&'static str> = route.pattern().split('/').collect();
        if pat.len() != segs.len() {
            continue;
        }
        let mut params = Vec::new();
        let mut ok = true;
        for (p, s) in pat.iter().zip(&segs) {
            if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let value = percent_decode(s);
                if let Err(e) = check_param(name, &value) {
                    bad = Some(e);
                    ok = false;
                    break;
                }
                params.push((name, value));
            } else if p != s {
                ok = false;
                break;
            }
        }
        if !ok {
            continue;
        }
        let m = route.method();
        if m == method || (method == "HEAD" && m == "GET") {
            return Match::Found(route, Params(params));
        }
        allowed.push(m);
    }
    if !allowed.is_empty() {
        return Match::MethodNotAllowed(allowed);
    }
    match bad {
        Some(e) => Match::BadParam(e),
        None => Match::NotFound,
    }
}

fn check_param(name: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::field(
            name,
            "must be 1–128 characters of letters, digits, '-', '_', '.', '@'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R(&'static str, &'static str);
    impl RouteShape for R {
        fn method(&self) -> &'static str {
            self.0
        }
        fn pattern(&self) -> &'static str {
            self.1
        }
    }

    #[test]
    fn matches_params_methods_and_rejects_traversal() {
        let routes = [R("GET", "/api/v1/nodes/{id}"), R("DELETE", "/api/v1/nodes/{id}")];
        match find(&routes, "GET", "/api/v1/nodes/n_abc") {
            Match::Found(r, p) => {
                assert_eq!(r.1, "/api/v1/nodes/{id}");
                assert_eq!(p.get("id"), "n_abc");
            }
            _ => panic!("no match"),
        }
        assert!(matches!(
            find(&routes, "POST", "/api/v1/nodes/x"),
            Match::MethodNotAllowed(_)
        ));
        assert!(matches!(
            find(&routes, "GET", "/api/v1/nodes/..%2F..%2Fetc"),
            Match::BadParam(_)
        ));
        assert!(matches!(
            find(&routes, "GET", "/api/v1/nodes/.."),
            Match::BadParam(_)
        ));
        assert!(matches!(find(&routes, "GET", "/api/v1/other"), Match::NotFound));
    }
}
