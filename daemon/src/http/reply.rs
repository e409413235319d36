//! What a handler returns: a reply, or an error that renders as
//! `{"error":{"code":..,"message":..}}` with its HTTP status.

use serde::Serialize;

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Reply {
        // Serialising our own types cannot fail except on non-finite floats,
        // which serde_json writes as null: never invalid JSON.
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }

    pub fn ok<T: Serialize + ?Sized>(value: &T) -> Reply {
        Reply::json(200, value)
    }

    pub fn created<T: Serialize + ?Sized>(value: &T) -> Reply {
        Reply::json(201, value)
    }

    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            content_type: "application/json",
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// An error the client sees. `code` is a stable machine word; `message`
/// names the problem (and the field, for bad input) in plain words.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "bad_request", message)
    }
    /// Bad input in one field: the message always starts with the field's path.
    pub fn field(path: &str, problem: impl std::fmt::Display) -> ApiError {
        ApiError::new(400, "invalid_field", format!("field '{path}': {problem}"))
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(401, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "not_found", message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, "conflict", message)
    }
    /// A bug or an I/O failure: logged in full, reported without detail.
    pub fn internal(context: impl std::fmt::Display) -> ApiError {
        log::error!("internal error: {context}");
        ApiError::new(500, "internal", "internal error; see the server log")
    }

    pub fn into_reply(self) -> Reply {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
        }
        let mut reply = Reply::json(
            self.status,
            &Body {
                error: Inner {
                    code: self.code,
                    message: &self.message,
                },
            },
        );
        if let Some(secs) = self.retry_after {
            reply = reply.with_header("Retry-After", secs.to_string());
        }
        reply
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::internal(format!("database: {e}"))
    }
}

pub type ApiResult = Result<Reply, ApiError>;
